"""The event contract: every command and event that crosses Kafka, defined once.

Plain JSON on the wire, so any Kafka client can take part. Rules:
- every record carries `type` (the discriminator), `schema_version`, `event_id` and `occurred_at`;
- changes are additive; a breaking change is a new `schema_version`;
- commands reject unknown fields (a misspelt field must not be silently ignored), events ignore
  them (an older consumer must keep working when a newer producer adds a field);
- events are named in the past tense, commands as imperatives.
"""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, get_args
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
)

# Characters no field of a command may hold: control characters (C0, DEL, C1) and lone
# surrogates, which PostgreSQL refuses (NUL) or no UTF-8 encoder can write. A line (a name, a
# subject, an address, an id) holds no line break of any kind either, Unicode's included: a
# header or a log line must not be split. A body keeps tab, line feed and carriage return.
_LINE_BREAKS = "\u2028\u2029"


def _refused(value: str, allowed: str) -> str | None:
    for char in value:
        code = ord(char)
        if char in allowed:
            continue
        if code < 0x20 or 0x7F <= code < 0xA0 or 0xD800 <= code < 0xE000 or char in _LINE_BREAKS:
            return f"U+{code:04X}"
    return None


def _line(value: str) -> str:
    refused = _refused(value, "")
    if refused:
        raise ValueError(f"must be one line of printable characters, not {refused}")
    return value


def _body(value: str) -> str:
    refused = _refused(value, "\t\n\r")
    if refused:
        raise ValueError(f"must hold printable characters, tab and line breaks only, not {refused}")
    return value


OneLine = AfterValidator(_line)
Body = AfterValidator(_body)


Channel = Literal["email", "sms"]
Language = Literal["fr", "en"]
TenantId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
]
RequestId = Annotated[str, StringConstraints(min_length=1, max_length=128), OneLine]
UserId = Annotated[str, StringConstraints(min_length=1, max_length=256), OneLine]
ContractId = Annotated[str, StringConstraints(min_length=1, max_length=128), OneLine]
Text = Annotated[str, StringConstraints(max_length=100_000), Body]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200), OneLine]
Address = Annotated[str, StringConstraints(min_length=3, max_length=254), OneLine]
TemplateId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")
]


def _known_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone '{name}'") from None
    return name


TimeZone = Annotated[str, AfterValidator(_known_zone)]
HttpUrl = Annotated[
    str, StringConstraints(max_length=2000, pattern=r"^https?://[^\s]+$"), AfterValidator(_line)
]


def _within_years(value: datetime) -> datetime:
    if not 1970 <= value.year <= 9998:
        raise ValueError("must be a date between the years 1970 and 9998")
    return value


def _now() -> datetime:
    return datetime.now(UTC)


class Record(BaseModel):
    """Fields every record on the wire carries."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_version: Literal[1] = 1
    event_id: UUID = Field(default_factory=uuid4)
    occurred_at: datetime = Field(default_factory=_now)


# ---------------------------------------------------------------------------------------------
# broadcast.requests: commands from the platform and other services
# ---------------------------------------------------------------------------------------------


class Criterion(BaseModel):
    """One field and its accepted values: values are OR-ed, criteria are AND-ed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    field: Annotated[str, StringConstraints(max_length=64), OneLine]
    values: list[Annotated[str, StringConstraints(max_length=200), OneLine]] = Field(
        min_length=1, max_length=1000
    )


class EmailContent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    subject: Annotated[str, StringConstraints(min_length=1, max_length=998), OneLine]
    html: Text
    text: Text | None = None


class SmsContent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    text: Annotated[str, StringConstraints(min_length=1, max_length=2_000), Body]


