from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings, local_database_url


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TRACKER_", frozen=True, extra="ignore")

    database_url: SecretStr = local_database_url("tracker")

    # At most one progress event per run in this interval, however fast deliveries come; the
    # progress tick runs at this interval too, so a change held back is announced within it.
    progress_interval_seconds: float = Field(default=1.0, gt=0)
    # A running broadcast's contracts reached and not reached are counted again for its
    # progress events at most this often, and less often on a run whose count takes long
    # (progress.Recounts); the message counters are exact in every event.
    contract_count_seconds: float = Field(default=5.0, gt=0)
    # How often the running-broadcasts and consumer-lag gauges are refreshed.
    gauges_interval_seconds: float = Field(default=15.0, gt=0)
    # How often auto-pauses recorded and not published are looked for (the outbox's repair).
    pause_repair_interval_seconds: float = Field(default=1.0, gt=0)
    # An auto-pause younger than this may be being published by the handler that asked for it:
    # the repair leaves it alone, which saves a copy.
    pause_late_seconds: float = Field(default=5.0, ge=0)
    # Late auto-pauses republished per repair pass: a full page is followed by another at once.
    pause_repair_page: int = Field(default=1000, ge=1)
    # A contract's history answers with its newest messages up to this many: an answer must fit
    # in one Kafka record.
    history_limit: int = Field(default=1000, ge=1)
    # The per-tenant bounce and complaint rates (the worst tenant's, as gauges) count the
    # broadcast runs started in this window, for tenants with at least this many messages
    # accepted by the providers: a tenant's first ten messages make no rate.
    report_rates_window_hours: int = Field(default=24, ge=1)
    report_rates_minimum: int = Field(default=500, ge=1)
    # The hard-bounce rate above which the alert TenantHardBounceRateHigh fires (published as
    # a gauge, which the rule compares with). Mailbox providers start filtering around 2 %.
    hard_bounce_alert_rate: float = Field(default=0.02, gt=0, le=1)
