"""broadcast.requests: the commands the platform and other services send, and the unions their
subscribers parse them with."""

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter

from shared.events.actions import ActionState
from shared.events.base import (
    Address,
    Channel,
    ContractId,
    Language,
    Name,
    OneLine,
    RequestId,
    TemplateId,
    TenantId,
    UserId,
    types_of,
)
from shared.events.content import Content, Sender
from shared.events.tenants import TenantSettings


def _within_years(value: datetime) -> datetime:
    if not 1970 <= value.year <= 9998:
        raise ValueError("must be a date between the years 1970 and 9998")
    return value


class Criterion(BaseModel):
    """One field and its accepted values: values are OR-ed, criteria are AND-ed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    field: Annotated[str, StringConstraints(max_length=64), OneLine]
    values: list[Annotated[str, StringConstraints(max_length=200), OneLine]] = Field(
        min_length=1, max_length=1000
    )


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


class RenderPreview(Command):
    """Render the broadcast for one contract, without sending anything (the seed's preview
    window): answered with `broadcast.rendered` (subject, HTML and text, or the SMS text with
    its segments) in one `language`. The contract is `contract_id`, else a sample contract
    (`shared.variables.sample_contract`); the language is `language`, else the one that
    contract's message would be in."""

    type: Literal["render_preview"] = "render_preview"
    broadcast_id: UUID
    contract_id: ContractId | None = None
    channel: Channel = "email"
    language: Language | None = None


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


class ListActions(Command):
    """The tenant's manual follow-up actions, newest first (answered by the tracker)."""

    type: Literal["list_actions"] = "list_actions"
    broadcast_id: UUID | None = None
    state: ActionState | None = None
    limit: int = Field(default=100, ge=1, le=1000)


class ResolveAction(Command):
    """Send the message again (to `address` when given: a corrected address; required for a
    `no_contact` failure, whose customer had none) or ignore it.

    Only an open action is resolved; replaying the request that resolved it is harmless (the
    same answer, the same follow-up run), any other request is refused. Each send that is
    applied is a new message: after a follow-up that failed, the action is open again."""

    type: Literal["resolve_action"] = "resolve_action"
    action_id: int = Field(ge=1, le=2**63 - 1)  # a PostgreSQL bigint
    resolution: Literal["send", "ignore"]
    address: Address | None = None


class ReenableContact(Command):
    """Let an address suppressed by a delivery report (a hard bounce, a complaint, soft bounces
    in a row, an SMS STOP) be targeted again (answered by targeting with `contact.reenabled`).
    The suppression is kept in its history with who re-enabled it, when and `reason`. An
    unsubscribe (`contact.opted_out`) is its owner's choice: this command leaves it alone."""

    type: Literal["reenable_contact"] = "reenable_contact"
    channel: Channel
    address: Address
    reason: Annotated[str, StringConstraints(max_length=500), OneLine] = ""


class ContractHistory(Command):
    """Every broadcast message a contract got or failed to get (the customer's history)."""

    type: Literal["contract_history"] = "contract_history"
    contract_id: ContractId


# Queries: they change nothing and answer one page each. At most `limit` items (each query has
# its own maximum, so an answer fits in one Kafka record), and `next_cursor` when more follow;
# the same query with `cursor` set to it continues. `language` chooses the labels
# (`shared.labels`) the answer carries next to the codes.

MessageState = Literal["waiting", "delivered", "failed", "cancelled"]
Cursor = Annotated[str, StringConstraints(min_length=1, max_length=500), OneLine]


class Query(Command):
    """`limit` is bounded by each query (`le` below): a larger one is refused, naming `limit`."""

    language: Language = "fr"
    cursor: Cursor | None = None
    limit: int


class ListBroadcasts(Query):
    """The tenant's broadcasts, newest first: `sent` (started at least once), `pending` (draft
    or scheduled), or all (answered by targeting)."""

    type: Literal["list_broadcasts"] = "list_broadcasts"
    state: Literal["sent", "pending"] | None = None
    limit: int = Field(default=50, ge=1, le=200)


class GetBroadcast(Query):
    """One broadcast: its definition, state and runs, newest run first; the runs are the page
    (answered by targeting)."""

    type: Literal["get_broadcast"] = "get_broadcast"
    broadcast_id: UUID
    limit: int = Field(default=20, ge=1, le=100)


class ListMessages(Query):
    """The per-recipient log of one run of a broadcast: `run_number`, else its latest run
    (answered by the tracker, which knows a message once it was tried)."""

    type: Literal["list_messages"] = "list_messages"
    broadcast_id: UUID
    run_number: int | None = Field(default=None, ge=1, le=2**31 - 1)
    state: MessageState | None = None
    # With each `detail` cut to 200 characters, 500 entries of the longest ids, addresses and
    # accented text stay under one Kafka record (1 MB); 1,000 did not (1.7 MB measured).
    limit: int = Field(default=100, ge=1, le=500)


class ListVariables(Query):
    """The merge variables a template may use, in the editor's order (answered by targeting)."""

    type: Literal["list_variables"] = "list_variables"
    limit: int = Field(default=100, ge=1, le=100)


class DescribeCriteria(Query):
    """Every criteria field and its accepted values (answered by targeting)."""

    type: Literal["describe_criteria"] = "describe_criteria"
    limit: int = Field(default=100, ge=1, le=100)


TrackerCommand = ListActions | ResolveAction | ContractHistory | ListMessages
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
    | RenderPreview
    | ConfigureTenant
    | SaveTemplate
    | DeleteTemplate
    | ListTemplates
    | ListBroadcasts
    | GetBroadcast
    | ListVariables
    | DescribeCriteria
    | ReenableContact
)
BroadcastCommand = Annotated[AnyCommand, Field(discriminator="type")]
COMMAND_ADAPTER: TypeAdapter[AnyCommand] = TypeAdapter(BroadcastCommand)


# Commands share `broadcast.requests`: the tracker answers these, targeting all the others.
TRACKER_COMMAND_TYPES = types_of(TrackerCommand)
