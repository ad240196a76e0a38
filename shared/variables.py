"""The merge variables a template may use, with the labels the platform's editor shows.

The 24 variables of the Diffusions seed keep its French labels and order; the fields of the
Campaigns seed (customer, contact, sender, date) follow. Names are stable English identifiers
used in the template syntax: `{{ contract.number }}`. `python -m shared.variables` prints the
catalogue as JSON for the editor.
"""

import json
import sys
from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo

from .events import ContractDetails, ContractSnapshot, Language, LinkKind

Kind = Literal["text", "money", "datetime", "date", "link"]


@dataclass(frozen=True)
class Variable:
    name: str
    label_fr: str
    label_en: str
    kind: Kind = "text"


CATALOGUE: tuple[Variable, ...] = (
    # The Diffusions seed, in its order.
    Variable("contract.service_address", "Adresse (Services)", "Service address"),
    Variable("contract.number", "Contrat (No)", "Contract number"),
    Variable("contract.client_name", "Client (Nom)", "Client name"),
    Variable("contract.balance", "Contrat (Solde)", "Contract balance", "money"),
    Variable("contract.amount_paid", "Contrat (Payé)", "Amount paid", "money"),
    Variable("contract.transaction_id", "Transaction ID", "Transaction ID"),
    Variable("contract.auth_code", "Auth Code", "Authorisation code"),
    Variable("contract.statement_url", "État de compte", "Account statement", "link"),
    Variable("contract.visit_at", "Date/Heure visite", "Visit date and time", "datetime"),
    Variable("contract.driver_name", "Nom du conducteur (visite)", "Driver name (visit)"),
    Variable("contract.spreading", "Épandage", "Spreading"),
    Variable("contract.transport_10_wheels", "Transport (10 roues)", "Transport (10 wheels)"),
    Variable("contract.transport_12_wheels", "Transport (12 roues)", "Transport (12 wheels)"),
    Variable("contract.transport_semi_2", "Transport (semi 2)", "Transport (semi 2)"),
    Variable("contract.transport_semi_3", "Transport (semi 3)", "Transport (semi 3)"),
    Variable("contract.spring_cleaning", "Nettoyage printanier", "Spring cleaning"),
    Variable("contract.payment_url", "URL: Paiement en ligne", "URL: Online payment", "link"),
    Variable("contract.visits_log_url", "URL: Log de visites", "URL: Visits log", "link"),
    Variable("contract.contract_pdf_url", "PDF: Contrat", "PDF: Contract", "link"),
    Variable("contract.statement_pdf_url", "PDF: État de compte", "PDF: Statement", "link"),
    Variable("contract.survey_url", "URL: Sondage", "URL: Survey", "link"),
    Variable(
        "contract.email_confirmation_url",
        "URL: Confirmation du courriel",
        "URL: Email confirmation",
        "link",
    ),
    Variable(
        "contract.service_opt_out_url",
        "URL: Demande de désengagement",
        "URL: Service opt-out request",
        "link",
    ),
    Variable(
        "contract.service_opt_in_url",
        "URL: Demande d'inscription",
        "URL: Service opt-in request",
        "link",
    ),
    # The Campaigns seed's customer fields, and the criteria fields.
    Variable("contract.contract_id", "Client (Référence)", "Customer reference"),
    Variable("contract.status", "Contrat (Statut)", "Contract status"),
    Variable("contract.building_type", "Type de bâtiment", "Building type"),
    Variable("contract.zone", "Zone", "Zone"),
    Variable("contract.season", "Saison", "Season"),
    Variable("contract.attributes", "Champ personnalisé", "Custom field"),
    Variable("recipient.address", "Destinataire (Courriel ou téléphone)", "Recipient address"),
    Variable("sender.name", "Expéditeur (Nom)", "Sender name"),
    Variable("sender.address", "Expéditeur (Courriel)", "Sender email"),
    Variable("today", "Date du jour", "Today's date", "date"),
    Variable("unsubscribe_url", "URL: Se désabonner", "URL: Unsubscribe", "link"),
)

DIFFUSIONS_SEED_VARIABLES = 24

# Link variables and the tenant's base URL each is built from (TenantSettings.links).
LINK_KINDS: dict[str, LinkKind] = {
    "statement_url": "statement",
    "payment_url": "payment",
    "visits_log_url": "visits_log",
    "contract_pdf_url": "contract_pdf",
    "statement_pdf_url": "statement_pdf",
    "survey_url": "survey",
    "email_confirmation_url": "email_confirmation",
    "service_opt_out_url": "service_opt_out",
    "service_opt_in_url": "service_opt_in",
}


def _fields() -> dict[str, frozenset[str]]:
    """Top-level names and the fields each allows (empty for a plain value such as `today`)."""
    fields: dict[str, set[str]] = {}
    for variable in CATALOGUE:
        top, _, rest = variable.name.partition(".")
        fields.setdefault(top, set())
        if rest:
            fields[top].add(rest)
    return {top: frozenset(names) for top, names in fields.items()}


FIELDS = _fields()
# `contract.attributes.<key>`: the platform's custom fields, any key.
OPEN_FIELDS = frozenset({("contract", "attributes")})


def sample_contract(language: Language) -> ContractSnapshot:
    """A synthetic contract with a value for every variable of the catalogue, for rendering a
    broadcast before any real contract is chosen (render_preview without a contract): as the
    creation check's trial render, it makes every variable printable; unlike it, the values
    read like a customer's. Only the tenant's settings can still be missing (a link's base
    URL)."""
    return ContractSnapshot(
        contract_id="SAMPLE-0001",
        number="SAMPLE-0001",
        status="active",
        building_type="residential",
        zone="nord",
        season="2026-2027",
        client_name="Camille Tremblay",
        service_address="1234, rue des Érables, Québec",
        language=language,
        balance=Decimal("1234.56"),
        amount_paid=Decimal("500.00"),
        details=ContractDetails(
            transaction_id="TX-000123",
            auth_code="A1B2C3",
            visit_at=datetime(2026, 11, 23, 14, 30, tzinfo=ZoneInfo("America/Toronto")),
            driver_name="Alex Gagnon",
            spreading="Inclus",
            transport_10_wheels="1 voyage",
            transport_12_wheels="1 voyage",
            transport_semi_2="2 voyages",
            transport_semi_3="2 voyages",
            spring_cleaning="Inclus",
        ),
    )


def main() -> None:
    json.dump([asdict(v) for v in CATALOGUE], sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
