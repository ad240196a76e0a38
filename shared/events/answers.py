"""broadcast.events: what the platform reads back, the answers to its commands and the story
of each broadcast (started, paused, progressed, completed). The answers to a request client's
commands are the same records on its own broadcast.events.<client> (shared/requesters.py)."""

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from shared.events.actions import ActionState, ActionView
from shared.events.base import Channel, Language, Record
from shared.events.messages import SmsEncoding
from shared.events.requests import CreateBroadcast, MessageState
from shared.events.tenants import TenantSettings

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
    "run_not_found",
    "already_resolved",
    "not_running",
    "not_paused",
    "not_finished",
    "nothing_to_resend",
    "request_reused",
    # render_preview: the template fails for this contract (the error in a few words).
    "render_failed",
    # A client sent a command for a tenant it does not hold (shared/requesters.py): nothing
    # was done, and the answer says nothing of the tenant.
    "forbidden",
    # The command failed for a reason of its own that the engine did not foresee; nothing
    # private is said, the operator's dead letters and logs have the rest.
    "internal_error",
]
Outcome = Literal["fully_successful", "partially_successful", "failed", "cancelled"]


class Counters(BaseModel):
    """`messages_targeted` is None until targeting has counted every recipient of the run.

    `delivered + failed + cancelled` are final; `pending_retry` (a retry or a provider that
    asked to slow down) and `waiting_window` (the tenant's send window) are on their way.

    A contract is `contracts_reached` once one of its messages was delivered, and
    `contracts_not_reached` once every message of it the tracker has heard of is final and
    none was delivered (a contract with no address has one `no_contact` failure). Exact once
    the run is complete: `contracts_targeted = contracts_reached + contracts_not_reached`.

    What was reported after the hand-over, counting each message once however often it is
    reported: `hard_bounced` (a delivered one among them moved to failed, reason `bounced`;
    one still waiting or already failed is counted and left as it is), `soft_bounced` and
    `complained` (their messages stay delivered), `confirmed` (an SMS at the handset)."""

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
    contracts_reached: int = 0
    contracts_not_reached: int = 0
    hard_bounced: int = 0
    soft_bounced: int = 0
    complained: int = 0
    confirmed: int = 0


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


class RenderedEmail(BaseModel):
    """An email's parts as its recipient would get them; `text` is cut to
    `RENDERED_TEXT_LIMIT` characters (`text_cut`), the HTML is bounded by the render."""

    model_config = ConfigDict(frozen=True)

    subject: str
    html: str
    text: str
    text_cut: bool = False


class RenderedSms(BaseModel):
    """An SMS as its recipient would get it, and what it costs: `segments` in `encoding`
    (`units`: septets or UTF-16 units); over `max_segments` (the tenant's) it would fail."""

    model_config = ConfigDict(frozen=True)

    text: str
    encoding: SmsEncoding
    units: int
    segments: int
    max_segments: int


# What a render_preview answer carries of a text part at most (an HTML part is at most 256 KB
# already), and the largest answer: far below the broker's 1 MB record, whatever the template.
RENDERED_TEXT_LIMIT = 64 * 1024
RENDERED_ANSWER_LIMIT = 768 * 1024


class BroadcastRendered(Record):
    """The answer to render_preview: the message rendered for `contract_id` (None: the
    sample contract) in `language`, `email` or `sms` after `channel`. Nothing was sent."""

    type: Literal["broadcast.rendered"] = "broadcast.rendered"
    tenant_id: str
    request_id: str
    broadcast_id: UUID
    contract_id: str | None
    channel: Channel
    language: Language
    email: RenderedEmail | None = None
    sms: RenderedSms | None = None


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


SuppressionReason = Literal["hard_bounce", "complaint", "soft_bounces", "sms_stop"]


class ContactSuppressed(Record):
    """Targeting will not send to this address again, as for an unsubscribe: it bounced for
    good, its recipient complained, it bounced softly (or an SMS failed at its handset for a
    transient cause) too many times in a row, or its number answered STOP. `recipient_id` is
    the message that decided it. Published so the platform can show it and fix its contact
    data; `reenable_contact` undoes it."""

    type: Literal["contact.suppressed"] = "contact.suppressed"
    tenant_id: str
    contract_id: str
    channel: Channel
    address: str
    reason: SuppressionReason
    recipient_id: UUID


