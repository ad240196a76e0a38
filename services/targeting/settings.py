from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TARGETING_", frozen=True, extra="ignore")

    # Contracts read and published per checkpoint while streaming a run.
    page_size: int = Field(default=1000, ge=1, le=50_000)
    # Verifies unsubscribe links: the composer's COMPOSER_LINK_SECRET. While a secret is being
    # rotated, the previous one still verifies links already sent.
    link_secret: SecretStr = SecretStr("local-development-link-secret")
    link_previous_secret: SecretStr | None = None

    def link_secrets(self) -> list[bytes]:
        secrets = [self.link_secret, self.link_previous_secret]
        return [s.get_secret_value().encode() for s in secrets if s is not None]
