"""broadcast.recipients: the messages to produce, each for one contract as it was when targeted:
one per record, or a page of one run's per record."""

from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.events.base import Channel, Language, Record
from shared.events.contracts import ContractDetails


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
    # 0 when targeted; n when rendered again with the contract's current values, at the
    # dispatcher's n-th request (`RefreshRequested`).
    rendition: int = 0

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


# Recipients in one record of targeting's stream. Per record, the producer, the broker and the
# composer's consumer each pay a fixed cost that a page pays once (bench/README.md, "Issue 17,
# fifth pass"); 32 keeps a record near 30 KB and the composer's batches as small as before
# (it reads `batch_size / RECIPIENTS_PER_RECORD` records at a time).
RECIPIENTS_PER_RECORD = 32


class RecipientsTargeted(Record):
    """A page of one run's recipients, as targeting streams an audience: each one exactly the
    `recipient.targeted` it would be alone. Other recipients (previews, follow-ups, notices,
    new renditions) go one per record."""

    type: Literal["recipients.targeted"] = "recipients.targeted"
    tenant_id: str
    run_id: UUID
    recipients: list[RecipientTargeted] = Field(min_length=1, max_length=RECIPIENTS_PER_RECORD)

    @model_validator(mode="after")
    def _one_run(self) -> "RecipientsTargeted":
        # A page is rendered as its run: a recipient of another run or tenant would be rendered
        # with the wrong templates and counted in the wrong run.
        strays = [
            r.recipient_id
            for r in self.recipients
            if r.run_id != self.run_id or r.tenant_id != self.tenant_id
        ]
        if strays:
            raise ValueError(f"recipients: {len(strays)} not of the page's run and tenant")
        return self


# What `broadcast.recipients` carries.
RecipientRecord = Annotated[RecipientTargeted | RecipientsTargeted, Field(discriminator="type")]
