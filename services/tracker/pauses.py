"""Auto-pause: watching each run's failures, and asking targeting to pause it at least once.

The tracker decides from its failure window while it handles deliveries. Once those are
recorded, a batch redelivered after a broker failure holds only copies, which the window does
not count again: a lost `pause_broadcast` would never be asked again. So the decision is
recorded first, and `publish_late` republishes what was recorded and not published, with the
same request id (one per run and stretch between resumes): targeting pauses once.
"""

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from uuid import UUID

import asyncpg

from shared.clock import Clock, utc_now
from shared.events import DeliveryDeferred, DeliveryFailed, FinalDelivery, PauseBroadcast
from shared.publishing import Publisher

from . import store
from .autopause import Attempts, judge

log = logging.getLogger("tracker")


class Pauses:
    """The outbox of `pause_broadcast`: `late_seconds` and `page` bound the repair passes."""

    def __init__(
        self,
        pool: Callable[[], asyncpg.Pool],
        requests: Publisher,
        *,
        requested_by: str,
        late_seconds: float,
        page: int,
    ) -> None:
        self._pool = pool
        self._requests = requests
        self._requested_by = requested_by
        self._late_seconds = late_seconds
        self._page = page

    async def ask(self, run: store.Watched, detail: str) -> None:
        await self._publish(await store.record_auto_pause(self._pool(), run, detail))

    async def publish_late(self) -> bool:
        """Publish the pauses asked a while ago whose request was lost; True when a full page
        was published, so that more may be waiting."""
        late = await store.unpublished_auto_pauses(self._pool(), self._late_seconds, self._page)
        for pause in late:
            await self._publish(pause)
        return len(late) == self._page

    async def _publish(self, pause: store.AutoPauseAsked) -> None:
        await self._requests.publish(
            PauseBroadcast(
                tenant_id=pause.tenant_id,
                request_id=f"auto-pause:{pause.run_id}:{pause.resumes}",
                requested_by=self._requested_by,
                broadcast_id=pause.broadcast_id,
                reason="failure_ratio",
                detail=pause.detail,
            ),
            key=pause.tenant_id.encode(),
        )
        await store.mark_auto_pause_published(self._pool(), pause)


def attempt_failed(event: DeliveryDeferred | FinalDelivery) -> bool | None:
    """How an outcome counts in the failure window: failed (for good, or waiting for a retry:
    a relay that is down answers with temporary errors), succeeded, or not at all (None: a
    cancellation, a wait the relay did not cause, or a contract with no address, which was
    never tried)."""
    if (
        event.type == "delivery.cancelled"
        or (isinstance(event, DeliveryDeferred) and event.waiting_for != "retry")
        or (isinstance(event, DeliveryFailed) and event.reason == "no_contact")
    ):
        return None
    return event.type != "delivery.delivered"


class FailureWatch:
    """Asks `ask` to pause a run whose failure ratio went over its tenant's limit.

    The window is in the database (`store.add_attempts`): every instance adds the outcomes of
    the partitions it owns to the same window and judges from all of them, and the loss of an
    instance loses nothing it saw. A resume starts a fresh window (a new stretch)."""

    def __init__(
        self,
        pool: Callable[[], asyncpg.Pool],
        ask: Callable[[store.Watched, str], Awaitable[None]],
        clock: Clock = utc_now,
    ) -> None:
        self._pool = pool
        self._ask = ask
        self._clock = clock

    async def watch(
        self, waiting: Sequence[DeliveryDeferred], recorded: Sequence[FinalDelivery]
    ) -> None:
        """Count outcomes seen for the first time (a redelivered copy must not count twice)."""
        now = int(self._clock().timestamp())
        attempts: defaultdict[UUID, Attempts] = defaultdict(Attempts)
        for event in [*waiting, *recorded]:
            outcome = attempt_failed(event)
            if outcome is None:
                continue
            attempts[event.run_id].tried += 1
            attempts[event.run_id].failed += outcome
        if not attempts:
            return
        await store.add_attempts(self._pool(), now, attempts)
        # Only a failure can trip a window; a run already asked in this stretch is left out.
        failing = {run_id for run_id, a in attempts.items() if a.failed}
        if not failing:
            return
        for run in await store.watched(self._pool(), failing, now):
            tripped = judge(Attempts(run.tried, run.failed), run.policy)
            if tripped is None:
                continue
            log.warning("pausing run %s: %s", run.run_id, tripped.describe(run.policy))
            await self._ask(run, tripped.describe(run.policy))
