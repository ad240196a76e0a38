from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from shared.local_mode import DEVELOPMENT_LINK_SECRET, link_secret_problem
from shared.settings import Compression, ServiceSettings, local_database_url


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TARGETING_", frozen=True, extra="ignore")

    database_url: SecretStr = local_database_url("targeting")

    # broadcast.recipients: ~0.9 KB records, alike; zstd costs the producer nothing measurable
    # and saves the broker and the composer CPU per recipient (bench/README.md, "Kafka path").
    kafka_compression: Compression = "zstd"
    # Contracts read and published per checkpoint while streaming a run.
    page_size: int = Field(default=1000, ge=1, le=50_000)
    # Contracts read per query while estimating: large pages, since nothing is published.
    estimate_page_size: int = Field(default=5000, ge=1, le=50_000)
    # A run whose streaming failed starts again from its checkpoint after this pause.
    stream_retry_seconds: float = Field(default=2.0, gt=0)
    # A run another instance was streaming when it died is taken over within this many
    # seconds (its lock went with its connection; the checkpoint says where to go on).
    orphan_runs_seconds: float = Field(default=10.0, gt=0)
    # How often due schedules are started and lost opt-out announcements published again.
    scheduler_tick_seconds: float = Field(default=1.0, gt=0)
    # Due schedules started per tick, the earliest first; the rest wait for the next tick.
    schedules_per_tick: int = Field(default=100, ge=1)
    # An opt-out younger than this may be being announced by the click that recorded it:
    # leaving it alone saves a copy.
    late_opt_out_seconds: float = Field(default=5.0, ge=0)
    # Lost opt-out announcements published again per tick, the oldest first.
    late_opt_outs_per_tick: int = Field(default=1000, ge=1)
    # Soft bounces in a row that suppress an address (suppression.streak says what "in a row"
    # is: the soft-bounced messages sent after the newest one delivered without bouncing).
    soft_bounces_to_suppress: int = Field(default=3, ge=1)
    # Verifies unsubscribe links: the composer's COMPOSER_LINK_SECRET, the master secret each
    # tenant's key is derived from. While a secret is being rotated, the previous one still
    # verifies links already sent.
    link_secret: SecretStr = SecretStr(DEVELOPMENT_LINK_SECRET)
    link_previous_secret: SecretStr | None = None
    # Also accept links signed with a master secret itself, as the composer did before per-tenant
    # keys: only while upgrading a deployment whose sent messages carry such links, until they
    # expire (at most 400 days after the upgrade). Off: they are refused as bad signatures.
    link_accept_unscoped: bool = False

    def link_secrets(self) -> list[bytes]:
        secrets = [self.link_secret, self.link_previous_secret]
        return [s.get_secret_value().encode() for s in secrets if s is not None]

    def development_secrets(self) -> list[str]:
        problems = (
            link_secret_problem(self.variable(name), secret)
            for name, secret in (
                ("link_secret", self.link_secret),
                ("link_previous_secret", self.link_previous_secret),
            )
        )
        return [*super().development_secrets(), *(p for p in problems if p)]