class Content(BaseModel):
    """The message per channel and language, as jinja2 templates."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    email: dict[Language, EmailContent] = Field(default_factory=dict)
    sms: dict[Language, SmsContent] = Field(default_factory=dict)


class Sender(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    address: Address
    name: Annotated[str, StringConstraints(max_length=200), OneLine] = ""
    reply_to: Annotated[str, StringConstraints(max_length=254), OneLine] | None = None


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


class Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    tenant_id: TenantId
    request_id: RequestId
    requested_by: UserId


class BroadcastDefinition(Command):
    """What a broadcast sends, to whom: the fields a draft is created and updated with.

    The message is either `content` written for this broadcast or a saved `template_id`; a
    template's latest version when the broadcast starts is the one its run keeps.
    """

    name: Name
    criteria: list[Criterion] = Field(default_factory=list)
    channels: list[Channel] = Field(min_length=1)
    languages: list[Language] = Field(min_length=1)
    content: Content | None = None
    template_id: TemplateId | None = None
    sender: Sender


DEFINITION_FIELDS = frozenset(BroadcastDefinition.model_fields) - frozenset(Command.model_fields)


class CreateBroadcast(BroadcastDefinition):
    """Create a broadcast as a draft. Its id is derived from the request when not given."""

    type: Literal["create_broadcast"] = "create_broadcast"
    broadcast_id: UUID | None = None


class UpdateBroadcast(BroadcastDefinition):
    """Replace a draft's (or a scheduled broadcast's) definition; refused once it started."""

    type: Literal["update_broadcast"] = "update_broadcast"
    broadcast_id: UUID


class StartBroadcast(Command):
    """Send a draft broadcast to its audience; refused once it was started."""

    type: Literal["start_broadcast"] = "start_broadcast"
    broadcast_id: UUID


class EstimateBroadcast(Command):
    """How many contracts and messages these criteria reach, before anything is created."""

    type: Literal["estimate_broadcast"] = "estimate_broadcast"
    criteria: list[Criterion] = Field(default_factory=list)
    channels: list[Channel] = Field(min_length=1)


class ScheduleBroadcast(Command):
    """Start a draft at `at`; a time without an offset is the tenant's wall time. Scheduling
    again moves the time; cancel stops it."""

    type: Literal["schedule_broadcast"] = "schedule_broadcast"
    broadcast_id: UUID
    # Within the years a date can be moved across time zones and days without overflowing.
    at: Annotated[datetime, AfterValidator(_within_years)]


class RenameBroadcast(Command):
    """A broadcast's name can change at any time; runs already started keep theirs."""

    type: Literal["rename_broadcast"] = "rename_broadcast"
    broadcast_id: UUID
    name: Name


class PauseBroadcast(Command):
    """Hold a running broadcast: nothing more is handed over until it is resumed.

    `reason` is `failure_ratio` when the tracker paused it on its own (AutoPause)."""

    type: Literal["pause_broadcast"] = "pause_broadcast"
    broadcast_id: UUID
    reason: Literal["requested", "failure_ratio"] = "requested"
    detail: Annotated[str, StringConstraints(max_length=500), OneLine] = ""


class ResumeBroadcast(Command):
    """Release a paused broadcast: what was held is sent, never what was already sent."""

    type: Literal["resume_broadcast"] = "resume_broadcast"
    broadcast_id: UUID


class ResendBroadcast(Command):
    """Send a finished broadcast again, as a new run with its own counters.

    `only_failed`: only to the addresses whose message failed in the previous run, except those
    whose action was resolved since and, unless `include_unknown`, those whose outcome is
    unknown (the relay may have them: sending again may deliver twice)."""

    type: Literal["resend_broadcast"] = "resend_broadcast"
    broadcast_id: UUID
    only_failed: bool = False
    include_unknown: bool = False


class CancelBroadcast(Command):
    """Stop sending: messages not handed over yet are reported as cancelled, not failed."""

    type: Literal["cancel_broadcast"] = "cancel_broadcast"
    broadcast_id: UUID


class PreviewBroadcast(Command):
    """Send the broadcast, rendered for one sample contract, to `to` only (the seed's "Envoyer
    un aperçu"). The sample is `contract_id`, else the first contract the criteria match."""

    type: Literal["preview_broadcast"] = "preview_broadcast"
    broadcast_id: UUID
    to: Address
    channel: Channel = "email"
    contract_id: ContractId | None = None


class ConfigureTenant(Command):
    """Replace the tenant's settings; runs started afterwards use them."""

    type: Literal["configure_tenant"] = "configure_tenant"
    settings: TenantSettings


