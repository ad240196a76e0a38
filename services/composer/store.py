"""Every query of the composer."""

from collections.abc import Iterable, Sequence
from uuid import UUID

import asyncpg

from shared.events import RunStarted


async def save_runs(pool: asyncpg.Pool, runs: Sequence[RunStarted]) -> None:
    if not runs:
        return
    await pool.executemany(
        "INSERT INTO composer.runs (run_id, tenant_id, definition) VALUES ($1, $2, $3) "
        "ON CONFLICT (run_id) DO NOTHING",
        [(r.run_id, r.tenant_id, r.model_dump(mode="json")) for r in runs],
    )


async def load_runs(pool: asyncpg.Pool, run_ids: Iterable[UUID]) -> list[RunStarted]:
    rows = await pool.fetch(
        "SELECT definition FROM composer.runs WHERE run_id = ANY($1::uuid[])", list(run_ids)
    )
    return [RunStarted.model_validate(r["definition"]) for r in rows]
