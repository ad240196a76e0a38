"""The delivery ledger: every query of the dispatcher about messages.

One row per message (the recipient's stable id). A message is handed to its provider only by
the dispatcher whose claim created or took the row, so a message that arrives twice, after a
restart or at another instance, is never handed over twice.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg

from shared.db import Connection
from shared.events import MessageRendered, WaitReason

from .policy import Attempt, Verdict


@dataclass(frozen=True)
class Finished:
    """The final state a message reached earlier: announced again in case that was lost."""

    state: str
    attempt: Attempt


@dataclass(frozen=True)
class Claims:
    """`claimed`: ours to send now. `finished`: final before; others are in flight elsewhere
    or waiting (scheduled) and are left alone."""

    claimed: set[UUID]
    finished: dict[UUID, Finished]


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


async def claim(
    pool: asyncpg.Pool, messages: Sequence[MessageRendered], lease_until: datetime
) -> Claims:
    """Claim messages seen for the first time; report the ones that reached a final state."""
    async with pool.acquire() as connection, connection.transaction():
        claimed = {
            r["recipient_id"]
            for r in await connection.fetch(
                """INSERT INTO dispatcher.deliveries
                       (recipient_id, run_id, tenant_id, channel, broadcast_id, contract_id,
                        address, state, lease_until)
                   SELECT t.*, 'claimed', $8
                   FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::uuid[],
                               $6::text[], $7::text[]) AS t
                   ON CONFLICT (recipient_id) DO NOTHING
                   RETURNING recipient_id""",
                *_refs(messages),
                lease_until,
            )
        }
        earlier = await connection.fetch(
            """SELECT recipient_id, state, reason, provider_code, provider_message
               FROM dispatcher.deliveries
               WHERE recipient_id = ANY($1::uuid[]) AND state = ANY($2::text[])""",
            [m.recipient_id for m in messages if m.recipient_id not in claimed],
            list(_VERDICT_OF_STATE),
        )
    finished = {r["recipient_id"]: Finished(r["state"], _attempt(r)) for r in earlier}
    return Claims(claimed, finished)


async def record(
    pool: asyncpg.Pool, outcomes: dict[UUID, Attempt], *, announced: bool = True
) -> None:
    """Final outcomes: delivered, failed (for good) or unknown. `announced=False` when no
    Kafka redelivery would announce them again after a crash (see `unannounced`)."""
    if not outcomes:
        return
    ids = list(outcomes)
    attempts = [outcomes[i] for i in ids]
    states = {"accepted": "delivered", "unknown": "unknown"}
    await pool.execute(
        """UPDATE dispatcher.deliveries d
           SET state = t.state, reason = t.reason, provider_code = t.code,
               provider_message = t.detail, finished_at = now(), lease_until = NULL,
               due_at = NULL, waiting_for = NULL, payload = NULL, announced = $6
           FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::text[])
                AS t(recipient_id, state, reason, code, detail)
           WHERE d.recipient_id = t.recipient_id""",
        ids,
        [states.get(a.verdict, "failed") for a in attempts],
        [a.reason for a in attempts],
        [a.code for a in attempts],
        [a.detail[:1000] for a in attempts],
        announced,
    )


@dataclass(frozen=True)
class Wait:
    """A message that will be tried again at `due_at`."""

    message: MessageRendered
    # None: held until its run is resumed.
    due_at: datetime | None
    waiting_for: WaitReason
    attempts: int
    attempt: Attempt | None = None
    # False: parked before this dispatcher claimed it (fresh from Kafka, outside its window or
    # its run paused). Such a wait never takes over a row another dispatcher has claimed: that
    # one may be handing it over right now.
    ours: bool = True


async def schedule(pool: asyncpg.Pool, waits: Sequence[Wait]) -> list[Wait]:
    """Park messages until they are due; the row may not exist yet (outside its window).

    Returns the waits as recorded: a message held for a run resumed in the meantime is due
    at once."""
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
            now = datetime.now(UTC)
            waits = [
                w
                if w.waiting_for != "paused" or w.message.run_id in still
                else replace(w, due_at=now)
                for w in waits
            ]
        for ours in (True, False):
            await _park(connection, [w for w in waits if w.ours == ours], ours=ours)
    return list(waits)


async def _park(connection: Connection, waits: Sequence[Wait], *, ours: bool) -> None:
    if not waits:
        return
    messages = [w.message for w in waits]
    replaceable = "('claimed', 'scheduled')" if ours else "('scheduled')"
    await connection.execute(
        """INSERT INTO dispatcher.deliveries AS d
               (recipient_id, run_id, tenant_id, channel, broadcast_id, contract_id, address,
                state, due_at, waiting_for, attempts, provider_code, provider_message, payload)
           SELECT t.recipient_id, t.run_id, t.tenant_id, t.channel, t.broadcast_id,
                  t.contract_id, t.address, 'scheduled', t.due_at, t.waiting_for, t.attempts,
                  t.code, t.detail, t.payload::jsonb
           FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::uuid[], $6::text[],
                       $7::text[], $8::timestamptz[], $9::text[], $10::int[], $11::int[],
                       $12::text[], $13::text[])
                AS t(recipient_id, run_id, tenant_id, channel, broadcast_id, contract_id,
                     address, due_at, waiting_for, attempts, code, detail, payload)
           ON CONFLICT (recipient_id) DO UPDATE
           SET state = 'scheduled', due_at = excluded.due_at, waiting_for = excluded.waiting_for,
               attempts = excluded.attempts, provider_code = excluded.provider_code,
               provider_message = excluded.provider_message, payload = excluded.payload,
               lease_until = NULL
           WHERE d.state IN """  # noqa: S608 -- one of two constant lists
        + replaceable,
        *_refs(messages),
        [w.due_at for w in waits],
        [w.waiting_for for w in waits],
        [w.attempts for w in waits],
        [w.attempt.code if w.attempt else None for w in waits],
        [w.attempt.detail[:1000] if w.attempt else None for w in waits],
        [m.model_dump_json() for m in messages],
    )


async def take_due(
    pool: asyncpg.Pool,
    now: datetime,
    lease_until: datetime,
    limit: int,
    tenant_id: str | None = None,
) -> list[tuple[MessageRendered, int]]:
    """Claim up to `limit` waiting messages whose time has come, with their attempts so far;
    only `tenant_id`'s when given (a sweep on a clock of its own must not take the others').

    SKIP LOCKED: several dispatchers sweep at once without taking the same message."""
    rows = await pool.fetch(
        """UPDATE dispatcher.deliveries SET state = 'claimed', lease_until = $2
           WHERE recipient_id IN (
               SELECT recipient_id FROM dispatcher.deliveries
               WHERE state = 'scheduled' AND due_at <= $1
                 AND ($4::text IS NULL OR tenant_id = $4)
               ORDER BY due_at LIMIT $3
               FOR UPDATE SKIP LOCKED)
           RETURNING payload, attempts""",
        now,
        lease_until,
        limit,
        tenant_id,
    )
    return [(MessageRendered.model_validate(_json(r["payload"])), r["attempts"]) for r in rows]


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


async def expire_leases(pool: asyncpg.Pool, now: datetime) -> list[Ref]:
    """Claims nobody recorded in time: their dispatcher died between claim and outcome, so
    the provider may or may not have the message. Never sent again automatically."""
    rows = await pool.fetch(
        f"""UPDATE dispatcher.deliveries
            SET state = 'unknown', reason = 'unknown_outcome', finished_at = now(),
                provider_message = 'the dispatcher stopped while handing it over',
                lease_until = NULL, payload = NULL, announced = false
            WHERE state = 'claimed' AND lease_until < $1
            RETURNING {_REF_COLUMNS}""",  # noqa: S608 -- constant column list
        now,
    )
    return [Ref(**dict(r)) for r in rows]


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


async def cancel_claimed(pool: asyncpg.Pool, ids: Sequence[UUID]) -> None:
    """Messages taken to be sent whose run was cancelled meanwhile."""
    await pool.execute(
        """UPDATE dispatcher.deliveries
           SET state = 'cancelled', finished_at = now(), payload = NULL, lease_until = NULL,
               announced = false
           WHERE recipient_id = ANY($1::uuid[]) AND state = 'claimed'""",
        list(ids),
    )


async def cancel_waiting(pool: asyncpg.Pool) -> list[Ref]:
    """Waiting messages of cancelled runs are cancelled, not sent when due."""
    rows = await pool.fetch(
        f"""UPDATE dispatcher.deliveries d
            SET state = 'cancelled', finished_at = now(), payload = NULL, due_at = NULL,
                announced = false
            FROM dispatcher.cancelled_runs c
            WHERE d.run_id = c.run_id AND d.state = 'scheduled'
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


async def unannounced(pool: asyncpg.Pool, before: datetime) -> list[Unannounced]:
    """Outcomes recorded before `before` whose event was never published (a crash between)."""
    rows = await pool.fetch(
        f"""SELECT {_REF_COLUMNS}, state, reason, provider_code, provider_message
            FROM dispatcher.deliveries
            WHERE NOT announced AND finished_at < $1 LIMIT 1000""",  # noqa: S608
        before,
    )
    return [
        Unannounced(Ref(**{c: r[c] for c in _REF_COLUMNS.split(", ")}), r["state"], _attempt(r))
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
