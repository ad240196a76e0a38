"""Handing messages to their providers: cancelled and paused runs, send windows, rate limits,
waves.

The same path serves messages fresh from Kafka and messages whose wait is over (the sweeper).
Messages go out in waves of at most `wave_size`: a wave is claimed, sent over the pool's
connections, and its outcomes recorded before it counts as done, so a dispatcher killed at any
moment leaves at most `waves_in_flight` waves of claims whose outcome is unknown.
"""

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from uuid import UUID

import asyncpg

from shared.events import (
    DeliveryCancelled,
    DeliveryDeferred,
    DeliveryFailed,
    MessageDelivered,
    MessageRendered,
    TenantSettings,
)

from . import ledger, ratelimit
from .policy import Attempt
from .retry import RetryPolicy
from .tenants import Directory
from .windows import opens_at

Event = MessageDelivered | DeliveryFailed | DeliveryDeferred | DeliveryCancelled
Send = Callable[[MessageRendered], Awaitable[Attempt]]
Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Limits:
    wave_size: int
    waves_in_flight: int
    lease: timedelta
    # Past this much pacing, a batch parks its remaining waves in the ledger (the sweeper sends
    # them when due): a handler must not sleep for long (past max_poll_interval_ms the group
    # rebalances and the batch is delivered again), and a cancel must take effect in seconds.
    max_wait_seconds: float = 2.0


def _rate(settings: TenantSettings, channel: str) -> float | None:
    return settings.email_per_second if channel == "email" else settings.sms_per_second


def final_event(message: MessageRendered | ledger.Ref, attempt: Attempt) -> Event:
    ref = message.ref() if isinstance(message, MessageRendered) else message.fields()
    if attempt.verdict == "accepted":
        return MessageDelivered(
            **ref, provider_code=attempt.code, provider_message=attempt.detail[:500]
        )
    return DeliveryFailed(
        **ref,
        reason=attempt.reason or "provider_error",
        detail=attempt.detail[:500],
        provider_code=attempt.code,
    )


def deferred_event(wait: ledger.Wait) -> DeliveryDeferred:
    return DeliveryDeferred(
        **wait.message.ref(),
        waiting_for=wait.waiting_for,
        due_at=wait.due_at,
        attempts=wait.attempts,
        detail=wait.attempt.detail[:500] if wait.attempt else "",
        provider_code=wait.attempt.code if wait.attempt else None,
    )


@dataclass
class _Outcomes:
    finals: dict[UUID, Attempt] = field(default_factory=dict)
    waits: list[ledger.Wait] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


