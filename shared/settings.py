"""Settings common to every service, read from the environment with the service's prefix.

A service declares `class Settings(ServiceSettings)` with `env_prefix="TARGETING_"` (etc.), so
`TARGETING_DATABASE_URL` configures targeting alone. Defaults point at the local stack started
by `make`; production sets every secret through the environment. Those defaults are development
secrets: outside local mode (`BROADCAST_LOCAL_MODE=1`) a service refuses to start with them
(`refuse_development_secrets`, called by every service's factory through `shared.service`).
"""

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, SecretStr
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared import partitions, requesters
from shared.kafka_security import KafkaClientSettings
from shared.local_mode import LOCAL_MODE_VARIABLE, DevelopmentSecrets, database_url_problem
from shared.partitions import TopicPartitions
from shared.requesters import Requesters
from shared.topics import Topic

# lz4, zstd and snappy need `cramjam` (aiokafka's extra, a dependency of the project).
Compression = Literal["gzip", "snappy", "lz4", "zstd"] | None


def _request_clients(value: object) -> Requesters:
    if isinstance(value, Requesters):
        return value
    if value is None or isinstance(value, str):
        return requesters.parse(value)
    raise ValueError("expected the JSON text of a client -> tenants mapping")


def _topic_partitions(value: object) -> TopicPartitions:
    if isinstance(value, TopicPartitions):
        return value
    if value is None or isinstance(value, str):
        return partitions.parse(value)
    raise ValueError("expected the JSON text of a topic -> partitions mapping")


def local_database_url(role: str) -> SecretStr:
    """The local stack's database as `role`: each service connects as the role named after it,
    which owns its schema alone (deploy/postgres/roles.py)."""
    return SecretStr(f"postgresql://{role}:broadcast@127.0.0.1:15432/broadcast")


class ServiceSettings(KafkaClientSettings, BaseSettings):
    # No populate_by_name: the fields read from one unprefixed variable (BROADCAST_LOCAL_MODE,
    # BROADCAST_REQUEST_CLIENTS) must not also be set by a prefixed one (COMPOSER_LOCAL_MODE).
    # Code passes them by that name too.
    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    # One variable for every service, unprefixed: a local stack is local as a whole.
    local_mode: bool = Field(default=False, validation_alias=LOCAL_MODE_VARIABLE)
    kafka_bootstrap_servers: str = "127.0.0.1:19092"
    # How it authenticates to Kafka: KafkaClientSettings (<PREFIX>KAFKA_SECURITY_PROTOCOL, ...).
    # Each service's settings default to its own role instead.
    database_url: SecretStr = local_database_url("broadcast")
    database_pool_size: int = Field(default=5, ge=1)
    # A batch is what one handler call processes and commits at once.
    batch_size: int = Field(default=500, ge=1)
    # /ready fails when a consumer group has records waiting and has committed nothing on that
    # partition for this long: a consumer stuck on a record looks alive and does nothing.
    stalled_after_seconds: float = Field(default=120.0, gt=0)
    # Compression of every record this service produces. None suits small events (a 0.5 KB
    # delivery event costs the broker more compressed); the composer and targeting, whose
    # records are large and alike, set zstd (bench/README.md, "Kafka path").
    kafka_compression: Compression = None
    # Which client may speak for which tenant (shared/requesters.py). One variable for every
    # service, without the service's prefix: targeting and the tracker must read the same one.
    request_clients: Annotated[Requesters, NoDecode, BeforeValidator(_request_clients)] = Field(
        default_factory=Requesters, validation_alias=requesters.VARIABLE
    )
    # The partition count of each topic this service may create (shared/partitions.py): one
    # variable, unprefixed, as every creator of the topics must read the same one.
    topic_partitions: Annotated[TopicPartitions, NoDecode, BeforeValidator(_topic_partitions)] = (
        Field(default_factory=TopicPartitions, validation_alias=partitions.VARIABLE)
    )

    def topics(self) -> tuple[Topic, ...]:
        """Every topic of the system and of the request clients, as configured here."""
        return self.topic_partitions.every_topic(self.request_clients)

    def variable(self, field: str) -> str:
        """The environment variable that sets `field` for this service."""
        return f"{self.model_config.get('env_prefix', '')}{field}".upper()

    def development_secrets(self) -> list[str]:
        """Why each secret set here suits only a local stack, naming its variable; a service
        with more secrets adds its own."""
        problems = [
            database_url_problem(self.variable("database_url"), self.database_url),
            self.plaintext_kafka_problem(),
        ]
        return [p for p in problems if p]

    def refuse_development_secrets(self) -> None:
        """Raises DevelopmentSecrets, naming every variable at fault, unless in local mode."""
        if self.local_mode:
            return
        if problems := self.development_secrets():
            raise DevelopmentSecrets(problems)
