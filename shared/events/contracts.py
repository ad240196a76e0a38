"""audience.contracts: the platform's contract changes, which targeting keeps to find a
broadcast's audience."""

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from shared.events.base import ContractId, Language, Record, TenantId


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