class SaveTemplate(Command):
    """Create a template or save a new version of it."""

    type: Literal["save_template"] = "save_template"
    template_id: TemplateId
    name: Name
    content: Content


class DeleteTemplate(Command):
    """Broadcasts created from the template can no longer start; runs keep their copy."""

    type: Literal["delete_template"] = "delete_template"
    template_id: TemplateId


class ListTemplates(Command):
    type: Literal["list_templates"] = "list_templates"


# `resent`: a resend to its run's failures sent the message again.
ActionState = Literal["open", "sending", "sent", "ignored", "resent"]


class ListActions(Command):
    """The tenant's manual follow-up actions, newest first (answered by the tracker)."""

    type: Literal["list_actions"] = "list_actions"
    broadcast_id: UUID | None = None
    state: ActionState | None = None
    limit: int = Field(default=100, ge=1, le=1000)


class ResolveAction(Command):
    """Send the message again (to `address` when given: a corrected address) or ignore it.

    Only an open action is resolved; replaying the request that resolved it is harmless (the
    same answer, the same follow-up run), any other request is refused. Each send that is
    applied is a new message: after a follow-up that failed, the action is open again."""

    type: Literal["resolve_action"] = "resolve_action"
    action_id: int = Field(ge=1, le=2**63 - 1)  # a PostgreSQL bigint
    resolution: Literal["send", "ignore"]
    address: Address | None = None


class ContractHistory(Command):
    """Every broadcast message a contract got or failed to get (the customer's history)."""

    type: Literal["contract_history"] = "contract_history"
    contract_id: ContractId


TrackerCommand = ListActions | ResolveAction | ContractHistory
TRACKER_COMMAND_ADAPTER: TypeAdapter[TrackerCommand] = TypeAdapter(
    Annotated[TrackerCommand, Field(discriminator="type")]
)

AnyCommand = (
    CreateBroadcast
    | UpdateBroadcast
    | StartBroadcast
    | PauseBroadcast
    | ResumeBroadcast
    | ResendBroadcast
    | ScheduleBroadcast
    | RenameBroadcast
    | CancelBroadcast
    | EstimateBroadcast
    | PreviewBroadcast
    | ConfigureTenant
    | SaveTemplate
    | DeleteTemplate
    | ListTemplates
)
BroadcastCommand = Annotated[AnyCommand, Field(discriminator="type")]
COMMAND_ADAPTER: TypeAdapter[AnyCommand] = TypeAdapter(BroadcastCommand)


def _types(union: Any) -> frozenset[str]:
    return frozenset(m.model_fields["type"].default for m in get_args(union))


# Commands share `broadcast.requests`: the tracker answers these, targeting all the others.
TRACKER_COMMAND_TYPES = _types(TrackerCommand)


# ---------------------------------------------------------------------------------------------
# broadcast.events: what the platform reads back
# ---------------------------------------------------------------------------------------------

RejectionReason = Literal[
    "invalid_json",
    "invalid_field",
    "unknown_criterion",
    "unknown_value",
    "invalid_template",
    "missing_content",
    "broadcast_exists",
    "broadcast_not_found",
    "already_started",
    "template_not_found",
    "contract_not_found",
    "no_matching_contract",
    "not_started",
    "action_not_found",
    "already_resolved",
    "not_running",
    "not_paused",
    "not_finished",
    "nothing_to_resend",
    "request_reused",
    # The command failed for a reason of its own that the engine did not foresee; nothing
    # private is said, the operator's dead letters and logs have the rest.
    "internal_error",
]
Outcome = Literal["fully_successful", "partially_successful", "failed", "cancelled"]


class Counters(BaseModel):
    """`messages_targeted` is None until targeting has counted every recipient of the run.

    `delivered + failed + cancelled` are final; `pending_retry` (a retry or a provider that
    asked to slow down) and `waiting_window` (the tenant's send window) are on their way."""

    model_config = ConfigDict(frozen=True)

    contracts_targeted: int = 0
    messages_targeted: int | None = None
    delivered: int = 0
    failed: int = 0
    cancelled: int = 0
    pending_retry: int = 0
    waiting_window: int = 0
    paused: int = 0
    failed_by_reason: dict[str, int] = Field(default_factory=dict)


