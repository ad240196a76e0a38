"""Asking targeting to pause a failing run, at least once: recorded, published, marked.

The tracker decides from its failure window while it handles deliveries. Once those are
recorded, a batch redelivered after a broker failure holds only copies, which the window does
not count again: a lost `pause_broadcast` would never be asked again. So the decision is
recorded first, and `publish_late` republishes what was recorded and not published, with the
same request id (one per run and stretch between resumes): targeting pauses once.
"""

from collections.abc import Callable

import asyncpg
from faststream.kafka.publisher.usecase import DefaultPublisher

from shared.events import PauseBroadcast

from . import store

# A pause younger than this may be being published by the handler that asked for it: leaving
# it alone saves a copy.
LATE_SECONDS = 5.0


class Pauses:
    def __init__(
        self, pool: Callable[[], asyncpg.Pool], requests: DefaultPublisher, requested_by: str
    ) -> None:
        self._pool = pool
        self._requests = requests
        self._requested_by = requested_by

    async def ask(self, run: store.Watched, detail: str) -> None:
        await self._publish(await store.record_auto_pause(self._pool(), run, detail))

    async def publish_late(self) -> None:
        """Publish the pauses asked a while ago whose request was lost."""
        for pause in await store.unpublished_auto_pauses(self._pool(), LATE_SECONDS):
            await self._publish(pause)

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
