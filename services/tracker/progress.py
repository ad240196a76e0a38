"""What the tracker tells a run's creator: progress at a bounded rate, completion once, and a
preview's result.

Completion is recorded first and published after: a crash in between is repaired by the next
`publish_completions`, which finds the run completed but not yet announced (the app calls it
at start-up too).
"""

import functools
import time
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from datetime import datetime, timedelta
from uuid import UUID

import asyncpg

from shared.clock import Clock, utc_now
from shared.events import BroadcastCompleted, BroadcastPreviewed, BroadcastProgressed, Outcome
from shared.ids import event_id_for
from shared.publishing import Publisher

from . import store
from .metrics import TrackerMetrics
from .outcome import to_notify


class Throttle:
    """At most one progress event per run and `interval` seconds, however fast it changes.

    A change that comes too soon after the previous event is kept, not dropped: it is due at
    the next call once the interval has passed (the app's progress tick)."""

    def __init__(self, interval: float, clock: Clock = utc_now) -> None:
        self._interval = timedelta(seconds=interval)
        self._clock = clock
        self._last: dict[UUID, datetime] = {}
        self._changed: set[UUID] = set()

    def due(self, changed: Iterable[UUID] = ()) -> list[UUID]:
        """Note the runs that `changed`; take every noted run that may be announced now."""
        self._changed.update(changed)
        now = self._clock()
        due = [r for r in self._changed if self._may_announce(r, now)]
        self._changed.difference_update(due)
        return due

    def announced(self, run_id: UUID) -> None:
        self._last[run_id] = self._clock()

    def forget(self, run_id: UUID) -> None:
        self._last.pop(run_id, None)

    def _may_announce(self, run_id: UUID, now: datetime) -> bool:
        last = self._last.get(run_id)
        # The wall clock may step back (NTP): the run is then due rather than silent until the
        # clock catches up.
        return last is None or not timedelta(0) <= now - last < self._interval


class Recounts:
    """When a running run's contracts (reached, not reached) are counted again for its
    progress events.

    Counting them reads every message of the run (`tracker.run_counters_v1`), so each count
    costs in proportion to the run's size: 0.8 s of PostgreSQL on a run of a million messages,
    which once a second made the database's cost per message grow with the run (bench/README.md,
    "PostgreSQL per message"). A run is counted again once `interval` seconds have passed since
    its last count, and no sooner than `FACTOR` times what that count took, so that counting
    one run never keeps the database busy more than a tenth of the time. In between, its
    progress events carry the last counts; their message counters are exact in every event, and
    a completion counts everything again. Per instance, in memory: a new instance counts at
    once. `clock` is monotonic: durations and intervals must not follow the wall clock's steps.
    """

    FACTOR = 10.0

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        # Per run: when it was last counted, what that took, and the counts.
        self._last: dict[UUID, tuple[float, float, int, int]] = {}

    def due(self, run_ids: Iterable[UUID]) -> set[UUID]:
        """The runs among `run_ids` whose contracts are to be counted now."""
        now = self._clock()
        return {r for r in run_ids if self._due(self._last.get(r), now)}

    def _due(self, last: tuple[float, float, int, int] | None, now: float) -> bool:
        if last is None:
            return True
        at, took, _, _ = last
        return now - at >= max(self._interval, self.FACTOR * took)

    async def counting(
        self, run_ids: Iterable[UUID], read: Callable[[set[UUID]], Awaitable[list[store.RunView]]]
    ) -> list[store.RunView]:
        """`read` the runs, counting the contracts of those due; the others get their last
        counts, as they stood before the read (a completion may forget a run meanwhile)."""
        now = self._clock()
        last = {r: self._last.get(r) for r in run_ids}
        due = {r for r, known in last.items() if self._due(known, now)}
        runs = await read(due)
        took = self._clock() - now
        return [
            self._counted(run, now, took) if run.run_id in due else self._known(run, last)
            for run in runs
        ]

    def _counted(self, run: store.RunView, at: float, took: float) -> store.RunView:
        c = run.counters
        self._last[run.run_id] = (at, took, c.contracts_reached, c.contracts_not_reached)
        return run

    @staticmethod
    def _known(
        run: store.RunView, last: dict[UUID, tuple[float, float, int, int] | None]
    ) -> store.RunView:
        known = last[run.run_id]
        assert known is not None  # not due: counted before
        _, _, reached, not_reached = known
        counters = run.counters.model_copy(
            update={"contracts_reached": reached, "contracts_not_reached": not_reached}
        )
        return replace(run, counters=counters)

    def forget(self, run_id: UUID) -> None:
        self._last.pop(run_id, None)


