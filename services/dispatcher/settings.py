import socket

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DISPATCHER_", frozen=True, extra="ignore")

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 10025
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_implicit_tls: bool = False
    smtp_starttls: bool = False
    # Persistent connections per relay: SMTP is one command at a time per connection, so
    # throughput comes from connections in parallel.
    smtp_connections: int = Field(default=8, ge=1, le=200)
    smtp_timeout_seconds: float = Field(default=30.0, gt=0)
    # Messages per second through the relay, across all dispatchers; None: no limit.
    smtp_per_second: float | None = Field(default=None, gt=0)

    sms_gateway_url: str = "http://127.0.0.1:10080/v1/messages"
    sms_gateway_token: SecretStr = SecretStr("local-dev-token")
    sms_sender: str = "+15550000000"
    sms_timeout_seconds: float = Field(default=10.0, gt=0)
    sms_per_second: float | None = Field(default=None, gt=0)

    # Waits after the 1st, 2nd, ... temporary failure; after the last, the message fails.
    retry_delays_seconds: tuple[float, ...] = (30.0, 300.0, 1800.0)
    # How long a relay is left alone after it asked us to slow down without saying how long.
    throttle_backoff_seconds: float = Field(default=30.0, gt=0)
    # This dispatcher in the ledger, kept across restarts (a StatefulSet's pod name, a
    # container's hostname): a restarted instance settles the claims its crash left at once.
    # Two live dispatchers must not share one.
    instance_id: str = Field(default_factory=socket.gethostname, min_length=1)
    heartbeat_seconds: float = Field(default=2.0, gt=0)
    # The claims of an instance silent this long are settled as unknown by the others. Several
    # heartbeats, so that a pause of the process or the network is not taken for a death.
    takeover_seconds: float = Field(default=15.0, gt=0)
    sweep_interval_seconds: float = Field(default=1.0, gt=0)
    # Waiting messages taken per sweep.
    sweep_batch: int = Field(default=200, ge=1)
