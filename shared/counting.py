"""Prometheus counters incremented once per batch: a handler tallies its events by label values,
then each counter's child is looked up once per label set, not once per event (`labels()` cost
about 3 µs a call in the dispatcher's profile; bench/README.md, "Dispatcher hand-over")."""

import collections
from collections.abc import Iterable

from prometheus_client import Counter

# Events by label values, in the counter's label order.
Tally = collections.Counter[tuple[str, ...]]


def add_tallies(tallies: Iterable[tuple[Counter, Tally]]) -> None:
    """Add each tally to its counter's children."""
    for counter, counts in tallies:
        for labels, count in counts.items():
            counter.labels(*labels).inc(count)
