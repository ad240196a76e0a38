import socket
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from shared import return_path
from shared.local_mode import (
    DEVELOPMENT_RETURN_PATH_SECRET,
    DEVELOPMENT_SMS_GATEWAY_TOKEN,
    gateway_token_problem,
    link_secret_problem,
)
from shared.settings import ServiceSettings, local_database_url

# Who carries SMS (providers.py): our HTTP gateway's JSON shape, or Twilio's Messages API.
SmsProviderName = Literal["http", "twilio"]


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DISPATCHER_", frozen=True, extra="ignore")

    database_url: SecretStr = local_database_url("dispatcher")

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

    sms_provider: SmsProviderName = "http"
    sms_gateway_url: str = "http://127.0.0.1:10080/v1/messages"
    sms_gateway_token: SecretStr = SecretStr(DEVELOPMENT_SMS_GATEWAY_TOKEN)
    sms_sender: str = "+15550000000"
    sms_timeout_seconds: float = Field(default=10.0, gt=0)
    sms_per_second: float | None = Field(default=None, gt=0)
    # Used when sms_provider is "twilio"; the sender is sms_sender.
    twilio_base_url: str = "https://api.twilio.com"
    twilio_account_sid: str = ""
    twilio_auth_token: SecretStr = SecretStr("")
    # This dispatcher's URL as Twilio calls it (behind any proxy), e.g. https://hooks.example.org:
    # Twilio signs its webhooks over the full URL. Unset: /webhooks/twilio/* answer 404.
    public_url: str = ""

    # Provider webhooks (webhooks/): the largest body a route reads (SNS carries up to 256 KB,
    # JSON-escaped in its envelope).
    webhook_max_bytes: int = Field(default=1_048_576, ge=1024)
    # The SNS topics whose SES notifications are taken, as a JSON list; none: /webhooks/ses
    # answers 404.
    ses_topic_arns: tuple[str, ...] = ()
    # How far an SNS message's Timestamp may be from now (a captured notification replayed later
    # is refused). SNS signs a message once and retries it as signed, for at most 3600 s whatever
    # the subscription's delivery policy (its default: 3 retries 20 s apart): a shorter window
    # would refuse SNS's own late retries.
    ses_max_age_seconds: float = Field(default=3600.0, gt=0)
    # Mailgun's webhook signing key; unset: /webhooks/mailgun answers 404.
    mailgun_signing_key: SecretStr | None = None
    # How far a Mailgun signature's timestamp may be from now (replays are refused within it).
    mailgun_max_age_seconds: float = Field(default=300.0, gt=0)

    # The bounce receiver (bounce_receiver.py), the MX of the bounce domain: SMTP on this port
    # (None: off) for the return paths the composer signs (COMPOSER_RETURN_PATH_DOMAIN).
    bounce_smtp_port: int | None = Field(default=None, ge=1, le=65535)
    bounce_smtp_host: str = "127.0.0.1"
    return_path_domain: str | None = Field(default=None, pattern=r"^[A-Za-z0-9.-]{1,190}$")
    # The composer's COMPOSER_RETURN_PATH_SECRET; while it is being rotated, the previous one
    # still verifies the return paths of messages already sent.
    return_path_secret: SecretStr = SecretStr(DEVELOPMENT_RETURN_PATH_SECRET)
    return_path_previous_secret: SecretStr | None = None

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

    # Messages claimed and handed over together (a wave), per SMTP connection: a wave keeps
    # every connection busy, yet stays small, as its claims are what a crash leaves unknown.
    wave_size_per_connection: int = Field(default=2, ge=1)
    # Waves handed over at once. With the wave size, this bounds the claims a SIGKILL leaves
    # unknown (docs/ARCHITECTURE.md: at most two waves of 2 x smtp_connections).
    waves_in_flight: int = Field(default=2, ge=1)
    # The longest a batch waits for rate-limit tokens before parking the rest in the ledger: a
    # handler must not sleep for long (past max_poll_interval_ms the group rebalances) and a
    # cancel must take effect within seconds.
    pacing_budget_seconds: float = Field(default=2.0, gt=0)
    # An outcome recorded but unannounced for this long was left by a dispatcher that died in
    # between (or is still publishing it, when younger): the sweeper announces it.
    repair_after_seconds: float = Field(default=30.0, gt=0)
    # The longest one try at storing an outcome, a wait or a given-back claim may take before
    # it is abandoned and tried again: after a database restart a connection of the pool can
    # stay stuck without an error, and the wave (with its claims) would wait behind it forever.
    store_attempt_seconds: float = Field(default=30.0, gt=0)
    # A waiting message rendered longer ago than this is rendered again, with its contract's
    # current values, before it is sent (a send window, a pause, a late retry); a few minutes,
    # so that pacing and quick retries do not pay for a round trip through targeting.
    refresh_after_seconds: float = Field(default=300.0, gt=0)
    # A refresh unanswered this long is asked for again (lost in a crash).
    refresh_ask_again_seconds: float = Field(default=30.0, gt=0)
    # A refresh unanswered this long fails the message (render_failed) rather than sending it
    # with old values or holding it forever.
    refresh_give_up_seconds: float = Field(default=3600.0, gt=0)

    def return_path_keys(self) -> list[bytes]:
        """The keys a return path may be signed with: the current secret's, then the previous."""
        secrets = [self.return_path_secret, self.return_path_previous_secret]
        return [return_path.key(s.get_secret_value().encode()) for s in secrets if s is not None]

    def development_secrets(self) -> list[str]:
        # Twilio's credentials have no default (checked below); the HTTP gateway's token has.
        problems = [
            gateway_token_problem(self.variable("sms_gateway_token"), self.sms_gateway_token)
            if self.sms_provider == "http"
            else None
        ]
        if self.bounce_smtp_port is not None:  # the secrets verify nothing without a receiver
            problems += [
                link_secret_problem(self.variable(name), secret)
                for name, secret in (
                    ("return_path_secret", self.return_path_secret),
                    ("return_path_previous_secret", self.return_path_previous_secret),
                )
            ]
        return [*super().development_secrets(), *(p for p in problems if p)]

    @model_validator(mode="after")
    def _bounce_receiver_needs_a_domain(self) -> Self:
        if self.bounce_smtp_port is not None and self.return_path_domain is None:
            raise ValueError("bounce_smtp_port needs return_path_domain, the bounce domain")
        return self

    @model_validator(mode="after")
    def _twilio_needs_credentials(self) -> Self:
        if self.sms_provider == "twilio" and not (
            self.twilio_account_sid and self.twilio_auth_token.get_secret_value()
        ):
            raise ValueError("sms_provider twilio needs twilio_account_sid and twilio_auth_token")
        return self