class BroadcastAccepted(Record):
    """A broadcast command applied. For a preview, `run_id` is the preview's own run."""

    type: Literal["broadcast.accepted"] = "broadcast.accepted"
    tenant_id: str
    request_id: str
    broadcast_id: UUID
    command: str
    run_id: UUID | None = None


class BroadcastPreviewed(Record):
    """The outcome of a preview: whether the one message reached its provider, else why not."""

    type: Literal["broadcast.previewed"] = "broadcast.previewed"
    tenant_id: str
    broadcast_id: UUID
    run_id: UUID
    requested_by: str
    address: str
    delivered: bool
    reason: str | None = None
    detail: str = ""


class TenantConfigured(Record):
    type: Literal["tenant.configured"] = "tenant.configured"
    tenant_id: str
    request_id: str
    settings: TenantSettings


class TemplateSaved(Record):
    type: Literal["template.saved"] = "template.saved"
    tenant_id: str
    request_id: str
    template_id: str
    version: int


class TemplateDeleted(Record):
    type: Literal["template.deleted"] = "template.deleted"
    tenant_id: str
    request_id: str
    template_id: str


class TemplateSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    template_id: str
    name: str
    version: int
    channels: list[Channel]
    languages: list[Language]
    saved_at: datetime


class TemplatesListed(Record):
    """The answer to list_templates: the tenant's templates, latest version of each."""

    type: Literal["templates.listed"] = "templates.listed"
    tenant_id: str
    request_id: str
    templates: list[TemplateSummary]


class TenantSettingsChanged(Record):
    """The tenant's settings as they are now, on the compacted `tenant.settings` topic."""

    type: Literal["tenant.settings_changed"] = "tenant.settings_changed"
    tenant_id: str
    settings: TenantSettings


class ActionView(BaseModel):
    model_config = ConfigDict(frozen=True)

    action_id: int
    broadcast_id: UUID
    run_id: UUID
    contract_id: str
    channel: Channel
    address: str
    reason: str | None
    detail: str | None
    state: ActionState
    created_at: datetime
    resolved_by: str | None = None
    resolved_at: datetime | None = None


class ActionsListed(Record):
    type: Literal["actions.listed"] = "actions.listed"
    tenant_id: str
    request_id: str
    actions: list[ActionView]


class ActionResolved(Record):
    """`sending`: the message is on its way again (`run_id` follows it); `ignored`."""

    type: Literal["action.resolved"] = "action.resolved"
    tenant_id: str
    request_id: str
    action_id: int
    resolution: Literal["send", "ignore"]
    state: ActionState
    run_id: UUID | None = None


class HistoryEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    broadcast_id: UUID
    run_id: UUID
    broadcast_name: str | None
    channel: Channel
    address: str
    state: str
    reason: str | None
    at: datetime


class ContractHistoryListed(Record):
    type: Literal["contract.history"] = "contract.history"
    tenant_id: str
    request_id: str
    contract_id: str
    messages: list[HistoryEntry]


class ContactOptedOut(Record):
    """A recipient used the unsubscribe link: targeting no longer sends to this address.

    Published so the platform can show it and update its own contact data."""

    type: Literal["contact.opted_out"] = "contact.opted_out"
    tenant_id: str
    contract_id: str
    channel: Channel
    address: str


class BroadcastRejected(Record):
    """A command that was not applied. `field` names the offending field, dotted."""

    type: Literal["broadcast.rejected"] = "broadcast.rejected"
    tenant_id: str | None
    request_id: str | None
    broadcast_id: UUID | None = None
    command: str | None
    reason: RejectionReason
    field: str | None
    message: str


class BroadcastEstimated(Record):
    """The answer to an estimate: the seed's "280 of 4,753".

    `messages` counts one message per usable address and channel (a contract with two emails
    counts twice); `unreachable_contracts` matched but have no usable address on any requested
    channel; `opted_out_addresses` were left out because their owner opted out.
    """

    type: Literal["broadcast.estimated"] = "broadcast.estimated"
    tenant_id: str
    request_id: str
    contracts: int
    unreachable_contracts: int
    messages: dict[Channel, int]
    opted_out_addresses: dict[Channel, int]


