"""Starting scheduled broadcasts when their time comes, as if their scheduler sent `start`.

One instance at a time runs a pass (`Exclusive`: the others skip theirs, and take over when it
dies). Each start is also checked under the broadcast's row lock against the schedule as it is
then (`transitions.start(due_by=...)`), so a schedule moved or cancelled meanwhile does not
start, and a broadcast starts once even from a manual `start` beside the scheduler.
"""

import logging
from collections.abc import Callable
from uuid import UUID

import asyncpg

from shared.clock import Clock
from shared.exclusive import Exclusive
from shared.service import Periodic

from . import store, transitions
from .broadcasts import Rejection

log = logging.getLogger("targeting")


class Scheduler:
    """`loop` starts the due schedules every `tick` seconds, `per_tick` at most each time."""

    def __init__(
        self,
        pool: Callable[[], asyncpg.Pool],
        start_run: Callable[[UUID], None],
        clock: Clock,
        *,
        tick: float,
        per_tick: int,
    ) -> None:
        self._pool = pool
        self._start_run = start_run
        self._clock = clock
        self._per_tick = per_tick
        name = "targeting-scheduler"
        self.loop = Periodic(name, Exclusive(pool, name).skipping(self.start_due), tick, log)

    async def start_due(self, tenant_id: str | None = None) -> None:
        """Start the scheduled broadcasts whose time has come by the clock, and stream their
        run; only `tenant_id`'s when given."""
        now = self._clock()
        pool = self._pool()
        for due in await store.due_schedules(pool, now, self._per_tick, tenant_id):
            try:
                run_id = await transitions.start(
                    pool,
                    due.tenant_id,
                    due.broadcast_id,
                    due.request_id,
                    due.requested_by,
                    due_by=now,
                )
            except Rejection as rejection:
                log.warning(
                    "scheduled broadcast %s could not start: %s",
                    due.broadcast_id,
                    rejection.message,
                )
                continue
            self._start_run(run_id)
