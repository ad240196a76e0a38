"""Streaming a run's audience to the composer, resumable after a crash.

Each page of contracts is expanded to recipients, published and acknowledged by the broker, and
only then checkpointed. A crash between publish and checkpoint republishes that page; its
recipients carry the same stable ids, so the stages downstream ignore the copies. The reverse
order (checkpoint, then publish) would lose a page, as listmonk's issue #3022 shows.

A contract with no usable address becomes a `no_contact` failure published straight to the
tracker (`broadcast.deliveries`): nothing could render or send it, and it counts in the run's
total.

Every instance looks for runs left streaming every `orphans_every` seconds (`adopting`) and
tries each: the one streaming it holds its lock, so a run is streamed by one instance at a
time, and taken over when that instance dies, not only when it starts again.
"""

import asyncio
import logging
from collections.abc import Callable
from uuid import UUID

import asyncpg

from shared.clock import Clock
from shared.db import Connection
from shared.events import BroadcastStarted
from shared.ids import event_id_for
from shared.service import Periodic

from . import store
from .audience import RunScope, expand, in_records
from .criteria import compile_criteria
from .metrics import TargetingMetrics
from .publishers import Publishers
from .run_events import run_started, targeting_completed

log = logging.getLogger("targeting")


class RunStreamer:
    """Runs one background task per run being streamed; `adopting` resumes unfinished runs,
    at start-up and every `orphans_every` seconds."""

    def __init__(
        self,
        pool: Callable[[], asyncpg.Pool],
        publish: Publishers,
        clock: Clock,
        metrics: TargetingMetrics,
        *,
        page_size: int,
        retry_after: float,
        orphans_every: float,
    ) -> None:
        """`clock` tells when a run's grace delay is over."""
        self._pool = pool
        self._events = publish.events
        self._runs = publish.runs
        self._recipients = publish.recipients
        self._deliveries = publish.deliveries
        self._clock = clock
        self._metrics = metrics
        self._page_size = page_size
        self._retry_after = retry_after
        self._tasks: dict[UUID, asyncio.Task[None]] = {}
        self.adopting = Periodic("targeting-streaming-runs", self.resume_all, orphans_every, log)

    def kick(self, run_id: UUID) -> None:
        if run_id in self._tasks:
            return
        task = asyncio.create_task(self._guarded(run_id), name=f"stream-{run_id}")
        self._tasks[run_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(run_id, None))

    async def resume_all(self) -> None:
        for run_id in await store.streaming_runs(self._pool()):
            self.kick(run_id)

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _guarded(self, run_id: UUID) -> None:
        # A failed run is retried: its checkpoint makes the retry start where it stopped.
        while True:
            try:
                await self._stream(run_id)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("streaming run %s failed; retrying", run_id)
                await asyncio.sleep(self._retry_after)

    async def _stream(self, run_id: UUID) -> None:
        async with self._pool().acquire() as connection:
            if not await store.try_lock_run(connection, run_id):
                return
            try:
                await self._stream_locked(connection, run_id)
            finally:
                await store.unlock_run(connection, run_id)

    async def _stream_locked(self, connection: Connection, run_id: UUID) -> None:
        run = await store.load_run(connection, run_id)
        if run.state == "targeted":  # a replayed start: its audience went out already
            return
        definition = run.definition
        if not run.announced:
            await self._announce(run)
            await store.mark_announced(connection, run_id)
        scope = RunScope(run.tenant_id, run.broadcast_id, run.run_id, definition.channels)
        where = compile_criteria(definition.criteria)
        cursor = run.cursor
        contracts, messages, unreachable = run.contracts, run.messages, run.unreachable
        keep = (
            await store.failed_recipients(connection, run.only_failed_of, run.include_unknown)
            if run.only_failed_of
            else None
        )
        # A no_contact failure's contract is sent again to whatever addresses it has now.
        reached = (
            await store.contracts_without_contact(
                connection, run.only_failed_of, run.include_unknown
            )
            if run.only_failed_of
            else set()
        )
        cancelled = not await self._grace(connection, run)
        async for rows in store.pages(connection, run.tenant_id, where, cursor, self._page_size):
            if cancelled:
                log.info("run %s cancelled before anything was targeted", run_id)
                break
            # One "now" per page: every recipient of a page is targeted at the same moment.
            now = self._clock()
            page = expand(scope, rows, now)
            if keep is not None:
                page = page.only(keep, reached)
            await self._recipients.send(in_records(scope, now, page.recipients))
            self._metrics.streamed(page.recipients)
            await self._deliveries.publish_keyed((str(f.recipient_id), f) for f in page.no_contact)
            cursor = rows[-1]["pk"]
            cancelled = await store.checkpoint(
                connection,
                run_id,
                cursor,
                page.contracts,
                page.messages,
                page.unreachable_contracts,
            )
            contracts += page.contracts
            messages += page.messages
            unreachable += page.unreachable_contracts
            if cancelled:
                # What was published so far is the run's whole audience: the tracker completes
                # it once each of those messages is delivered, failed or cancelled.
                log.info("run %s cancelled while streaming", run_id)
                break
        await self._runs.publish(
            targeting_completed(
                run.tenant_id,
                run.broadcast_id,
                run_id,
                contracts=contracts,
                messages=messages,
                unreachable_contracts=unreachable,
            ),
            key=str(run.broadcast_id).encode(),
        )
        await store.mark_targeted(connection, run_id)
        log.info("run %s targeted: %d contracts, %d messages", run_id, contracts, messages)

    async def _grace(self, connection: Connection, run: store.Run) -> bool:
        """Wait until the run's grace delay is over; False when it was cancelled meanwhile."""
        while run.not_before is not None:
            left = (run.not_before - self._clock()).total_seconds()
            if left <= 0 or await store.run_cancelled(connection, run.run_id):
                break
            await asyncio.sleep(min(left, 1.0))
        return not await store.run_cancelled(connection, run.run_id)

    async def _announce(self, run: store.Run) -> None:
        """The run's definition goes out before any recipient, so the composer can render."""
        key = str(run.broadcast_id).encode()
        await self._runs.publish(
            run_started(
                run.broadcast_id,
                run.run_id,
                run.definition,
                requested_by=run.requested_by,
                content=run.content,
                template=run.template,
                settings=run.settings,
                # The tracker closes the actions of the failures this run sends again.
                resends_failures_of=run.only_failed_of,
                include_unknown=run.include_unknown,
                created_by=run.created_by,
            ),
            key=key,
        )
        await self._events.publish(
            BroadcastStarted(
                event_id=event_id_for(run.run_id, "broadcast_started"),
                tenant_id=run.tenant_id,
                request_id=run.request_id,
                requested_by=run.requested_by,
                broadcast_id=run.broadcast_id,
                run_id=run.run_id,
            ),
            key=key,
        )
