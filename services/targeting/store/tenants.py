"""Each tenant's settings (`targeting.tenants`)."""

import asyncpg

from shared.db import Connection
from shared.events import TenantSettings


async def configure_tenant(
    pool: asyncpg.Pool, tenant_id: str, settings: TenantSettings, request_id: str
) -> None:
    await pool.execute(
        """INSERT INTO targeting.tenants (tenant_id, settings, request_id) VALUES ($1, $2, $3)
           ON CONFLICT (tenant_id) DO UPDATE SET settings = excluded.settings,
               request_id = excluded.request_id, configured_at = now()""",
        tenant_id,
        settings.model_dump(mode="json"),
        request_id,
    )


async def tenant_settings(connection: Connection, tenant_id: str) -> TenantSettings:
    """The tenant's settings; the defaults for a tenant that never configured any."""
    settings = await connection.fetchval(
        "SELECT settings FROM targeting.tenants WHERE tenant_id = $1", tenant_id
    )
    return TenantSettings.model_validate(settings or {})
