"""One client for the running system, shared by the CLI, the demo, the bench and the tests.

- `endpoints`: where the local stack listens, each address overridable from the environment.
- `log`: a topic read from its current end, record by record, as JSON.
- `commands`: publish a command on broadcast.requests and await its answer.
- `watch`: follow one broadcast's events; wait for a state or for targeting's audience.
- `progress`: the text progress bar.

Tooling reads the services' databases only through their versioned views (`*_v1`, see
docs/ARCHITECTURE.md), never through their tables.
"""
