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
from typing import Annotated, Any, Literal
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter

Channel = Literal["email", "sms"]
Language = Literal["fr", "en"]
TenantId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
]
RequestId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
UserId = Annotated[str, StringConstraints(min_length=1, max_length=256)]
ContractId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Text = Annotated[str, StringConstraints(max_length=100_000)]


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

    field: str
    values: list[str] = Field(min_length=1)


class EmailContent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    subject: Annotated[str, StringConstraints(min_length=1, max_length=998)]
    html: Text
    text: Text | None = None


class SmsContent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    text: Annotated[str, StringConstraints(min_length=1, max_length=2_000)]


class Content(BaseModel):
    """The message per channel and language, as jinja2 templates."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    email: dict[Language, EmailContent] = Field(default_factory=dict)
    sms: dict[Language, SmsContent] = Field(default_factory=dict)


class Sender(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    address: Annotated[str, StringConstraints(min_length=3, max_length=254)]
    name: Annotated[str, StringConstraints(max_length=200)] = ""
    reply_to: Annotated[str, StringConstraints(max_length=254)] | None = None


class Command(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    tenant_id: TenantId
    request_id: RequestId
    requested_by: UserId


class CreateBroadcast(Command):
    """Create a broadcast as a draft. Its id is derived from the request when not given."""

    type: Literal["create_broadcast"] = "create_broadcast"
    broadcast_id: UUID | None = None
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    criteria: list[Criterion] = Field(default_factory=list)
    channels: list[Channel] = Field(min_length=1)
    languages: list[Language] = Field(min_length=1)
    content: Content
    sender: Sender


class StartBroadcast(Command):
    """Send a draft broadcast to its audience; refused once it was started."""

    type: Literal["start_broadcast"] = "start_broadcast"
    broadcast_id: UUID


class EstimateBroadcast(Command):
    """How many contracts and messages these criteria reach, before anything is created."""

    type: Literal["estimate_broadcast"] = "estimate_broadcast"
    criteria: list[Criterion] = Field(default_factory=list)
    channels: list[Channel] = Field(min_length=1)


BroadcastCommand = Annotated[
    CreateBroadcast | StartBroadcast | EstimateBroadcast, Field(discriminator="type")
]
COMMAND_ADAPTER: TypeAdapter[CreateBroadcast | StartBroadcast | EstimateBroadcast] = TypeAdapter(
    BroadcastCommand
)


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
]
Outcome = Literal["fully_successful", "partially_successful", "failed"]


class Counters(BaseModel):
    """`messages_targeted` is None until targeting has counted every recipient of the run."""

    model_config = ConfigDict(frozen=True)

    contracts_targeted: int = 0
    messages_targeted: int | None = None
    delivered: int = 0
    failed: int = 0


class BroadcastAccepted(Record):
    type: Literal["broadcast.accepted"] = "broadcast.accepted"
    tenant_id: str
    request_id: str
    broadcast_id: UUID
    command: str


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


BroadcastEvent = Annotated[
    BroadcastAccepted
    | BroadcastRejected
    | BroadcastEstimated
    | BroadcastStarted
    | BroadcastProgressed
    | BroadcastCompleted,
    Field(discriminator="type"),
]
BROADCAST_EVENT_ADAPTER: TypeAdapter[
    BroadcastAccepted
    | BroadcastRejected
    | BroadcastEstimated
    | BroadcastStarted
    | BroadcastProgressed
    | BroadcastCompleted
] = TypeAdapter(BroadcastEvent)


# ---------------------------------------------------------------------------------------------
# audience.contracts: the platform's contract changes
# ---------------------------------------------------------------------------------------------


class ContactPoint(BaseModel):
    """An email address or a phone number, and whether its owner opted out."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: Annotated[str, StringConstraints(min_length=1, max_length=254)]
    opted_out: bool = False


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


class RunStarted(Record):
    """A run's frozen definition: every later stage renders and counts from this snapshot."""

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


class TargetingCompleted(Record):
    """Targeting published every recipient of the run: `messages` is the exact denominator."""

    type: Literal["run.targeting_completed"] = "run.targeting_completed"
    tenant_id: str
    broadcast_id: UUID
    run_id: UUID
    contracts: int
    messages: int
    unreachable_contracts: int


RunEvent = Annotated[RunStarted | TargetingCompleted, Field(discriminator="type")]


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
    attributes: dict[str, str] = Field(default_factory=dict)


_REF = frozenset(
    {"tenant_id", "broadcast_id", "run_id", "recipient_id", "contract_id", "channel", "address"}
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
        }


class MessageRef(Record):
    """The fields that identify one message of one run, carried by every per-message event."""

    tenant_id: str
    broadcast_id: UUID
    run_id: UUID
    recipient_id: UUID
    contract_id: str
    channel: Channel
    address: str

    def ref(self) -> dict[str, Any]:
        """These fields alone, to build the next event about the same message."""
        return {name: getattr(self, name) for name in _REF}


class MessageRendered(MessageRef):
    """A message ready for its provider: a full RFC 5322 message for email, the text for SMS."""

    type: Literal["message.rendered"] = "message.rendered"
    sender: str
    body: str


FailureReason = Literal[
    "render_failed",
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


DeliveryEvent = Annotated[MessageDelivered | DeliveryFailed, Field(discriminator="type")]


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
