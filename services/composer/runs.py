"""The compiled templates of recent runs, loaded from the composer's table on first use."""

from collections import OrderedDict
from collections.abc import Callable
from uuid import UUID

import asyncpg

from shared.events import RunStarted
from shared.isolation import RetryLater

from . import store
from .context import LinkKeys
from .render import CompiledRun, compile_run


class RunNotKnownYet(RetryLater):
    """A recipient overtook its run's definition (they travel on different topics): retry."""


class CompiledRuns:
    """At most `size` runs stay compiled; an evicted run is simply reloaded and recompiled."""

    def __init__(
        self,
        keys: LinkKeys,
        dkim_key: Callable[[RunStarted], bytes | None],
        size: int = 256,
    ) -> None:
        self._keys = keys
        self._dkim_key = dkim_key
        self._size = size
        self._runs: OrderedDict[UUID, CompiledRun] = OrderedDict()

    async def get(self, pool: asyncpg.Pool, run_ids: set[UUID]) -> dict[UUID, CompiledRun]:
        missing = run_ids - self._runs.keys()
        if missing:
            for run in await store.load_runs(pool, missing):
                self._runs[run.run_id] = compile_run(run, self._keys, self._dkim_key(run))
        if unknown := run_ids - self._runs.keys():
            raise RunNotKnownYet(f"definition of runs {sorted(map(str, unknown))} not received")
        for run_id in run_ids:
            self._runs.move_to_end(run_id)
        while len(self._runs) > max(self._size, len(run_ids)):
            self._runs.popitem(last=False)
        return {run_id: self._runs[run_id] for run_id in run_ids}
