"""tenant.settings: what a tenant configures once (links, DKIM, send days and quiet hours,
rates, grace, auto-pause, completion notices), with the defaults every tenant starts from."""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shared.events.base import Address, HttpUrl, Language, OneLine, Record, TimeZone, UserId

LinkKind = Literal[
    "statement",
    "payment",
    "visits_log",
    "contract_pdf",
    "statement_pdf",
    "survey",
    "email_confirmation",
    "service_opt_out",
    "service_opt_in",
]


class DkimSelector(BaseModel):
    """Where the public key is published. The private key is a secret of the composer's
    environment (`<keys dir>/<tenant>/<selector>.pem`), never a field of an event."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # A host name: letters, digits and hyphens in dot-separated labels.
    domain: Annotated[
        str,
        StringConstraints(
            min_length=3,
            max_length=253,
            pattern=r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$",
        ),
    ]
    selector: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,62}$")]


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ClockTime = Annotated[str, StringConstraints(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]


WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _week() -> list[Weekday]:
    return list(WEEKDAYS)


def _working_week() -> list[Weekday]:
    return list(WEEKDAYS[:5])


class QuietHours(BaseModel):
    """No message from `start` to `end`, local time; `end` before `start` spans midnight."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: ClockTime
    end: ClockTime


class AutoPause(BaseModel):
    """Pause a running broadcast when more than `failure_ratio` of its messages failed (or
    had to wait for a retry) over the last `window_seconds`, once at least `min_messages`
    were tried in that window: a relay down or bad credentials must not burn the audience."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    failure_ratio: float = Field(default=0.5, gt=0, le=1)
    window_seconds: int = Field(default=60, ge=5, le=3600)
    min_messages: int = Field(default=50, ge=1, le=100_000)


class NoticeUser(BaseModel):
    """Where one person of the tenant gets the completion notices, and in which language."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    email: Address
    language: Language = "fr"


class CompletionNotices(BaseModel):
    """Completion notices also sent by email, from `sender`, to the `users` (by the user id
    commands carry in `requested_by`) a completed run concerns: its broadcast's creator and
    whoever started it. A user not listed gets the `broadcast.completed` event only."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sender: Address
    sender_name: Annotated[str, StringConstraints(max_length=200), OneLine] = ""
    users: dict[UserId, NoticeUser] = Field(default_factory=dict, max_length=1000)


class TenantSettings(BaseModel):
    """What a tenant configures once and every run of its broadcasts uses.

    `links` are the base URLs of the tenant's pages; each link in a message carries a signed,
    expiring token naming the contract, so nobody can forge another customer's link.
    Send windows and rates apply when a message is handed over, so a change applies to
    broadcasts already running, within seconds.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    time_zone: TimeZone = "America/Toronto"
    links: dict[LinkKind, HttpUrl] = Field(default_factory=dict)
    link_validity_days: int = Field(default=60, ge=1, le=400)
    sms_max_segments: int = Field(default=3, ge=1, le=10)
    dkim: DkimSelector | None = None
    # The Campaigns seed: no email on Saturday and Sunday.
    email_days: list[Weekday] = Field(default_factory=_working_week, min_length=1)
    sms_days: list[Weekday] = Field(default_factory=_week, min_length=1)
    sms_quiet_hours: QuietHours | None = QuietHours(start="21:00", end="08:00")
    # Messages per second handed over for this tenant, across every dispatcher; None: no limit.
    email_per_second: float | None = Field(default=None, gt=0, le=100_000)
    sms_per_second: float | None = Field(default=None, gt=0, le=100_000)
    # Seconds between "start" and the first recipient being targeted: a start can still be
    # cancelled with nothing sent.
    grace_seconds: int = Field(default=0, ge=0, le=3600)
    # None: never pause on failures.
    auto_pause: AutoPause | None = AutoPause()
    # None: completions are announced by broadcast.completed only.
    completion_notices: CompletionNotices | None = None


class TenantSettingsChanged(Record):
    """The tenant's settings as they are now, on the compacted `tenant.settings` topic."""

    type: Literal["tenant.settings_changed"] = "tenant.settings_changed"
    tenant_id: str
    settings: TenantSettings
