from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TARGETING_", frozen=True, extra="ignore")

    # Contracts read and published per checkpoint while streaming a run.
    page_size: int = Field(default=1000, ge=1, le=50_000)
