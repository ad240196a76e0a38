from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from shared.local_mode import (
    DEVELOPMENT_LINK_SECRET,
    DEVELOPMENT_RETURN_PATH_SECRET,
    link_secret_problem,
)
from shared.settings import Compression, ServiceSettings, local_database_url


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="COMPOSER_", frozen=True, extra="ignore")

    database_url: SecretStr = local_database_url("composer")

    # The master secret of every link in a message: each tenant's links are signed with a key
    # derived from it (shared/links.py); targeting verifies with the same secret. The default
    # only suits the local stack: production sets COMPOSER_LINK_SECRET.
    link_secret: SecretStr = SecretStr(DEVELOPMENT_LINK_SECRET)
    # Targeting's unsubscribe endpoint as recipients reach it (List-Unsubscribe, unsubscribe_url).
    unsubscribe_url: str = "http://127.0.0.1:9101/unsubscribe"
    # How long an unsubscribe link works, whatever the tenant's link_validity_days. CASL (the
    # tenants are Canadian) wants an unsubscribe mechanism to work for at least 60 days after the
    # message was sent (CAN-SPAM: 30); a longer life only lengthens the time a forwarded or
    # leaked message lets someone else opt its recipient out.
    unsubscribe_link_days: int = Field(default=60, ge=60, le=400)
    # The deployment's bounce domain, its MX the dispatcher's bounce receiver: each email's
    # envelope sender is then its own signed return path there (shared/return_path.py), so a
    # bounce names its message. None: the envelope sender is the sender's address.
    return_path_domain: str | None = Field(default=None, pattern=r"^[A-Za-z0-9.-]{1,190}$")
    # Signs the return paths; the dispatcher's DISPATCHER_RETURN_PATH_SECRET verifies them.
    return_path_secret: SecretStr = SecretStr(DEVELOPMENT_RETURN_PATH_SECRET)
    # DKIM private keys, one file per tenant and selector: <dir>/<tenant>/<selector>.pem.
    dkim_keys_dir: Path | None = None
    # broadcast.messages: zstd makes a ~4.7 KB rendered message ~190 bytes, and halves the
    # broker's and the dispatcher's CPU per message (bench/README.md, "Kafka path").
    kafka_compression: Compression = "zstd"

    def development_secrets(self) -> list[str]:
        problems = [link_secret_problem(self.variable("link_secret"), self.link_secret)]
        if self.return_path_domain is not None:  # the secret signs nothing without a domain
            problems.append(
                link_secret_problem(self.variable("return_path_secret"), self.return_path_secret)
            )
        return [*super().development_secrets(), *(p for p in problems if p)]