class BroadcastStarted(Record):
    type: Literal["broadcast.started"] = "broadcast.started"
    tenant_id: str
    request_id: str
    requested_by: str
    broadcast_id: UUID
    run_id: UUID


class BroadcastPaused(Record):
    """A running broadcast was paused; `requested_by` is its creator, to be told.

    `reason` `failure_ratio`: it paused itself, `detail` says how many messages failed."""

    type: Literal["broadcast.paused"] = "broadcast.paused"
    tenant_id: str
    broadcast_id: UUID
    run_id: UUID
    requested_by: str
    reason: Literal["requested", "failure_ratio"]
    detail: str = ""


class BroadcastProgressed(Record):
    type: Literal["broadcast.progressed"] = "broadcast.progressed"
    tenant_id: str
    broadcast_id: UUID
    run_id: UUID
    counters: Counters


class BroadcastCompleted(Record):
    """The end of a run, addressed to the user who requested it."""

    type: Literal["broadcast.completed"] = "broadcast.completed"
    tenant_id: str
    broadcast_id: UUID
    run_id: UUID
    requested_by: str
    outcome: Outcome
    counters: Counters


AnyBroadcastEvent = (
    BroadcastAccepted
    | BroadcastRejected
    | BroadcastEstimated
    | BroadcastStarted
    | BroadcastPaused
    | BroadcastProgressed
    | BroadcastCompleted
    | BroadcastPreviewed
    | TenantConfigured
    | TemplateSaved
    | TemplateDeleted
    | TemplatesListed
    | ContactOptedOut
    | ActionsListed
    | ActionResolved
    | ContractHistoryListed
)
BroadcastEvent = Annotated[AnyBroadcastEvent, Field(discriminator="type")]
BROADCAST_EVENT_ADAPTER: TypeAdapter[AnyBroadcastEvent] = TypeAdapter(BroadcastEvent)


# ---------------------------------------------------------------------------------------------
# audience.contracts: the platform's contract changes
# ---------------------------------------------------------------------------------------------


class ContactPoint(BaseModel):
    """An email address or a phone number, and whether its owner opted out."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: Annotated[str, StringConstraints(min_length=1, max_length=254)]
    opted_out: bool = False


class ContractDetails(BaseModel):
    """The Diffusions seed's variables that follow the last visit and payment; None: unknown.

    Service options (spreading, transports, spring cleaning) are the text the platform shows,
    e.g. "Inclus" or "2 voyages"."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    transaction_id: str | None = None
    auth_code: str | None = None
    visit_at: AwareDatetime | None = None
    driver_name: str | None = None
    spreading: str | None = None
    transport_10_wheels: str | None = None
    transport_12_wheels: str | None = None
    transport_semi_2: str | None = None
    transport_semi_3: str | None = None
    spring_cleaning: str | None = None


class ContractFields(BaseModel):
    """What targeting keeps of a contract: the criteria fields and the template variables."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    number: str
    status: str
    building_type: str
    zone: str = ""
    season: str = ""
    client_name: str
    service_address: str = ""
    language: Language = "fr"
    emails: list[ContactPoint] = Field(default_factory=list)
    phones: list[ContactPoint] = Field(default_factory=list)
    balance: Decimal = Decimal(0)
    amount_paid: Decimal = Decimal(0)
    details: ContractDetails = ContractDetails()
    attributes: dict[str, str] = Field(default_factory=dict)


class ContractUpserted(Record):
    """A contract's full state. `version` grows with every change: older versions are ignored."""

    type: Literal["contract.upserted"] = "contract.upserted"
    tenant_id: TenantId
    contract_id: ContractId
    version: int = Field(ge=0)
    contract: ContractFields


class ContractDeleted(Record):
    type: Literal["contract.deleted"] = "contract.deleted"
    tenant_id: TenantId
    contract_id: ContractId
    version: int = Field(ge=0)


ContractEvent = Annotated[ContractUpserted | ContractDeleted, Field(discriminator="type")]


