"""Let a tenant send every day, and wait until the dispatcher applies it.

The demo and the benchmark must work on a weekend too, when a tenant's default settings send no
email (the Campaigns seed's rule).
"""

from shared.client import watch
from shared.client.commands import Commands
from shared.events import WEEKDAYS, ConfigureTenant, TenantSettings


async def send_every_day(
    commands: Commands, db: watch.Database, tenant: str, timeout: float = 60
) -> None:
    settings = TenantSettings(
        email_days=list(WEEKDAYS), sms_days=list(WEEKDAYS), sms_quiet_hours=None
    )
    await commands.send(
        ConfigureTenant(
            tenant_id=tenant,
            request_id=f"{tenant}-every-day",
            requested_by="operator",
            settings=settings,
        )
    )
    await watch.until_settings(
        db, tenant, lambda applied: TenantSettings.model_validate(applied) == settings, timeout
    )