class ContactReenabled(Record):
    """The answer to `reenable_contact`: the address may be targeted again. Who asked, and
    why, are kept with the suppression's history."""

    type: Literal["contact.reenabled"] = "contact.reenabled"
    tenant_id: str
    request_id: str
    requested_by: str
    channel: Channel
    address: str
    # False: the address was not suppressed (nothing changed).
    was_suppressed: bool


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
    channel; `opted_out_addresses` were left out because their owner opted out, and
    `suppressed_addresses` because a delivery report suppressed them (a bounce, a complaint,
    an SMS STOP; an address both opted out and suppressed counts as opted out).
    """

    type: Literal["broadcast.estimated"] = "broadcast.estimated"
    tenant_id: str
    request_id: str
    contracts: int
    unreachable_contracts: int
    messages: dict[Channel, int]
    opted_out_addresses: dict[Channel, int]
    suppressed_addresses: dict[Channel, int] = Field(default_factory=dict)


class BroadcastStarted(Record):
    type: Literal["broadcast.started"] = "broadcast.started"
    tenant_id: str
    request_id: str
    requested_by: str
    broadcast_id: UUID
    run_id: UUID


class BroadcastPaused(Record):
    """A running broadcast was paused; `requested_by` is who started the run, to be told.

    `reason` `failure_ratio`: it paused itself, `detail` says how many messages failed."""

    type: Literal["broadcast.paused"] = "broadcast.paused"
    tenant_id: str
    broadcast_id: UUID
    run_id: UUID
    requested_by: str
    reason: Literal["requested", "failure_ratio"]
    detail: str = ""


class BroadcastProgressed(Record):
    """A running run's counters; or, with `outcome`, a completed run's counters changed by a
    report that came after its completion (a late hard bounce): its outcome now."""

    type: Literal["broadcast.progressed"] = "broadcast.progressed"
    tenant_id: str
    broadcast_id: UUID
    run_id: UUID
    counters: Counters
    outcome: Outcome | None = None


class BroadcastCompleted(Record):
    """The end of a run. `notify`: the people to tell, the broadcast's creator first, then
    whoever started the run (`requested_by`) when that is someone else."""

    type: Literal["broadcast.completed"] = "broadcast.completed"
    tenant_id: str
    broadcast_id: UUID
    run_id: UUID
    requested_by: str
    outcome: Outcome
    counters: Counters
    created_by: str | None = None
    notify: list[str] = Field(default_factory=list)


class Labelled(BaseModel):
    """A code with its French and English labels, and the one in the language asked for."""

    model_config = ConfigDict(frozen=True)

    code: str
    label: str
    label_fr: str
    label_en: str


class RunSummary(BaseModel):
    """A run as targeting knows it, with the tracker's counters as last announced.

    `counters` is None until the tracker announced the run's first progress; `state` is
    `completed` once it announced the run's completion (then `outcome` is set)."""

    model_config = ConfigDict(frozen=True)

    run_id: UUID
    run_number: int
    state: Literal["running", "completed"]
    outcome: Outcome | None
    outcome_label: str | None
    started_at: datetime
    targeted_at: datetime | None
    completed_at: datetime | None
    counters: Counters | None


class BroadcastSummary(BaseModel):
    """A line of the list page: `latest_run` is None for a broadcast never started."""

    model_config = ConfigDict(frozen=True)

    broadcast_id: UUID
    name: str
    state: str
    state_label: str
    created_at: datetime
    scheduled_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    latest_run: RunSummary | None


class BroadcastsListed(Record):
    type: Literal["broadcasts.listed"] = "broadcasts.listed"
    tenant_id: str
    request_id: str
    broadcasts: list[BroadcastSummary]
    next_cursor: str | None


class BroadcastDescribed(Record):
    """The answer to get_broadcast: `definition` as created or last updated (renames
    included); `runs` is the page."""

    type: Literal["broadcast.described"] = "broadcast.described"
    tenant_id: str
    request_id: str
    broadcast: BroadcastSummary
    created_by: str
    definition: CreateBroadcast
    runs: list[RunSummary]
    next_cursor: str | None


class MessageEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    recipient_id: UUID
    contract_id: str
    channel: Channel
    address: str
    state: MessageState
    state_label: str
    reason: str | None
    detail: str | None
    updated_at: datetime
    due_at: datetime | None
    # When the handset confirmed an SMS (its gateway's delivery receipt); `delivered` alone
    # means the gateway or relay accepted it. None for email and for an SMS not confirmed.
    confirmed_at: datetime | None = None


class MessagesListed(Record):
    """The answer to list_messages, in a stable order (by recipient id)."""

    type: Literal["messages.listed"] = "messages.listed"
    tenant_id: str
    request_id: str
    broadcast_id: UUID
    run_id: UUID
    messages: list[MessageEntry]
    next_cursor: str | None


class VariableEntry(Labelled):
    """`code` is the name a template uses: `{{ contract.number }}`."""

    kind: str


class VariablesListed(Record):
    type: Literal["variables.listed"] = "variables.listed"
    tenant_id: str
    request_id: str
    variables: list[VariableEntry]
    next_cursor: str | None


class CriterionEntry(Labelled):
    """`values` is None for a free-form field (any zone, any keyword of a client's name)."""

    values: list[Labelled] | None


class CriteriaDescribed(Record):
    type: Literal["criteria.described"] = "criteria.described"
    tenant_id: str
    request_id: str
    criteria: list[CriterionEntry]
    next_cursor: str | None


AnyBroadcastEvent = (
    BroadcastAccepted
    | BroadcastRejected
    | BroadcastEstimated
    | BroadcastStarted
    | BroadcastPaused
    | BroadcastProgressed
    | BroadcastCompleted
    | BroadcastPreviewed
    | BroadcastRendered
    | TenantConfigured
    | TemplateSaved
    | TemplateDeleted
    | TemplatesListed
    | ContactOptedOut
    | ContactSuppressed
    | ContactReenabled
    | ActionsListed
    | ActionResolved
    | ContractHistoryListed
    | BroadcastsListed
    | BroadcastDescribed
    | MessagesListed
    | VariablesListed
    | CriteriaDescribed
)
BroadcastEvent = Annotated[AnyBroadcastEvent, Field(discriminator="type")]
BROADCAST_EVENT_ADAPTER: TypeAdapter[AnyBroadcastEvent] = TypeAdapter(BroadcastEvent)
