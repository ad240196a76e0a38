"""Rate limits shared by every dispatcher instance: token buckets in PostgreSQL.

A limit is the tenant's (or the relay's), not the process's: each reservation updates the
bucket's row, so two dispatchers draw from the same tokens. A bucket holds at most one second
of tokens (the burst); a reservation larger than what is left goes into debt, and the debt
divided by the rate is how long the reserving dispatcher waits before sending.
"""

import time
from collections.abc import Iterable

import asyncpg


def tenant_key(tenant_id: str, channel: str) -> str:
    return f"tenant:{tenant_id}:{channel}"


def relay_key(channel: str) -> str:
    return f"relay:{channel}"


def buckets(tenant_id: str, channel: str) -> tuple[str, str]:
    """Every bucket a message draws from: its tenant's for its channel, and the relay's."""
    return tenant_key(tenant_id, channel), relay_key(channel)


class ActiveKeys:
    """The keys that have a limit or a pause, re-read every `ttl` seconds: the others cost
    no query at all, which is most of the traffic."""

    def __init__(self, pool: asyncpg.Pool, ttl: float = 1.0) -> None:
        self._pool = pool
        self._ttl = ttl
        self._keys: frozenset[str] = frozenset()
        self._read_at = -1e9

    async def among(self, keys: Iterable[str]) -> frozenset[str]:
        if time.monotonic() - self._read_at > self._ttl:
            rows = await self._pool.fetch(
                "SELECT key FROM dispatcher.rate_limits "
                "WHERE per_second IS NOT NULL OR paused_until > clock_timestamp()"
            )
            self._keys = frozenset(r["key"] for r in rows)
            self._read_at = time.monotonic()
        return self._keys.intersection(keys)

    def forget(self) -> None:
        """Read again on the next use: a pause was just set here."""
        self._read_at = -1e9


async def reserve(pool: asyncpg.Pool, counts: dict[str, int]) -> float:
    """Take `counts[key]` tokens from each bucket; the seconds to wait before using them.

    Keys without a row or a limit cost nothing; a paused bucket adds its pause. One statement
    per key, in key order, so two dispatchers never lock the same rows in opposite orders."""
    wait = 0.0
    if not counts:
        return wait
    async with pool.acquire() as connection:
        for key in sorted(counts):
            # A clock stepped back (NTP, a restored host) refills nothing rather than draining
            # the bucket for as long as the step.
            row = await connection.fetchrow(
                """UPDATE dispatcher.rate_limits SET
                       tokens = CASE WHEN per_second IS NULL THEN 0 ELSE
                           least(per_second, tokens + per_second * greatest(0, extract(
                               epoch FROM clock_timestamp() - updated_at))) - $2 END,
                       updated_at = clock_timestamp()
                   WHERE key = $1
                   RETURNING per_second, tokens,
                             extract(epoch FROM paused_until - clock_timestamp()) AS paused""",
                key,
                counts[key],
            )
            if row is None:
                continue
            if row["per_second"] is not None and row["tokens"] < 0:
                wait = max(wait, -row["tokens"] / row["per_second"])
            if row["paused"] is not None and row["paused"] > 0:
                wait = max(wait, float(row["paused"]))
    return wait


async def refund(pool: asyncpg.Pool, counts: dict[str, int]) -> None:
    """Give back tokens reserved for messages that will not be sent now."""
    if not counts:
        return
    await pool.executemany(
        "UPDATE dispatcher.rate_limits SET tokens = tokens + $2 "
        "WHERE key = $1 AND per_second IS NOT NULL",
        sorted(counts.items()),
    )


async def pause(pool: asyncpg.Pool, key: str, seconds: float) -> None:
    """The provider asked us to slow down: nobody sends through `key` for `seconds`."""
    await pool.execute(
        """INSERT INTO dispatcher.rate_limits AS r (key, paused_until)
           VALUES ($1, clock_timestamp() + make_interval(secs => $2))
           ON CONFLICT (key) DO UPDATE
           SET paused_until = greatest(r.paused_until, excluded.paused_until)""",
        key,
        seconds,
    )


async def set_limits(pool: asyncpg.Pool, limits: Iterable[tuple[str, float | None]]) -> None:
    """Set the rate of each key (None: no limit); applies to the next reservation."""
    await pool.executemany(
        """INSERT INTO dispatcher.rate_limits AS r (key, per_second, tokens)
           VALUES ($1, $2::double precision, coalesce($2::double precision, 0))
           ON CONFLICT (key) DO UPDATE SET per_second = excluded.per_second""",
        list(limits),
    )
