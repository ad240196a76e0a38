"""The delivery ledger: every query of the dispatcher about messages.

One row per message (the recipient's stable id). A message is handed to its provider only by
the dispatcher whose claim created or took the row, so a message that arrives twice, after a
restart or at another instance, is never handed over twice.

A claim names its holder (`Claimant`: an instance and its life) and carries a fencing token:
only the holder records its outcome, and only while the claim is its own. A claim whose holder
died is settled as unknown; if the holder was only slow and later reports the relay's answer,
that answer is applied as a correction, never as a silent overwrite.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from shared.clock import utc_now
from shared.db import Connection
from shared.events import MessageRendered, RefreshDeclined, WaitReason

from .policy import Attempt, Verdict


@dataclass(frozen=True)
class Finished:
    """The final state a message reached earlier: announced again in case that was lost."""

    state: str
    attempt: Attempt


@dataclass(frozen=True)
class Claimant:
    """A dispatcher as the ledger knows it: an identity kept across restarts, and the life
    (one more at every start) that tells its current claims from those of a crashed life."""

    instance_id: str
    life: int


@dataclass(frozen=True)
class Claims:
    """`claimed`: ours to send now, with each claim's fencing token. `finished`: final before;
    others are in flight elsewhere or waiting (scheduled) and are left alone."""

    claimed: dict[UUID, int]
    finished: dict[UUID, Finished]


@dataclass(frozen=True)
class Recorded:
    """`applied`: outcomes of claims still ours. `corrected`: claims settled as unknown
    meanwhile, whose real outcome replaced the unknown. The rest were not ours any more."""

    applied: set[UUID]
    corrected: set[UUID]


_VERDICT_OF_STATE: dict[str, Verdict] = {
    "delivered": "accepted",
    "failed": "permanent",
    "unknown": "unknown",
    "cancelled": "permanent",
}


def _attempt(row: asyncpg.Record) -> Attempt:
    """The outcome a final row records."""
    return Attempt(
        _VERDICT_OF_STATE[row["state"]],
        row["provider_code"],
        row["provider_message"] or "",
        row["reason"],
    )


def _refs(messages: Sequence[MessageRendered]) -> tuple[list[Any], ...]:
    return (
        [m.recipient_id for m in messages],
        [m.run_id for m in messages],
        [m.tenant_id for m in messages],
        [m.channel for m in messages],
        [m.broadcast_id for m in messages],
        [m.contract_id for m in messages],
        [m.address for m in messages],
    )


async def claim(pool: asyncpg.Pool, messages: Sequence[MessageRendered], me: Claimant) -> Claims:
    """Claim messages seen for the first time; report the ones that reached a final state.

    One statement, so one round trip and one commit per wave, and no claim is ever committed
    without its answer being read. The final rows are those committed before it began (the
    rows it claims are not visible to it): a row another dispatcher inserts meanwhile is in
    flight there, as it would be a moment earlier, and its holder announces its outcome."""
    rows = await pool.fetch(
        """WITH t AS (
               SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::uuid[],
                                    $6::text[], $7::text[])
                   AS t(recipient_id, run_id, tenant_id, channel, broadcast_id, contract_id,
                        address)),
           claimed AS (
               INSERT INTO dispatcher.deliveries
                   (recipient_id, run_id, tenant_id, channel, broadcast_id, contract_id,
                    address, state, claimed_by, claim_life, claim_token)
               SELECT t.*, 'claimed', $8, $9, nextval('dispatcher.claim_tokens') FROM t
               ON CONFLICT (recipient_id) DO NOTHING
               RETURNING recipient_id, claim_token)
           SELECT recipient_id, claim_token, NULL AS state, NULL AS reason,
                  NULL::integer AS provider_code, NULL AS provider_message
           FROM claimed
           UNION ALL
           -- Only the rows not claimed now, each by one index probe (LIMIT 1: it is the key;
           -- as a join, a plan made on a small table scans it whole): usually none.
           SELECT d.recipient_id, NULL, d.state, d.reason, d.provider_code, d.provider_message
           FROM t CROSS JOIN LATERAL (
               SELECT * FROM dispatcher.deliveries d
               WHERE d.recipient_id = t.recipient_id AND d.state = ANY($10::text[]) LIMIT 1) d
           WHERE NOT EXISTS (SELECT FROM claimed c WHERE c.recipient_id = t.recipient_id)""",
        *_refs(messages),
        me.instance_id,
        me.life,
        list(_VERDICT_OF_STATE),
    )
    return Claims(
        {r["recipient_id"]: r["claim_token"] for r in rows if r["state"] is None},
        {r["recipient_id"]: Finished(r["state"], _attempt(r)) for r in rows if r["state"]},
    )


async def finished(db: asyncpg.Pool | Connection, ids: Sequence[UUID]) -> dict[UUID, Finished]:
    """The messages among `ids` that reached a final state before: a replay announces them
    again, whatever their run or their window says now (a held message would never be)."""
    rows = await db.fetch(
        """SELECT recipient_id, state, reason, provider_code, provider_message
           FROM dispatcher.deliveries
           WHERE recipient_id = ANY($1::uuid[]) AND state = ANY($2::text[])""",
        list(ids),
        list(_VERDICT_OF_STATE),
    )
    return {r["recipient_id"]: Finished(r["state"], _attempt(r)) for r in rows}


async def record(
    pool: asyncpg.Pool,
    outcomes: dict[UUID, Attempt],
    tokens: dict[UUID, int],
    *,
    announced: bool = True,
    again: bool = False,
) -> Recorded:
    """Final outcomes (delivered, failed for good or unknown) of claims holding `tokens`.

    Fenced: a claim settled as unknown meanwhile (its holder looked dead) takes the outcome as
    a correction; any other row is left alone. `announced=False` when no Kafka redelivery
    would announce them again after a crash (see `unannounced`). `again`: an earlier try may
    have committed although its answer was lost (the database died meanwhile); a row that
    already holds this very outcome under this claim's token counts as recorded by it, so its
    event is still published (a copy is harmless: every reader keeps one outcome a message)."""
    if not outcomes:
        return Recorded(set(), set())
    ids = list(outcomes)
    attempts = [outcomes[i] for i in ids]
    states = {"accepted": "delivered", "unknown": "unknown"}
    # One UPDATE: it locks each row and, should another transaction change it first,
    # checks the conditions again on the new version (READ COMMITTED), as a FOR UPDATE would.
    # SET and WHERE read the row as it was: `corrected` tells a correction from a claim's own
    # outcome. `= ANY($1)` keeps it an index lookup however the planner sizes the unnest.
    rows = await pool.fetch(
        """UPDATE dispatcher.deliveries d
           SET state = o.state, reason = o.reason, provider_code = o.code,
               provider_message = o.detail, finished_at = now(), due_at = NULL,
               waiting_for = NULL, payload = NULL, corrected = d.state = 'unknown',
               -- A correction has no Kafka redelivery to announce it again.
               announced = $7 AND d.state = 'claimed'
           FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::int[], $6::text[])
                AS o(recipient_id, token, state, reason, code, detail)
           WHERE d.recipient_id = ANY($1::uuid[]) AND d.recipient_id = o.recipient_id
             AND d.claim_token = o.token AND d.state IN ('claimed', 'unknown')
             AND NOT (d.state = 'unknown' AND o.state = 'unknown')
           RETURNING d.recipient_id, d.corrected""",
        ids,
        [tokens[i] for i in ids],
        [states.get(a.verdict, "failed") for a in attempts],
        [a.reason for a in attempts],
        [a.code for a in attempts],
        [a.detail[:1000] for a in attempts],
        announced,
    )
    recorded = Recorded(
        {r["recipient_id"] for r in rows if not r["corrected"]},
        {r["recipient_id"] for r in rows if r["corrected"]},
    )
    left = [i for i in ids if i not in recorded.applied and i not in recorded.corrected]
    if again and left:
        done = await pool.fetch(
            """SELECT d.recipient_id, d.corrected
               FROM dispatcher.deliveries d
               JOIN unnest($1::uuid[], $2::bigint[], $3::text[]) AS t(recipient_id, token, state)
                 USING (recipient_id)
               WHERE d.recipient_id = ANY($1::uuid[]) AND d.claim_token = t.token
                 AND d.state = t.state""",
            left,
            [tokens[i] for i in left],
            [states.get(outcomes[i].verdict, "failed") for i in left],
        )
        recorded.applied.update(r["recipient_id"] for r in done if not r["corrected"])
        recorded.corrected.update(r["recipient_id"] for r in done if r["corrected"])
    return recorded


@dataclass(frozen=True)
class Wait:
    """A message that will be tried again at `due_at`."""

    message: MessageRendered
    # None: held until its run is resumed.
    due_at: datetime | None
    waiting_for: WaitReason
    attempts: int
    attempt: Attempt | None = None
    # The claim this dispatcher holds on the message; None when parked before any claim (fresh
    # from Kafka, outside its window or its run paused). Such a wait never takes over a row
    # another dispatcher has claimed: that one may be handing it over right now.
    token: int | None = None


async def schedule(
    pool: asyncpg.Pool, waits: Sequence[Wait], now: datetime | None = None
) -> list[Wait]:
    """Park messages until they are due; the row may not exist yet (outside its window).

    Returns the waits as recorded: a message held for a run resumed in the meantime is due
    `now` (by the caller's clock; the real one when not given)."""
    if not waits:
        return []
    async with pool.acquire() as connection, connection.transaction():
        held = {w.message.run_id for w in waits if w.waiting_for == "paused"}
        if held:
            # FOR SHARE: a resume (which deletes the row) waits for this transaction, and its
            # release of held messages then sees the ones parked here.
            rows = await connection.fetch(
                "SELECT run_id FROM dispatcher.paused_runs WHERE run_id = ANY($1::uuid[]) "
                "FOR SHARE",
                list(held),
            )
            still = {r["run_id"] for r in rows}
            due = now or utc_now()
            waits = [
                w
                if w.waiting_for != "paused" or w.message.run_id in still
                else replace(w, due_at=due)
                for w in waits
            ]
        await _park(connection, waits)
    return list(waits)


async def _park(connection: Connection, waits: Sequence[Wait]) -> None:
    if not waits:
        return
    messages = [w.message for w in waits]
    await connection.execute(
        """INSERT INTO dispatcher.deliveries AS d
               (recipient_id, run_id, tenant_id, channel, broadcast_id, contract_id, address,
                state, due_at, waiting_for, attempts, provider_code, provider_message, payload,
                claim_token, rendition)
           SELECT t.recipient_id, t.run_id, t.tenant_id, t.channel, t.broadcast_id,
                  t.contract_id, t.address, 'scheduled', t.due_at, t.waiting_for, t.attempts,
                  t.code, t.detail, t.payload::jsonb, t.token, t.rendition
           FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::uuid[], $6::text[],
                       $7::text[], $8::timestamptz[], $9::text[], $10::int[], $11::int[],
                       $12::text[], $13::text[], $14::bigint[], $15::int[])
                AS t(recipient_id, run_id, tenant_id, channel, broadcast_id, contract_id,
                     address, due_at, waiting_for, attempts, code, detail, payload, token,
                     rendition)
           ON CONFLICT (recipient_id) DO UPDATE
           SET state = 'scheduled', due_at = excluded.due_at, waiting_for = excluded.waiting_for,
               attempts = excluded.attempts, provider_code = excluded.provider_code,
               provider_message = excluded.provider_message, payload = excluded.payload,
               rendition = excluded.rendition,
               claimed_by = NULL, claim_life = NULL, claim_token = NULL
           -- A claim is given back only by its holder, while it holds it (a new row only ever
           -- comes from a wait without a claim: its token is NULL). A copy of an older
           -- rendition, replayed from Kafka, never replaces the values of a newer one.
           WHERE (d.state = 'scheduled' AND excluded.rendition >= d.rendition)
              OR (d.state = 'claimed' AND d.claim_token = excluded.claim_token)""",
        *_refs(messages),
        [w.due_at for w in waits],
        [w.waiting_for for w in waits],
        [w.attempts for w in waits],
        [w.attempt.code if w.attempt else None for w in waits],
        [w.attempt.detail[:1000] if w.attempt else None for w in waits],
        [m.model_dump_json() for m in messages],
        [w.token for w in waits],
        [m.rendition for m in messages],
    )


@dataclass(frozen=True)
class Taken:
    """A waiting message claimed because its time has come."""

    message: MessageRendered
    attempts: int
    token: int


async def take_due(
    pool: asyncpg.Pool,
    now: datetime,
    me: Claimant,
    limit: int,
    tenant_id: str | None = None,
) -> list[Taken]:
    """Claim up to `limit` waiting messages whose time has come; only `tenant_id`'s when given
    (a sweep on a clock of its own must not take the others').

    SKIP LOCKED: several dispatchers sweep at once without taking the same message."""
    rows = await pool.fetch(
        """UPDATE dispatcher.deliveries
           SET state = 'claimed', claimed_by = $2, claim_life = $3,
               claim_token = nextval('dispatcher.claim_tokens')
           WHERE recipient_id IN (
               SELECT recipient_id FROM dispatcher.deliveries
               WHERE state = 'scheduled' AND due_at <= $1
                 AND ($5::text IS NULL OR tenant_id = $5)
               ORDER BY due_at LIMIT $4
               FOR UPDATE SKIP LOCKED)
           RETURNING payload, attempts, claim_token""",
        now,
        me.instance_id,
        me.life,
        limit,
        tenant_id,
    )
    return [
        Taken(MessageRendered.model_validate(_json(r["payload"])), r["attempts"], r["claim_token"])
        for r in rows
    ]


@dataclass(frozen=True)
class Refreshing:
    """A waiting message to render again: its last rendition, and the rendition asked for."""

    message: MessageRendered
    rendition: int


async def refresh(
    pool: asyncpg.Pool, tokens: Sequence[int], now: datetime, ask_again: datetime
) -> list[Refreshing]:
    """Waiting messages claimed by `take_due` that must be rendered again before they leave:
    'refreshing', asking for the next rendition, asked again from `ask_again` on. The claim is
    given back: nobody holds a message that waits for its rendition."""
    rows = await pool.fetch(
        """UPDATE dispatcher.deliveries
           SET state = 'refreshing', rendition = rendition + 1, due_at = $3,
               refresh_asked_at = $2, claimed_by = NULL, claim_life = NULL, claim_token = NULL
           WHERE claim_token = ANY($1::bigint[]) AND state = 'claimed'
           RETURNING payload, rendition""",
        list(tokens),
        now,
        ask_again,
    )
    return [
        Refreshing(MessageRendered.model_validate(_json(r["payload"])), r["rendition"])
        for r in rows
    ]


async def overdue_refreshes(
    pool: asyncpg.Pool,
    now: datetime,
    ask_again: datetime,
    limit: int,
    tenant_id: str | None = None,
) -> list[Refreshing]:
    """Refreshes unanswered since their `due_at` (the request or its answer lost in a crash):
    asked again, next from `ask_again` on. SKIP LOCKED: one sweeper asks for each."""
    rows = await pool.fetch(
        """UPDATE dispatcher.deliveries SET due_at = $2
           WHERE recipient_id IN (
               SELECT recipient_id FROM dispatcher.deliveries
               WHERE state = 'refreshing' AND due_at <= $1
                 AND ($4::text IS NULL OR tenant_id = $4)
               ORDER BY due_at LIMIT $3
               FOR UPDATE SKIP LOCKED)
           RETURNING payload, rendition""",
        now,
        ask_again,
        limit,
        tenant_id,
    )
    return [
        Refreshing(MessageRendered.model_validate(_json(r["payload"])), r["rendition"])
        for r in rows
    ]


async def renew(pool: asyncpg.Pool, messages: Sequence[MessageRendered], now: datetime) -> None:
    """New renditions replace the messages waiting for them, due `now` (the sweeper then sends
    them as any waiting message: window, pause, cancel and rate apply). A rendition nobody
    waits for (a copy, an older one, a row cancelled or failed meanwhile) changes nothing."""
    if not messages:
        return
    await pool.execute(
        """UPDATE dispatcher.deliveries d
           SET state = 'scheduled', due_at = $4, payload = t.payload::jsonb
           FROM unnest($1::uuid[], $2::int[], $3::text[]) AS t(recipient_id, rendition, payload)
           WHERE d.recipient_id = t.recipient_id AND d.state = 'refreshing'
             AND d.rendition = t.rendition""",
        [m.recipient_id for m in messages],
        [m.rendition for m in messages],
        [m.model_dump_json() for m in messages],
        now,
    )


@dataclass(frozen=True)
class Ref:
    """What identifies a message in a delivery event, read back from the ledger."""

    recipient_id: UUID
    run_id: UUID
    tenant_id: str
    channel: str
    broadcast_id: UUID
    contract_id: str
    address: str

    def fields(self) -> dict[str, Any]:
        return {
            "recipient_id": self.recipient_id,
            "run_id": self.run_id,
            "tenant_id": self.tenant_id,
            "channel": self.channel,
            "broadcast_id": self.broadcast_id,
            "contract_id": self.contract_id,
            "address": self.address,
        }


_REF_COLUMNS = "recipient_id, run_id, tenant_id, channel, broadcast_id, contract_id, address"


async def decline(pool: asyncpg.Pool, declined: Sequence[RefreshDeclined]) -> list[Ref]:
    """Messages that could not be rendered again while they waited (contract deleted, address
    gone: `no_contact`; the new rendition unrenderable): failed with the reason given rather
    than sent with the values they had. Unannounced until published (`mark_announced`): no
    Kafka redelivery announces what a crash in between leaves."""
    if not declined:
        return []
    rows = await pool.fetch(
        f"""UPDATE dispatcher.deliveries d
            SET state = 'failed', reason = t.reason, provider_message = t.detail,
                finished_at = now(), due_at = NULL, payload = NULL, announced = false
            FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[])
                 AS t(recipient_id, rendition, detail, reason)
            WHERE d.recipient_id = t.recipient_id AND d.state = 'refreshing'
              AND d.rendition = t.rendition
            RETURNING {", ".join("d." + c for c in _REF_COLUMNS.split(", "))}""",  # noqa: S608
        [d.recipient_id for d in declined],
        [d.rendition for d in declined],
        [d.detail[:1000] for d in declined],
        [d.reason for d in declined],
    )
    return [Ref(**dict(r)) for r in rows]


async def abandon_refreshes(
    pool: asyncpg.Pool, asked_before: datetime, tenant_id: str | None = None
) -> list[Ref]:
    """Refreshes asked for before `asked_before` and still unanswered: the message fails
    (`render_failed`), unannounced until published, rather than wait forever or leave with the
    values it had."""
    rows = await pool.fetch(
        f"""UPDATE dispatcher.deliveries d
            SET state = 'failed', reason = 'render_failed', finished_at = now(),
                provider_message = 'no new rendition came: not sent with the values it had',
                due_at = NULL, payload = NULL, announced = false
            WHERE d.state = 'refreshing' AND d.refresh_asked_at < $1
              AND ($2::text IS NULL OR d.tenant_id = $2)
            RETURNING {", ".join("d." + c for c in _REF_COLUMNS.split(", "))}""",  # noqa: S608
        asked_before,
        tenant_id,
    )
    return [Ref(**dict(r)) for r in rows]


async def settle_abandoned(
    pool: asyncpg.Pool, me: Claimant, takeover: timedelta | None
) -> list[Ref]:
    """Claims nobody will record: those of this instance's earlier lives (it crashed between
    claim and outcome) and, when `takeover` is given, those of instances silent for that long.
    The provider may or may not have the message: unknown, never sent again automatically.

    The fencing token stays, so that a holder that was only slow corrects the outcome."""
    rows = await pool.fetch(
        f"""UPDATE dispatcher.deliveries d
            SET state = 'unknown', reason = 'unknown_outcome', finished_at = now(),
                provider_message = 'the dispatcher stopped while handing it over',
                payload = NULL, announced = false
            FROM dispatcher.instances i
            WHERE d.state = 'claimed' AND i.instance_id = d.claimed_by
              AND ((d.claimed_by = $1 AND d.claim_life < $2)
                   OR (d.claimed_by <> $1 AND $3::interval IS NOT NULL
                       AND i.heartbeat_at < now() - $3::interval))
            RETURNING {", ".join("d." + c for c in _REF_COLUMNS.split(", "))}""",  # noqa: S608
        me.instance_id,
        me.life,
        takeover,
    )
    return [Ref(**dict(r)) for r in rows]


async def settle_unrecorded(pool: asyncpg.Pool, tokens: Sequence[int]) -> None:
    """Claims whose outcome could not be recorded because of a fault of the dispatcher itself
    (a bug, not an outage): unknown now, rather than held by a live instance forever."""
    await pool.execute(
        """UPDATE dispatcher.deliveries
           SET state = 'unknown', reason = 'unknown_outcome', finished_at = now(),
               provider_message = 'the dispatcher failed while recording its outcome',
               payload = NULL, announced = false
           WHERE claim_token = ANY($1::bigint[]) AND state = 'claimed'""",
        list(tokens),
    )


async def release(pool: asyncpg.Pool, tokens: Sequence[int]) -> None:
    """Give back claims whose message never reached a provider: a fresh one is forgotten (the
    Kafka replay claims it again), one taken from the ledger is due again."""
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute(
            "DELETE FROM dispatcher.deliveries "
            "WHERE claim_token = ANY($1::bigint[]) AND state = 'claimed' AND payload IS NULL",
            list(tokens),
        )
        await connection.execute(
            """UPDATE dispatcher.deliveries
               SET state = 'scheduled', claimed_by = NULL, claim_life = NULL, claim_token = NULL
               WHERE claim_token = ANY($1::bigint[]) AND state = 'claimed'""",
            list(tokens),
        )


async def cancel_new(pool: asyncpg.Pool, messages: Sequence[MessageRendered]) -> set[UUID]:
    """Record as cancelled messages of cancelled runs seen for the first time."""
    if not messages:
        return set()
    rows = await pool.fetch(
        """INSERT INTO dispatcher.deliveries
               (recipient_id, run_id, tenant_id, channel, broadcast_id, contract_id, address,
                state, finished_at)
           SELECT t.*, 'cancelled', now()
           FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::uuid[], $6::text[],
                       $7::text[]) AS t
           ON CONFLICT (recipient_id) DO NOTHING
           RETURNING recipient_id""",
        *_refs(messages),
    )
    return {r["recipient_id"] for r in rows}


async def cancel_claimed(pool: asyncpg.Pool, tokens: Sequence[int]) -> None:
    """Messages taken to be sent whose run was cancelled meanwhile."""
    await pool.execute(
        """UPDATE dispatcher.deliveries
           SET state = 'cancelled', finished_at = now(), payload = NULL, announced = false
           WHERE claim_token = ANY($1::bigint[]) AND state = 'claimed'""",
        list(tokens),
    )


async def cancel_waiting(pool: asyncpg.Pool) -> list[Ref]:
    """Waiting messages of cancelled runs are cancelled, not sent when due (nor when a new
    rendition of theirs arrives)."""
    rows = await pool.fetch(
        f"""UPDATE dispatcher.deliveries d
            SET state = 'cancelled', finished_at = now(), payload = NULL, due_at = NULL,
                announced = false
            FROM dispatcher.cancelled_runs c
            WHERE d.run_id = c.run_id AND d.state IN ('scheduled', 'refreshing')
            RETURNING {", ".join("d." + c for c in _REF_COLUMNS.split(", "))}""",  # noqa: S608
    )
    return [Ref(**dict(r)) for r in rows]


async def stopped_runs(pool: asyncpg.Pool, run_ids: set[UUID]) -> dict[UUID, str]:
    """Which of these runs are 'cancelled' or 'paused' (cancelled wins)."""
    rows = await pool.fetch(
        """SELECT run_id, 'cancelled' AS why FROM dispatcher.cancelled_runs
           WHERE run_id = ANY($1::uuid[])
           UNION ALL
           SELECT run_id, 'paused' FROM dispatcher.paused_runs WHERE run_id = ANY($1::uuid[])
           ORDER BY why DESC""",
        list(run_ids),
    )
    return {r["run_id"]: r["why"] for r in rows}


async def pause_run(pool: asyncpg.Pool, run_id: UUID) -> None:
    await pool.execute(
        "INSERT INTO dispatcher.paused_runs (run_id) VALUES ($1) ON CONFLICT DO NOTHING", run_id
    )


async def resume_run(pool: asyncpg.Pool, run_id: UUID) -> None:
    """Release the run: its held messages are due now, for whichever sweeper comes first."""
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute("DELETE FROM dispatcher.paused_runs WHERE run_id = $1", run_id)
        await connection.execute(
            """UPDATE dispatcher.deliveries SET due_at = now()
               WHERE run_id = $1 AND state = 'scheduled' AND waiting_for = 'paused'""",
            run_id,
        )


async def record_cancelled_runs(pool: asyncpg.Pool, run_ids: Sequence[UUID]) -> None:
    await pool.execute(
        "INSERT INTO dispatcher.cancelled_runs (run_id) SELECT unnest($1::uuid[]) "
        "ON CONFLICT DO NOTHING",
        list(run_ids),
    )


@dataclass(frozen=True)
class Unannounced:
    ref: Ref
    state: str
    attempt: Attempt
    corrected: bool


async def unannounced(pool: asyncpg.Pool, before: datetime) -> list[Unannounced]:
    """Outcomes recorded before `before` whose event was never published (a crash between)."""
    rows = await pool.fetch(
        f"""SELECT {_REF_COLUMNS}, state, reason, provider_code, provider_message, corrected
            FROM dispatcher.deliveries
            WHERE NOT announced AND finished_at < $1 LIMIT 1000""",  # noqa: S608
        before,
    )
    return [
        Unannounced(
            Ref(**{c: r[c] for c in _REF_COLUMNS.split(", ")}),
            r["state"],
            _attempt(r),
            r["corrected"],
        )
        for r in rows
    ]


async def mark_announced(pool: asyncpg.Pool, ids: Sequence[UUID]) -> None:
    await pool.execute(
        "UPDATE dispatcher.deliveries SET announced = true "
        "WHERE recipient_id = ANY($1::uuid[]) AND NOT announced",
        list(ids),
    )


def _json(value: Any) -> Any:
    # The pool decodes jsonb already; a plain connection hands over text.
    return json.loads(value) if isinstance(value, str) else value
