"""Handing messages to their providers: cancelled and paused runs, send windows, rate limits,
waves.

The same path serves messages fresh from Kafka and messages whose wait is over (the sweeper).
Messages go out in waves of at most `wave_size`: a wave is claimed, sent over the pool's
connections, and its outcomes recorded before it counts as done, so a dispatcher killed at any
moment leaves at most `waves_in_flight` waves of claims whose outcome is unknown.

An outcome the relay gave is never dropped: when the database does not answer, the wave keeps
it and tries again until it does, and the handler holds its batch meanwhile, so no new message
is taken and memory stays bounded.
"""

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence, Set
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TypeVar
from uuid import UUID

import asyncpg

from shared.clock import Clock
from shared.events import (
    DeliveryCancelled,
    DeliveryCorrected,
    DeliveryDeferred,
    DeliveryFailed,
    MessageDelivered,
    MessageRendered,
    RefreshDeclined,
    RefreshRequested,
    TenantSettings,
)
from shared.isolation import in_a_few_words, is_transient

from . import ledger, ratelimit
from .policy import Attempt, outcome_unknown
from .providers import Provider
from .refresh import Freshness, must_refresh, refresh_request
from .retry import RetryPolicy
from .settings import Settings
from .tenants import Directory
from .windows import opens_at

# Verdicts after which a message may wait for another try (`Handover._after`).
_MAY_WAIT = frozenset({"throttled", "temporary"})
Event = MessageDelivered | DeliveryFailed | DeliveryDeferred | DeliveryCancelled | DeliveryCorrected
T = TypeVar("T")
# Publishes refresh requests on broadcast.runs.
Ask = Callable[[Sequence[RefreshRequested]], Awaitable[None]]
log = logging.getLogger("dispatcher")


@dataclass(frozen=True)
class Limits:
    wave_size: int
    waves_in_flight: int
    # Past this much pacing, a batch parks its remaining waves in the ledger (the sweeper sends
    # them when due).
    max_wait_seconds: float
    # One try at storing in the ledger, at most (`Settings.store_attempt_seconds`).
    store_attempt_seconds: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> "Limits":
        return cls(
            wave_size=settings.wave_size_per_connection * settings.smtp_connections,
            waves_in_flight=settings.waves_in_flight,
            max_wait_seconds=settings.pacing_budget_seconds,
            store_attempt_seconds=settings.store_attempt_seconds,
        )


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


