"""broadcast.runs: a run's life between the services (started, targeted, paused, resumed,
cancelled), the tracker's manual actions that targeting acts on, and the dispatcher's requests to
render a waiting message again (`shared.events.refresh`)."""

from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from shared.events.base import Channel, Language, Record
from shared.events.content import Content, Sender
from shared.events.recipients import ContractSnapshot
from shared.events.refresh import RefreshDeclined, RefreshRequested
from shared.events.tenants import TenantSettings
from shared.topics import EVENTS


class TemplateVersion(BaseModel):
    model_config = ConfigDict(frozen=True)

    template_id: str
    version: int


class RunStarted(Record):
    """A run's frozen definition: every later stage renders and counts from this snapshot.

    A `preview` run has one recipient, the preview address; a `follow_up` run has one message
    sent again for a manual action; a `notice` run tells one person of the tenant that a run
    completed. None of them is part of a broadcast's counters or creates actions.
    `created_by` is the broadcast's creator (None in runs started before it was carried)."""

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
    purpose: Literal["broadcast", "preview", "follow_up", "notice"] = "broadcast"
    created_by: str | None = None
    template: TemplateVersion | None = None
    settings: TenantSettings = TenantSettings()
    # A resend to the failures of that run; `include_unknown`: unknown outcomes included.
    resends_failures_of: UUID | None = None
    include_unknown: bool = False


class RenderRequested(Record):
    """A `render_preview` targeting accepted, for the composer to render and answer on
    `answers_topic`: `run` is the definition a preview run would have, `contract` and `address`
    the values it is rendered with (`sample`: a synthetic contract). Nothing is sent or
    counted."""

    type: Literal["run.render_requested"] = "run.render_requested"
    tenant_id: str
    broadcast_id: UUID
    request_id: str
    requested_by: str
    run: RunStarted
    channel: Channel
    language: Language
    address: str
    contract: ContractSnapshot
    sample: bool
    # The render_preview's sender's answers topic (shared/requesters.py, answers_topic_for):
    # broadcast.events for the platform, broadcast.events.<client> for a client. The default
    # is where every render preview was answered before the field was added.
    answers_topic: str = EVENTS.name


class TargetingCompleted(Record):
    """Targeting published every message of the run: `messages` is the exact denominator.

    It counts the recipients sent to the composer and, for each of the `unreachable_contracts`
    (no usable address on any of the run's channels), the one `no_contact` failure targeting
    published to the tracker instead."""

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
    | ActionClosed
    | RenderRequested
    | RefreshRequested
    | RefreshDeclined,
    Field(discriminator="type"),
]
