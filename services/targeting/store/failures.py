"""Failed messages of the runs (`targeting.failures`): whom a resend to the failures goes to."""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from shared.db import Connection
from shared.events import DeliveryFailed


async def record_failures(pool: asyncpg.Pool, failures: Sequence[DeliveryFailed]) -> None:
    """Keep who failed in targeting's own runs (previews and follow-ups are not runs here)."""
    if not failures:
        return
    await pool.execute(
        """INSERT INTO targeting.failures (run_id, contract_id, channel, address, reason)
           SELECT t.* FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[])
                AS t(run_id, contract_id, channel, address, reason)
           WHERE EXISTS (SELECT 1 FROM targeting.runs r WHERE r.run_id = t.run_id)
           ON CONFLICT DO NOTHING""",
        [f.run_id for f in failures],
        [f.contract_id for f in failures],
        [f.channel for f in failures],
        [f.address for f in failures],
        [f.reason for f in failures],
    )


# A message of a run: (run_id, contract_id, channel, address).
MessageKey = tuple[UUID, str, str, str]


async def close_failures(pool: asyncpg.Pool, closed: Iterable[MessageKey]) -> None:
    """Leave these messages out of a later resend to their run's failures: their action was
    resolved, or their unknown outcome turned out delivered. A close may arrive before the
    failure itself (another topic): it is recorded then, already closed."""
    keys = list(set(closed))
    if not keys:
        return
    await pool.execute(
        """INSERT INTO targeting.failures (run_id, contract_id, channel, address, closed)
           SELECT t.*, true FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[])
                AS t(run_id, contract_id, channel, address)
           WHERE EXISTS (SELECT 1 FROM targeting.runs r WHERE r.run_id = t.run_id)
           ON CONFLICT (run_id, contract_id, channel, address) DO UPDATE SET closed = true""",
        *(list(column) for column in zip(*keys, strict=True)),
    )


# The failures a resend to them sends again; $2: unknown outcomes included.
_RESENDABLE = "NOT closed AND ($2::boolean OR reason IS DISTINCT FROM 'unknown_outcome')"


async def failed_recipients(
    connection: Connection, run_id: UUID, include_unknown: bool
) -> set[tuple[str, str, str]]:
    """(contract_id, channel, address) of every message of the run a resend to its failures
    sends again."""
    rows = await connection.fetch(
        f"""SELECT contract_id, channel, address FROM targeting.failures
            WHERE run_id = $1 AND {_RESENDABLE}""",  # noqa: S608 -- a constant
        run_id,
        include_unknown,
    )
    return {(r["contract_id"], r["channel"], r["address"]) for r in rows}


async def contracts_without_contact(
    connection: Connection, run_id: UUID, include_unknown: bool
) -> set[str]:
    """Contracts of the run's resendable failures that had no usable address (`no_contact`:
    none when targeted, or the one they had was gone by the time their message was due); a
    resend sends to whatever addresses they have now."""
    rows = await connection.fetch(
        f"""SELECT DISTINCT contract_id FROM targeting.failures
            WHERE run_id = $1 AND {_RESENDABLE} AND reason = 'no_contact'""",  # noqa: S608
        run_id,
        include_unknown,
    )
    return {r["contract_id"] for r in rows}


@dataclass(frozen=True)
class Failures:
    """A run's failures: `recorded` here so far, of them `resendable`."""

    recorded: int
    resendable: int


async def failures_of(connection: Connection, run_id: UUID, include_unknown: bool) -> Failures:
    row = await connection.fetchrow(
        f"""SELECT count(*) AS recorded, count(*) FILTER (WHERE {_RESENDABLE}) AS resendable
            FROM targeting.failures WHERE run_id = $1""",  # noqa: S608 -- a constant
        run_id,
        include_unknown,
    )
    assert row is not None, "an aggregate has a row"
    return Failures(row["recorded"], row["resendable"])
