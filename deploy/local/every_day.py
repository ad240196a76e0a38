"""Let a tenant send every day, and wait until the dispatcher applies it.

The demo and the benchmark must work on a weekend too, when a tenant's default settings send no
email (the Campaigns seed's rule).
"""

import asyncio

import asyncpg
from aiokafka import AIOKafkaProducer

from shared import topics
from shared.events import WEEKDAYS, ConfigureTenant, TenantSettings


async def send_every_day(
    producer: AIOKafkaProducer, db: asyncpg.Connection, tenant: str, timeout: float = 60
) -> None:
    settings = TenantSettings(
        email_days=list(WEEKDAYS), sms_days=list(WEEKDAYS), sms_quiet_hours=None
    )
    command = ConfigureTenant(
        tenant_id=tenant,
        request_id=f"{tenant}-every-day",
        requested_by="operator",
        settings=settings,
    )
    await producer.send_and_wait(
        topics.REQUESTS.name, command.model_dump_json().encode(), key=tenant.encode()
    )
    async with asyncio.timeout(timeout):
        while True:
            applied = await db.fetchval(
                "SELECT settings FROM dispatcher.tenants WHERE tenant_id = $1", tenant
            )
            if applied is not None and TenantSettings.model_validate_json(applied) == settings:
                return
            await asyncio.sleep(0.2)