class Progress:
    """Settles the runs a batch concerned and announces what changed on `events`.

    `one_at_a_time` is held while completions are announced: every instance announces every
    completion recorded (an instance may die between recording and announcing), and two at
    once would announce each twice."""

    def __init__(
        self,
        pool: Callable[[], asyncpg.Pool],
        events: Publisher,
        metrics: TrackerMetrics,
        throttle: Throttle,
        recounts: Recounts,
        one_at_a_time: Callable[[], AbstractAsyncContextManager[None]],
    ) -> None:
        self._pool = pool
        self._events = events
        self._metrics = metrics
        self._throttle = throttle
        self._recounts = recounts
        self._one_at_a_time = one_at_a_time

    async def settle(self, run_ids: set[UUID]) -> None:
        """Complete the runs whose messages are all final, then announce completions and
        progress."""
        self._metrics.completed(await store.complete_finished(self._pool(), run_ids))
        await store.settle_follow_ups(self._pool(), run_ids)
        await self.publish_completions()
        await self.publish_progress(run_ids)

    async def publish_completions(self) -> None:
        async with self._one_at_a_time():
            await self._publish_completions()

    async def _publish_completions(self) -> None:
        for run in await store.unpublished_completions(self._pool()):
            assert run.outcome is not None and run.requested_by is not None
            if run.purpose == "preview":
                await self._publish_preview(run)
                continue
            # A follow-up is reported on its action instead (store.settle_follow_ups); a
            # notice is the announcement of another run's completion.
            if run.purpose == "broadcast":
                await self._events.publish(
                    BroadcastCompleted(
                        event_id=event_id_for(run.run_id, "broadcast_completed"),
                        tenant_id=run.tenant_id,
                        broadcast_id=run.broadcast_id,
                        run_id=run.run_id,
                        requested_by=run.requested_by,
                        outcome=run.outcome,
                        counters=run.counters,
                        created_by=run.created_by,
                        notify=to_notify(run.created_by, run.requested_by),
                    ),
                    key=str(run.broadcast_id).encode(),
                )
            await store.mark_completion_published(self._pool(), run.run_id)
            self._throttle.forget(run.run_id)
            self._recounts.forget(run.run_id)

    async def publish_progress(self, changed: Iterable[UUID] = ()) -> None:
        """Announce the running broadcasts that changed, now or earlier, and may be announced
        now; with nothing `changed`: the changes held back by the throttle."""
        due = self._throttle.due(changed)
        read = functools.partial(store.running, self._pool(), due)
        for run in await self._recounts.counting(due, read):
            self._throttle.announced(run.run_id)
            await self._progressed(run)

    async def publish_reported(self, run_ids: Iterable[UUID]) -> None:
        """Announce again, with their outcome now, the completed broadcasts whose counters a
        report after the completion changed. A redelivered batch announces the same counters
        again, which harms no reader: a copy is the safe side of a crash before the publish."""
        for run in await store.announced_broadcasts(self._pool(), run_ids):
            await self._progressed(run, run.outcome)

    async def _progressed(self, run: store.RunView, outcome: Outcome | None = None) -> None:
        """`broadcast.progressed` for `run`; with its `outcome` once it completed."""
        await self._events.publish(
            BroadcastProgressed(
                tenant_id=run.tenant_id,
                broadcast_id=run.broadcast_id,
                run_id=run.run_id,
                counters=run.counters,
                outcome=outcome,
            ),
            key=str(run.broadcast_id).encode(),
        )

    async def _publish_preview(self, run: store.RunView) -> None:
        assert run.requested_by is not None
        result = await store.preview_result(self._pool(), run.run_id)
        await self._events.publish(
            BroadcastPreviewed(
                event_id=event_id_for(run.run_id, "broadcast_previewed"),
                tenant_id=run.tenant_id,
                broadcast_id=run.broadcast_id,
                run_id=run.run_id,
                requested_by=run.requested_by,
                address=result["address"] if result else "",
                delivered=bool(result and result["state"] == "delivered"),
                reason=result["reason"] if result else None,
                detail=(result["detail"] or "") if result else "",
            ),
            key=str(run.broadcast_id).encode(),
        )
        await store.mark_completion_published(self._pool(), run.run_id)
