"""The report intake (services/dispatcher/intake.py): a finding about a message of ours becomes
its report, with the identity the ledger holds; one about an unknown id is left out."""

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

from services.dispatcher.intake import Finding, Intake
from shared.events import DeliveryBounced, DeliveryReport

KNOWN, UNKNOWN = uuid4(), uuid4()
ROW = {
    "recipient_id": KNOWN,
    "run_id": uuid4(),
    "tenant_id": "acme",
    "broadcast_id": uuid4(),
    "contract_id": "C-1",
    "channel": "email",
    "address": "client@example.org",
}


class Ledger:
    """The one query the intake makes, answered from ROW."""

    async def fetch(self, query: str, ids: list[UUID]) -> list[dict[str, Any]]:
        assert "dispatcher.deliveries" in query
        return [ROW] if KNOWN in ids else []


async def test_a_finding_becomes_its_report_with_the_ledgers_identity() -> None:
    published: list[DeliveryReport] = []

    async def publish(reports: Sequence[DeliveryReport]) -> None:
        published.extend(reports)

    intake = Intake(lambda: Ledger(), publish)  # type: ignore[arg-type, return-value]
    bounce = {
        "type": "delivery.bounced",
        "kind": "hard",
        "status": "5.1.1",
        "source": "dsn",
        "reported_at": datetime(2026, 12, 3, tzinfo=UTC),
    }
    reports = await intake.take([Finding(KNOWN, bounce), Finding(UNKNOWN, bounce)])
    assert published == reports
    [report] = reports
    assert isinstance(report, DeliveryBounced)
    assert (report.tenant_id, report.address, report.status) == ("acme", ROW["address"], "5.1.1")


async def test_nothing_known_publishes_nothing() -> None:
    async def publish(reports: Sequence[DeliveryReport]) -> None:
        raise AssertionError("nothing to publish")

    intake = Intake(lambda: Ledger(), publish)  # type: ignore[arg-type, return-value]
    assert await intake.take([Finding(UNKNOWN, {"type": "delivery.confirmed"})]) == []
    assert await intake.take([]) == []
