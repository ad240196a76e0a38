from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TRACKER_", frozen=True, extra="ignore")

    # At most one progress event per run in this interval, however fast deliveries come.
    progress_interval_seconds: float = Field(default=1.0, gt=0)
    # How often the running-broadcasts and consumer-lag gauges are refreshed.
    gauges_interval_seconds: float = Field(default=15.0, gt=0)
