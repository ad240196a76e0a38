from pathlib import Path
from typing import Literal

from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="COMPOSER_", frozen=True, extra="ignore")

    # Signs every link in a message; targeting verifies with the same secret. The default only
    # suits the local stack: production sets COMPOSER_LINK_SECRET.
    link_secret: SecretStr = SecretStr("local-development-link-secret")
    # Targeting's unsubscribe endpoint as recipients reach it (List-Unsubscribe, unsubscribe_url).
    unsubscribe_url: str = "http://127.0.0.1:9101/unsubscribe"
    # DKIM private keys, one file per tenant and selector: <dir>/<tenant>/<selector>.pem.
    dkim_keys_dir: Path | None = None
    # broadcast.messages: zstd makes a ~4.7 KB rendered message ~180 bytes on the wire and in the
    # log, for less producer CPU than lz4 at aiokafka's level (bench/README.md, "Kafka path").
    kafka_compression: Literal["gzip", "snappy", "lz4", "zstd"] | None = "zstd"
