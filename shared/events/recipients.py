"""broadcast.recipients: the messages to produce, each for one contract as it was when targeted:
one per record, or a page of one run's per record."""

from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from shared.events.base import PAGE_ENTRIES, Channel, Language, Record, RunPage
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


class RecipientsTargeted(RunPage):
    """A page of one run's recipients, as targeting streams an audience. Other recipients
    (previews, follow-ups, notices, new renditions) go one per record."""

    type: Literal["recipients.targeted"] = "recipients.targeted"
    recipients: list[RecipientTargeted] = Field(min_length=1, max_length=PAGE_ENTRIES)

    def entries(self) -> list[RecipientTargeted]:
        return self.recipients


# What `broadcast.recipients` carries.
RecipientRecord = Annotated[RecipientTargeted | RecipientsTargeted, Field(discriminator="type")]