class Handover:
    def __init__(
        self,
        pool: asyncpg.Pool,
        send: Send,
        tenants: Directory,
        policy: RetryPolicy,
        limits: Limits,
        clock: Clock,
    ) -> None:
        self._pool = pool
        self._send = send
        self._tenants = tenants
        self._policy = policy
        self._limits = limits
        self._clock = clock
        self._limited = ratelimit.ActiveKeys(pool)

    async def fresh(self, messages: Sequence[MessageRendered]) -> list[Event]:
        """Messages from Kafka: each is claimed here, unless it was seen before."""
        unique = list({m.recipient_id: m for m in messages}.values())
        return await self._hand_over([(m, 0) for m in unique], claimed=False)

    async def due(self, limit: int, tenant_id: str | None = None) -> list[Event]:
        """Waiting messages whose time has come (claimed by `take_due`), of one tenant only
        when `tenant_id` is given."""
        now = self._clock()
        taken = await ledger.take_due(self._pool, now, now + self._limits.lease, limit, tenant_id)
        return await self._hand_over(taken, claimed=True)

    async def repair(self, older_than: timedelta) -> list[Event]:
        """Outcomes recorded but never announced, because their dispatcher died in between."""
        lost = await ledger.unannounced(self._pool, self._clock() - older_than)
        return [
            DeliveryCancelled(**u.ref.fields())
            if u.state == "cancelled"
            else final_event(u.ref, u.attempt)
            for u in lost
        ]

    async def expire(self) -> list[Event]:
        """Claims of dead dispatchers become unknown; waiting messages of cancelled runs
        become cancelled."""
        unknown = await ledger.expire_leases(self._pool, self._clock())
        events: list[Event] = [
            DeliveryFailed(
                **ref.fields(),
                reason="unknown_outcome",
                detail="the dispatcher stopped while handing it over",
            )
            for ref in unknown
        ]
        cancelled = await ledger.cancel_waiting(self._pool)
        events.extend(DeliveryCancelled(**ref.fields()) for ref in cancelled)
        return events

    async def _hand_over(
        self, items: Sequence[tuple[MessageRendered, int]], *, claimed: bool
    ) -> list[Event]:
        if not items:
            return []
        out = _Outcomes()
        stopped_runs = await ledger.stopped_runs(self._pool, {m.run_id for m, _ in items})
        settings = await self._tenants.get({m.tenant_id for m, _ in items})
        now = self._clock()
        ready: list[tuple[MessageRendered, int]] = []
        stopped: list[MessageRendered] = []
        for message, attempts in items:
            why = stopped_runs.get(message.run_id)
            if why == "cancelled":
                stopped.append(message)
                continue
            if why == "paused":
                out.waits.append(ledger.Wait(message, None, "paused", attempts, ours=claimed))
                continue
            opening = (
                None
                if message.preview
                else opens_at(now, message.channel, settings[message.tenant_id])
            )
            if opening is not None:
                out.waits.append(
                    ledger.Wait(message, opening, "send_window", attempts, ours=claimed)
                )
            else:
                ready.append((message, attempts))
        await self._cancel(stopped, claimed, out)
        gate = asyncio.Semaphore(self._limits.waves_in_flight)
        size = self._limits.wave_size
        deadline = time.monotonic() + self._limits.max_wait_seconds

        async def wave(part: Sequence[tuple[MessageRendered, int]]) -> None:
            async with gate:
                await self._wave(part, settings, claimed, deadline, out)

        await asyncio.gather(*(wave(ready[i : i + size]) for i in range(0, len(ready), size)))
        parked = await ledger.schedule(self._pool, out.waits)
        out.events.extend(deferred_event(w) for w in parked)
        return out.events

    async def _cancel(
        self, messages: Sequence[MessageRendered], claimed: bool, out: _Outcomes
    ) -> None:
        if not messages:
            return
        if claimed:  # taken from the ledger: the rows exist and are ours
            await ledger.cancel_claimed(self._pool, [m.recipient_id for m in messages])
            new = {m.recipient_id for m in messages}
        else:
            new = await ledger.cancel_new(self._pool, messages)
        out.events.extend(DeliveryCancelled(**m.ref()) for m in messages if m.recipient_id in new)

    async def _wave(
        self,
        part: Sequence[tuple[MessageRendered, int]],
        settings: dict[str, TenantSettings],
        claimed: bool,
        deadline: float,
        out: _Outcomes,
    ) -> None:
        every = Counter(key for m, _ in part for key in ratelimit.buckets(m.tenant_id, m.channel))
        # A tenant's own rate is known from its settings at once; relays and pauses from the
        # shared table, re-read every second.
        limited = await self._limited.among(every) | {
            ratelimit.tenant_key(m.tenant_id, m.channel)
            for m, _ in part
            if _rate(settings[m.tenant_id], m.channel) is not None
        }
        counts = {key: n for key, n in every.items() if key in limited}
        wait = await ratelimit.reserve(self._pool, counts)
        if time.monotonic() + wait > deadline:
            await ratelimit.refund(self._pool, counts)
            due = self._clock() + timedelta(seconds=wait)
            # Send the share of the wave the budget allows and park the rest: parking a whole
            # wave that never fits (16 messages at 4/s) would park it forever.
            fits = int(len(part) * max(0.0, deadline - time.monotonic()) / wait)
            later = part[fits:] if 0 < fits < len(part) else part
            out.waits.extend(ledger.Wait(m, due, "throttled", a, ours=claimed) for m, a in later)
            if later is not part:
                await self._wave(part[:fits], settings, claimed, deadline, out)
            return
        if wait > 0:
            await asyncio.sleep(wait)
        attempts_of = {m.recipient_id: a for m, a in part}
        to_send = [m for m, _ in part]
        if not claimed:
            claims = await ledger.claim(self._pool, to_send, self._clock() + self._limits.lease)
            for m in to_send:
                earlier = claims.finished.get(m.recipient_id)
                if earlier is None:
                    continue
                out.events.append(
                    DeliveryCancelled(**m.ref())
                    if earlier.state == "cancelled"
                    else final_event(m, earlier.attempt)
                )
            to_send = [m for m in to_send if m.recipient_id in claims.claimed]
            if len(to_send) < len(part):
                unused = Counter(
                    key
                    for m, _ in part
                    if m.recipient_id not in claims.claimed
                    for key in ratelimit.buckets(m.tenant_id, m.channel)
                    if key in limited
                )
                await ratelimit.refund(self._pool, dict(unused))
        attempts = await asyncio.gather(*(self._send(m) for m in to_send))
        finals: dict[UUID, Attempt] = {}
        for message, attempt in zip(to_send, attempts, strict=True):
            tried = attempts_of[message.recipient_id]
            wait_entry = await self._after(message, attempt, tried)
            if wait_entry is not None:
                out.waits.append(wait_entry)
                continue
            if attempt.verdict == "temporary":
                attempt = replace(
                    attempt, detail=f"gave up after {tried + 1} attempts: {attempt.detail}"
                )
            finals[message.recipient_id] = attempt
            out.events.append(final_event(message, attempt))
        # Outside a Kafka handler nothing would announce these again after a crash.
        await ledger.record(self._pool, finals, announced=not claimed)

    async def _after(
        self, message: MessageRendered, attempt: Attempt, attempts: int
    ) -> ledger.Wait | None:
        """None when the attempt is final; else when to try again."""
        now = self._clock()
        if attempt.verdict == "throttled":
            seconds = self._policy.after_throttle(attempt.retry_after)
            await ratelimit.pause(self._pool, ratelimit.relay_key(message.channel), seconds)
            self._limited.forget()
            return ledger.Wait(
                message, now + timedelta(seconds=seconds), "throttled", attempts, attempt
            )
        if attempt.verdict != "temporary":
            return None
        delay = self._policy.after_failure(attempts + 1)
        if delay is None:
            return None
        if attempt.retry_after is not None:
            delay = max(delay, min(attempt.retry_after, self._policy.max_backoff))
        return ledger.Wait(message, now + timedelta(seconds=delay), "retry", attempts + 1, attempt)
