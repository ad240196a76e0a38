"""Tenants' settings as the dispatcher applies them: send windows and rates."""

import time
from collections.abc import Sequence

import asyncpg

from shared.events import TenantSettings, TenantSettingsChanged

from . import ratelimit

DEFAULT = TenantSettings()
# How long an instance may apply a tenant's previous settings after a change.
TTL_SECONDS = 2.0


async def save(pool: asyncpg.Pool, changes: Sequence[TenantSettingsChanged]) -> None:
    """Keep each tenant's latest settings, and its rates in the shared buckets."""
    latest = {c.tenant_id: c.settings for c in changes}
    await pool.executemany(
        """INSERT INTO dispatcher.tenants (tenant_id, settings) VALUES ($1, $2)
           ON CONFLICT (tenant_id) DO UPDATE
           SET settings = excluded.settings, updated_at = now()""",
        [(t, s.model_dump(mode="json")) for t, s in latest.items()],
    )
    await ratelimit.set_limits(
        pool,
        [
            limit
            for tenant, s in latest.items()
            for limit in (
                (ratelimit.tenant_key(tenant, "email"), s.email_per_second),
                (ratelimit.tenant_key(tenant, "sms"), s.sms_per_second),
            )
        ],
    )


class Directory:
    """Settings by tenant, read from the table and kept `ttl` seconds: a change made by any
    instance's consumer applies everywhere within that time, without a restart."""

    def __init__(self, pool: asyncpg.Pool, ttl: float = TTL_SECONDS) -> None:
        self._pool = pool
        self._ttl = ttl
        self._cache: dict[str, tuple[float, TenantSettings]] = {}

    async def get(self, tenant_ids: set[str]) -> dict[str, TenantSettings]:
        now = time.monotonic()
        stale = {t for t in tenant_ids if now - self._cache.get(t, (-1e9, DEFAULT))[0] > self._ttl}
        if stale:
            rows = await self._pool.fetch(
                "SELECT tenant_id, settings FROM dispatcher.tenants WHERE tenant_id = ANY($1)",
                list(stale),
            )
            found = {r["tenant_id"]: TenantSettings.model_validate(r["settings"]) for r in rows}
            for tenant in stale:
                self._cache[tenant] = (now, found.get(tenant, DEFAULT))
        return {t: self._cache[t][1] for t in tenant_ids}
