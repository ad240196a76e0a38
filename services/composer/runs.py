"""The compiled templates of recent runs, loaded from the composer's table on first use."""

from collections import OrderedDict
from uuid import UUID

import asyncpg

from . import store
from .render import CompiledRun, compile_run


class RunNotKnownYet(RuntimeError):
    """A recipient overtook its run's definition (they travel on different topics): retry."""


class CompiledRuns:
    """At most `size` runs stay compiled; an evicted run is simply reloaded and recompiled."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._runs: OrderedDict[UUID, CompiledRun] = OrderedDict()

    async def get(self, pool: asyncpg.Pool, run_ids: set[UUID]) -> dict[UUID, CompiledRun]:
        missing = run_ids - self._runs.keys()
        if missing:
            for run in await store.load_runs(pool, missing):
                self._runs[run.run_id] = compile_run(run)
        if unknown := run_ids - self._runs.keys():
            raise RunNotKnownYet(f"definition of runs {sorted(map(str, unknown))} not received")
        for run_id in run_ids:
            self._runs.move_to_end(run_id)
        while len(self._runs) > max(self._size, len(run_ids)):
            self._runs.popitem(last=False)
        return {run_id: self._runs[run_id] for run_id in run_ids}