# ---------------------------------------------------------------------------------------------
# Internal topics
# ---------------------------------------------------------------------------------------------


class TemplateVersion(BaseModel):
    model_config = ConfigDict(frozen=True)

    template_id: str
    version: int


class RunStarted(Record):
    """A run's frozen definition: every later stage renders and counts from this snapshot.

    A `preview` run has one recipient, the preview address; a `follow_up` run has one message
    sent again for a manual action. Neither is part of the broadcast's counters or creates
    actions."""

    type: Literal["run.started"] = "run.started"
    tenant_id: str
    broadcast_id: UUID
    run_id: UUID
    name: str
    requested_by: str
    channels: list[Channel]
    languages: list[Language]
    content: Content
    sender: Sender
    purpose: Literal["broadcast", "preview", "follow_up"] = "broadcast"
    template: TemplateVersion | None = None
    settings: TenantSettings = TenantSettings()
    # A resend to the failures of that run; `include_unknown`: unknown outcomes included.
    resends_failures_of: UUID | None = None
    include_unknown: bool = False


class TargetingCompleted(Record):
    """Targeting published every recipient of the run: `messages` is the exact denominator."""

    type: Literal["run.targeting_completed"] = "run.targeting_completed"
    tenant_id: str
    broadcast_id: UUID
    run_id: UUID
    contracts: int
    messages: int
    unreachable_contracts: int


class RunCancelled(Record):
    """Stop the run: what was not handed over yet is cancelled. May come before targeting ends."""

    type: Literal["run.cancelled"] = "run.cancelled"
    tenant_id: str
    broadcast_id: UUID
    run_id: UUID
    requested_by: str


class RunPaused(Record):
    """Hold the run's messages not handed over yet until it is resumed."""

    type: Literal["run.paused"] = "run.paused"
    tenant_id: str
    broadcast_id: UUID
    run_id: UUID
    reason: Literal["requested", "failure_ratio"]


class RunResumed(Record):
    """Release the run's held messages."""

    type: Literal["run.resumed"] = "run.resumed"
    tenant_id: str
    broadcast_id: UUID
    run_id: UUID


class FollowUpRequested(Record):
    """A manual action resolved with "send": targeting publishes the message of run `run_id`
    for this contract again, as the one-message run `follow_up_run_id`, to `address`."""

    type: Literal["run.follow_up_requested"] = "run.follow_up_requested"
    tenant_id: str
    broadcast_id: UUID
    run_id: UUID
    follow_up_run_id: UUID
    action_id: int
    contract_id: str
    channel: Channel
    address: str
    requested_by: str


class ActionClosed(Record):
    """A manual action resolved with "send" or "ignore": a later resend to the failures of run
    `run_id` leaves this message out (somebody took care of it)."""

    type: Literal["run.action_closed"] = "run.action_closed"
    tenant_id: str
    broadcast_id: UUID
    run_id: UUID
    recipient_id: UUID
    action_id: int
    contract_id: str
    channel: Channel
    address: str
    resolution: Literal["send", "ignore"]


# What the tracker publishes about manual actions on broadcast.runs, for targeting.
ActionEvent = Annotated[FollowUpRequested | ActionClosed, Field(discriminator="type")]

RunEvent = Annotated[
    RunStarted
    | TargetingCompleted
    | RunCancelled
    | RunPaused
    | RunResumed
    | FollowUpRequested
    | ActionClosed,
    Field(discriminator="type"),
]


class ContractSnapshot(BaseModel):
    """The contract as it was when targeted: what templates may show."""

    model_config = ConfigDict(frozen=True)

    contract_id: str
    number: str
    status: str
    building_type: str
    zone: str
    season: str
    client_name: str
    service_address: str
    language: Language
    balance: Decimal
    amount_paid: Decimal
    details: ContractDetails = ContractDetails()
    attributes: dict[str, str] = Field(default_factory=dict)


_REF = frozenset(
    {
        "tenant_id",
        "broadcast_id",
        "run_id",
        "recipient_id",
        "contract_id",
        "channel",
        "address",
        "targeted_at",
    }
)


