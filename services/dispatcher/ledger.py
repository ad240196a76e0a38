"""The delivery ledger: every query of the dispatcher."""

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from shared.events import MessageRendered

from .policy import Attempt


@dataclass(frozen=True)
class Claims:
    """`claimed`: ours to send now. `finished`: sent before, with the outcome then recorded."""

    claimed: set[UUID]
    finished: dict[UUID, Attempt]


async def claim(pool: asyncpg.Pool, messages: Sequence[MessageRendered]) -> Claims:
    ids = [m.recipient_id for m in messages]
    async with pool.acquire() as connection, connection.transaction():
        claimed = {
            r["recipient_id"]
            for r in await connection.fetch(
                """INSERT INTO dispatcher.deliveries
                       (recipient_id, run_id, tenant_id, channel, state)
                   SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[],
                                        array_fill('claimed'::text, ARRAY[cardinality($1)]))
                   ON CONFLICT (recipient_id) DO NOTHING
                   RETURNING recipient_id""",
                ids,
                [m.run_id for m in messages],
                [m.tenant_id for m in messages],
                [m.channel for m in messages],
            )
        }
        earlier = await connection.fetch(
            """SELECT recipient_id, state, reason, provider_code, provider_message
               FROM dispatcher.deliveries
               WHERE recipient_id = ANY($1::uuid[]) AND state <> 'claimed'""",
            [i for i in ids if i not in claimed],
        )
    finished = {
        r["recipient_id"]: Attempt(
            "accepted" if r["state"] == "delivered" else "permanent",
            r["provider_code"],
            r["provider_message"] or "",
            r["reason"],
        )
        for r in earlier
    }
    return Claims(claimed, finished)


async def record(pool: asyncpg.Pool, outcomes: dict[UUID, Attempt]) -> None:
    if not outcomes:
        return
    ids = list(outcomes)
    attempts = [outcomes[i] for i in ids]
    await pool.execute(
        """UPDATE dispatcher.deliveries d
           SET state = t.state, reason = t.reason, provider_code = t.code,
               provider_message = t.detail, finished_at = now()
           FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::text[])
                AS t(recipient_id, state, reason, code, detail)
           WHERE d.recipient_id = t.recipient_id""",
        ids,
        ["delivered" if a.verdict == "accepted" else "failed" for a in attempts],
        [a.reason for a in attempts],
        [a.code for a in attempts],
        [a.detail[:1000] for a in attempts],
    )