def correction(message: MessageRendered | ledger.Ref, attempt: Attempt) -> DeliveryCorrected:
    ref = message.ref() if isinstance(message, MessageRendered) else message.fields()
    return DeliveryCorrected(
        **ref, outcome="delivered" if attempt.verdict == "accepted" else "failed"
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


@dataclass(frozen=True)
class _Item:
    """A message on its way: its attempts so far, and the claim held on it (None: fresh from
    Kafka, claimed in its wave)."""

    message: MessageRendered
    attempts: int
    token: int | None


@dataclass
class _Outcomes:
    # True for messages fresh from Kafka: should their events be lost in a crash, the
    # redelivered batch announces them again. Messages taken from the ledger have no such
    # redelivery: their outcomes are recorded as unannounced until published.
    replayable: bool
    # Tokens of the claims held, and of those whose message reached its provider: a claim
    # held and never handed over is given back when the batch fails.
    held: set[int] = field(default_factory=set)
    handed_over: set[int] = field(default_factory=set)
    waits: list[ledger.Wait] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


class Handover:
    def __init__(
        self,
        pool: asyncpg.Pool,
        provider: Provider,
        tenants: Directory,
        policy: RetryPolicy,
        limits: Limits,
        me: ledger.Claimant,
        clock: Clock,
        freshness: Freshness,
        ask: Ask,
    ) -> None:
        """`ask` publishes refresh requests (a waiting message to render again)."""
        self._pool = pool
        self._provider = provider
        self._tenants = tenants
        self._policy = policy
        self._limits = limits
        self._me = me
        self._clock = clock
        self._freshness = freshness
        self._ask = ask
        self._limited = ratelimit.ActiveKeys(pool)

    async def fresh(self, messages: Sequence[MessageRendered]) -> list[Event]:
        """Messages from Kafka: each is claimed here, unless it was seen before. One that
        reached a final state is announced again, wherever its run stands now."""
        latest: dict[UUID, MessageRendered] = {}
        for m in messages:  # of copies in one batch, the latest rendition counts
            if m.rendition >= latest.get(m.recipient_id, m).rendition:
                latest[m.recipient_id] = m
        unique = list(latest.values())
        # A new rendition is no new message: it only replaces the one that waits for it.
        await ledger.renew(self._pool, [m for m in unique if m.rendition], self._clock())
        return await self._hand_over(
            [_Item(m, 0, None) for m in unique if not m.rendition], replayable=True
        )

    async def due(self, limit: int, tenant_id: str | None = None) -> list[Event]:
        """Waiting messages whose time has come (claimed by `take_due`), of one tenant only
        when `tenant_id` is given. Those rendered too long ago are rendered again first."""
        now = self._clock()
        taken = await ledger.take_due(self._pool, now, self._me, limit, tenant_id)
        stale = {t.token for t in taken if must_refresh(t.message, now, self._freshness)}
        asked = await self._refresh(stale)
        items = [_Item(t.message, t.attempts, t.token) for t in taken if t.token not in stale]
        events = await self._hand_over(items, replayable=False)
        events += [
            DeliveryFailed(
                **ref.fields(),
                reason="render_failed",
                detail="no new rendition with the contract's current values came in time",
            )
            for ref in await ledger.abandon_refreshes(
                self._pool, now - self._freshness.give_up, tenant_id
            )
        ]
        # Asked last: should publishing fail, the hand-over is done (its outcomes recorded)
        # and the refreshes are asked again once overdue.
        asked += await ledger.overdue_refreshes(
            self._pool, now, now + self._freshness.ask_again, limit, tenant_id
        )
        await self._ask([refresh_request(r.message, r.rendition) for r in asked])
        return events

    async def _refresh(self, tokens: Set[int]) -> list[ledger.Refreshing]:
        if not tokens:
            return []
        try:
            now = self._clock()
            return await ledger.refresh(
                self._pool, sorted(tokens), now, now + self._freshness.ask_again
            )
        except Exception:
            # Else a live instance would hold these claims forever.
            await self._until_stored(
                "giving back claims", lambda: ledger.release(self._pool, sorted(tokens))
            )
            raise

    async def declined(self, declined: Sequence[RefreshDeclined]) -> list[Event]:
        """Messages that could not be rendered again (contract deleted, address gone, the new
        rendition unrenderable), failed with the reason given."""
        by_id = {d.recipient_id: d for d in declined}
        return [
            DeliveryFailed(
                **ref.fields(),
                reason=by_id[ref.recipient_id].reason,
                detail=by_id[ref.recipient_id].detail[:500],
            )
            for ref in await ledger.decline(self._pool, declined)
        ]

    async def repair(self, older_than: timedelta) -> list[Event]:
        """Outcomes recorded but never announced, because their dispatcher died in between."""
        events: list[Event] = []
        for u in await ledger.unannounced(self._pool, self._clock() - older_than):
            if u.state == "cancelled":
                events.append(DeliveryCancelled(**u.ref.fields()))
                continue
            events.append(final_event(u.ref, u.attempt))
            if u.corrected:
                events.append(correction(u.ref, u.attempt))
        return events

    async def expire(self, takeover: timedelta | None) -> list[Event]:
        """Claims of this instance's earlier lives, and of instances silent for `takeover`,
        become unknown; waiting messages of cancelled runs become cancelled."""
        unknown = await ledger.settle_abandoned(self._pool, self._me, takeover)
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

    async def _hand_over(self, items: Sequence[_Item], *, replayable: bool) -> list[Event]:
        if not items:
            return []
        out = _Outcomes(replayable, held={i.token for i in items if i.token is not None})
        try:
            return await self._route(items, out)
        except Exception:
            # Claims whose message never reached a provider go back: the Kafka replay, or the
            # next sweep, takes them again. Left alone, a live instance would hold them forever.
            unsent = out.held - out.handed_over
            if unsent:
                await self._until_stored(
                    "giving back claims", lambda: ledger.release(self._pool, sorted(unsent))
                )
            raise

    async def _route(self, items: Sequence[_Item], out: _Outcomes) -> list[Event]:
        stopped_runs = await ledger.stopped_runs(self._pool, {i.message.run_id for i in items})
        settings = await self._tenants.get({i.message.tenant_id for i in items})
        now = self._clock()
        ready: list[_Item] = []
        stopped: list[_Item] = []
        openings: dict[tuple[str, str], datetime | None] = {}
        for item in items:
            message = item.message
            why = stopped_runs.get(message.run_id)
            if why == "cancelled":
                stopped.append(item)
                continue
            if why == "paused":
                out.waits.append(
                    ledger.Wait(message, None, "paused", item.attempts, token=item.token)
                )
                continue
            if message.preview:
                opening = None
            else:
                # Once per tenant and channel: the same for every message of the batch.
                key = (message.tenant_id, message.channel)
                if key not in openings:
                    openings[key] = opens_at(now, message.channel, settings[message.tenant_id])
                opening = openings[key]
            if opening is not None:
                out.waits.append(
                    ledger.Wait(message, opening, "send_window", item.attempts, token=item.token)
                )
            else:
                ready.append(item)
        gate = asyncio.Semaphore(self._limits.waves_in_flight)
        size = self._limits.wave_size
        deadline = time.monotonic() + self._limits.max_wait_seconds

        async def wave(part: Sequence[_Item]) -> None:
            async with gate:
                await self._wave(part, settings, deadline, out)

        # Every wave runs to its end before a failure is raised: a wave left running would
        # record outcomes nobody announces.
        failures = [
            r
            for r in await asyncio.gather(
                *(wave(ready[i : i + size]) for i in range(0, len(ready), size)),
                return_exceptions=True,
            )
            if isinstance(r, BaseException)
        ]
        stopped = await self._announce_finished(stopped, out)
        await self._cancel(stopped, out)
        # A wait after a provider's answer is an outcome too: kept until stored.
        parked = await self._until_stored(
            "parking messages", lambda: ledger.schedule(self._pool, out.waits, self._clock())
        )
        if failures:
            raise failures[0]
        out.events.extend(deferred_event(w) for w in parked)
        return out.events

    async def _announce_finished(self, stopped: list[_Item], out: _Outcomes) -> list[_Item]:
        """Fresh messages held or cancelled without a claim may be replays of messages that
        reached a final state: announced again and dropped from `out.waits`, else their run
        would never complete. The stopped items still to cancel are returned. Messages sent in
        a wave learn the same from their claim, so the usual batch costs no query here."""
        unclaimed = [w.message for w in out.waits if w.token is None] + [
            i.message for i in stopped if i.token is None
        ]
        if not unclaimed:
            return stopped
        earlier = await ledger.finished(self._pool, [m.recipient_id for m in unclaimed])
        out.events.extend(
            _again(m, earlier[m.recipient_id]) for m in unclaimed if m.recipient_id in earlier
        )
        out.waits = [w for w in out.waits if w.message.recipient_id not in earlier]
        return [i for i in stopped if i.message.recipient_id not in earlier]

    async def _cancel(self, items: Sequence[_Item], out: _Outcomes) -> None:
        if not items:
            return
        held = [i.token for i in items if i.token is not None]
        # Taken from the ledger: the rows exist and are ours.
        await ledger.cancel_claimed(self._pool, held)
        new = {i.message.recipient_id for i in items if i.token is not None}
        new |= await ledger.cancel_new(self._pool, [i.message for i in items if i.token is None])
        out.events.extend(
            DeliveryCancelled(**i.message.ref()) for i in items if i.message.recipient_id in new
        )

    async def _wave(
        self,
        part: Sequence[_Item],
        settings: dict[str, TenantSettings],
        deadline: float,
        out: _Outcomes,
    ) -> None:
        # Keys per tenant and channel, not per message: a wave has one or a few of them.
        pairs = Counter((i.message.tenant_id, i.message.channel) for i in part)
        every: Counter[str] = Counter()
        for (tenant_id, channel), n in pairs.items():
            for key in ratelimit.buckets(tenant_id, channel):
                every[key] += n
        # A tenant's own rate is known from its settings at once; relays and pauses from the
        # shared table, re-read every second.
        limited = await self._limited.among(every) | {
            ratelimit.tenant_key(tenant_id, channel)
            for tenant_id, channel in pairs
            if _rate(settings[tenant_id], channel) is not None
        }
        counts = {key: n for key, n in every.items() if key in limited}
        wait = await ratelimit.reserve(self._pool, counts)
        # Nothing to wait for: sent now, however late the batch is (its waves may have queued
        # behind a slow relay past the deadline).
        if wait > 0 and time.monotonic() + wait > deadline:
            await ratelimit.refund(self._pool, counts)
            due = self._clock() + timedelta(seconds=wait)
            # Send the share of the wave the budget allows and park the rest: parking a whole
            # wave that never fits (16 messages at 4/s) would park it forever.
            fits = int(len(part) * max(0.0, deadline - time.monotonic()) / wait)
            later = part[fits:] if 0 < fits < len(part) else part
            out.waits.extend(
                ledger.Wait(i.message, due, "throttled", i.attempts, token=i.token) for i in later
            )
            if later is not part:
                await self._wave(part[:fits], settings, deadline, out)
            return
        if wait > 0:
            await asyncio.sleep(wait)
        held = await self._claim(part, limited, out)
        try:
            await self._send_and_record(held, out)
        except Exception as error:
            if not is_transient(error):
                # A fault of ours, not an outage: the claims would stay ours forever.
                tokens = [i.token for i in held if i.token is not None]
                await self._until_stored(
                    "settling claims", lambda: ledger.settle_unrecorded(self._pool, tokens)
                )
            raise

    async def _claim(self, part: Sequence[_Item], limited: Set[str], out: _Outcomes) -> list[_Item]:
        """The wave's items with their claims: fresh messages are claimed now, unless another
        dispatcher has them (in flight there, or finished: announced again)."""
        fresh = [i.message for i in part if i.token is None]
        if not fresh:
            return list(part)
        claims = await ledger.claim(self._pool, fresh, self._me)
        claimed, finished = claims.claimed, claims.finished
        out.held.update(claimed.values())
        if finished:
            out.events.extend(
                _again(m, finished[m.recipient_id]) for m in fresh if m.recipient_id in finished
            )
        if len(claimed) < len(fresh):
            unused = Counter(
                key
                for m in fresh
                if m.recipient_id not in claimed
                for key in ratelimit.buckets(m.tenant_id, m.channel)
                if key in limited
            )
            if unused:
                await ratelimit.refund(self._pool, dict(unused))
        held = []
        for i in part:
            token = i.token if i.token is not None else claimed.get(i.message.recipient_id)
            if token is not None:
                held.append(i if token is i.token else _Item(i.message, i.attempts, token))
        return held

    async def _send_and_record(self, held: Sequence[_Item], out: _Outcomes) -> None:
        out.handed_over.update(i.token for i in held if i.token is not None)
        attempts = await asyncio.gather(*(self._attempt(i.message) for i in held))
        finals: dict[UUID, Attempt] = {}
        tokens: dict[UUID, int] = {}
        for item, attempt in zip(held, attempts, strict=True):
            message = item.message
            if attempt.verdict in _MAY_WAIT:
                wait_entry = await self._after(item, attempt)
                if wait_entry is not None:
                    out.waits.append(wait_entry)
                    continue
            if attempt.verdict == "temporary":
                attempt = replace(
                    attempt, detail=f"gave up after {item.attempts + 1} attempts: {attempt.detail}"
                )
            assert item.token is not None
            finals[message.recipient_id] = attempt
            tokens[message.recipient_id] = item.token
        recorded = await self._record(finals, tokens, announced=out.replayable)
        applied, corrected = recorded.applied, recorded.corrected
        for item in held:  # in the wave's order
            message = item.message
            recipient_id = message.recipient_id
            if recipient_id in applied or recipient_id in corrected:
                out.events.append(final_event(message, finals[recipient_id]))
                if recipient_id in corrected:
                    out.events.append(correction(message, finals[recipient_id]))
        if len(finals) > len(recorded.applied) + len(recorded.corrected):
            log.warning(
                "%d outcomes arrived after their claims were settled otherwise",
                len(finals) - len(recorded.applied) - len(recorded.corrected),
            )

    async def _attempt(self, message: MessageRendered) -> Attempt:
        """The provider's answer; an error nobody foresaw leaves the outcome unknown (the
        provider may have had the message) rather than the claim unrecorded."""
        try:
            return await self._provider.send(message)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            log.exception("handing over %s failed unexpectedly", message.recipient_id)
            return outcome_unknown(in_a_few_words(error))

    async def _record(
        self, finals: dict[UUID, Attempt], tokens: dict[UUID, int], *, announced: bool
    ) -> ledger.Recorded:
        """An outcome given up here would become unknown, and its manual action would send a
        second copy."""
        tries = 0

        async def record() -> ledger.Recorded:
            nonlocal tries
            tries += 1
            return await ledger.record(
                self._pool, finals, tokens, announced=announced, again=tries > 1
            )

        return await self._until_stored("recording outcomes", record)

    async def _until_stored(self, what: str, store: Callable[[], Awaitable[T]]) -> T:
        """`store()`, tried again until the database answers (0.2 s, doubling to 5 s). A try
        that neither answers nor fails within `store_attempt_seconds` is abandoned (a timeout is
        transient) and tried again: every store here is safe to repeat."""
        delay = 0.2
        while True:
            try:
                async with asyncio.timeout(self._limits.store_attempt_seconds):
                    return await store()
            except Exception as error:
                if not is_transient(error):
                    raise
                log.warning(
                    "%s failed (%s); trying again in %.1f s", what, in_a_few_words(error), delay
                )
                await asyncio.sleep(delay)
                delay = min(2 * delay, 5.0)

    async def _after(self, item: _Item, attempt: Attempt) -> ledger.Wait | None:
        """For a verdict in `_MAY_WAIT`: when to try again, or None when it was the last try."""
        now = self._clock()
        message, attempts = item.message, item.attempts
        if attempt.verdict == "throttled":
            seconds = self._policy.after_throttle(attempt.retry_after)
            # Stored like an outcome: a failure here must not drop the wave's other answers.
            await self._until_stored(
                "pausing the relay",
                lambda: ratelimit.pause(self._pool, ratelimit.relay_key(message.channel), seconds),
            )
            self._limited.forget()
            return ledger.Wait(
                message,
                now + timedelta(seconds=seconds),
                "throttled",
                attempts,
                attempt,
                item.token,
            )
        delay = self._policy.after_failure(attempts + 1)
        if delay is None:
            return None
        if attempt.retry_after is not None:
            delay = max(delay, min(attempt.retry_after, self._policy.max_backoff))
        return ledger.Wait(
            message, now + timedelta(seconds=delay), "retry", attempts + 1, attempt, item.token
        )


def _again(message: MessageRendered, earlier: ledger.Finished) -> Event:
    """A final state reached before, announced again in case its event was lost."""
    if earlier.state == "cancelled":
        return DeliveryCancelled(**message.ref())
    return final_event(message, earlier.attempt)