class RecipientTargeted(Record):
    """One message to produce. `recipient_id` is stable: (run, contract, channel, address)."""

    type: Literal["recipient.targeted"] = "recipient.targeted"
    tenant_id: str
    broadcast_id: UUID
    run_id: UUID
    recipient_id: UUID
    channel: Channel
    address: str
    contract: ContractSnapshot

    def ref(self) -> dict[str, Any]:
        """The identity of the message this recipient becomes."""
        return {
            "tenant_id": self.tenant_id,
            "broadcast_id": self.broadcast_id,
            "run_id": self.run_id,
            "recipient_id": self.recipient_id,
            "contract_id": self.contract.contract_id,
            "channel": self.channel,
            "address": self.address,
            "targeted_at": self.occurred_at,
        }


class MessageRef(Record):
    """The fields that identify one message of one run, carried by every per-message event.

    `targeted_at` is when targeting published the recipient: the start of its end-to-end
    latency."""

    tenant_id: str
    broadcast_id: UUID
    run_id: UUID
    recipient_id: UUID
    contract_id: str
    channel: Channel
    address: str
    targeted_at: datetime | None = None

    def ref(self) -> dict[str, Any]:
        """These fields alone, to build the next event about the same message."""
        return {name: getattr(self, name) for name in _REF}


SmsEncoding = Literal["gsm7", "ucs2"]


class MessageRendered(MessageRef):
    """A message ready for its provider: a full RFC 5322 message for email, the text for SMS.

    For SMS, `sms_encoding` and `sms_segments` say what the message will cost."""

    type: Literal["message.rendered"] = "message.rendered"
    sender: str
    body: str
    sms_encoding: SmsEncoding | None = None
    sms_segments: int | None = None
    # A preview goes to the person who asked for it, at once: send windows do not apply.
    preview: bool = False


FailureReason = Literal[
    "unknown_outcome",
    "render_failed",
    "missing_value",
    "sms_too_long",
    "invalid_address",
    "refused",
    "temporary_failure",
    "provider_error",
]


class MessageDelivered(MessageRef):
    """The provider accepted the message."""

    type: Literal["delivery.delivered"] = "delivery.delivered"
    provider_code: int | None = None
    provider_message: str = ""


class DeliveryFailed(MessageRef):
    """The message will not reach its recipient without somebody acting on it."""

    type: Literal["delivery.failed"] = "delivery.failed"
    reason: FailureReason
    detail: str = ""
    provider_code: int | None = None


WaitReason = Literal["retry", "send_window", "throttled", "paused"]


class DeliveryDeferred(MessageRef):
    """Not handed over yet: it will be tried again at `due_at` (None: when its run is
    resumed). Not a final state."""

    type: Literal["delivery.deferred"] = "delivery.deferred"
    waiting_for: WaitReason
    due_at: datetime | None
    attempts: int
    detail: str = ""
    provider_code: int | None = None


class DeliveryCancelled(MessageRef):
    """Its broadcast was cancelled before the message was handed over."""

    type: Literal["delivery.cancelled"] = "delivery.cancelled"


class DeliveryCorrected(MessageRef):
    """A message reported failed with `unknown_outcome` (its dispatcher looked dead) whose
    dispatcher later learnt the provider's answer: `outcome`. Published beside that answer's
    own `delivery.delivered` or `delivery.failed`, which the tracker applies as the correction;
    targeting reads this one to leave a delivered message out of a resend to the failures."""

    type: Literal["delivery.corrected"] = "delivery.corrected"
    outcome: Literal["delivered", "failed"]


FinalDelivery = MessageDelivered | DeliveryFailed | DeliveryCancelled
DeliveryEvent = Annotated[
    MessageDelivered | DeliveryFailed | DeliveryDeferred | DeliveryCancelled | DeliveryCorrected,
    Field(discriminator="type"),
]


class DeadLettered(Record):
    """A record no handler could even parse, kept with the error for an operator."""

    type: Literal["message.dead_lettered"] = "message.dead_lettered"
    service: str
    topic: str
    partition: int
    offset: int
    key: str | None
    payload: str
    error: str
