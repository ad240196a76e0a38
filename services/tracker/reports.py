"""What a report learnt after the hand-over means for the tracker. Pure: no I/O."""

from dataclasses import dataclass
from typing import Literal
from uuid import UUID

from shared.events import DeliveryBounced, DeliveryComplained, DeliveryConfirmed

Report = DeliveryBounced | DeliveryComplained | DeliveryConfirmed
ReportKind = Literal["hard_bounce", "soft_bounce", "complaint", "confirmed"]


def kind_of(report: Report) -> ReportKind:
    if isinstance(report, DeliveryBounced):
        return "hard_bounce" if report.kind == "hard" else "soft_bounce"
    if isinstance(report, DeliveryComplained):
        return "complaint"
    return "confirmed"


def detail_of(report: Report) -> str:
    """A bounce's RFC 3463 status and diagnostic: the failure's detail, shown on its action."""
    if isinstance(report, DeliveryBounced):
        return f"{report.status} {report.diagnostic}".strip()
    if isinstance(report, DeliveryComplained):
        return report.feedback_type
    return ""


def once_each(reports: list[Report]) -> list[Report]:
    """One report per message and kind, the first one: one upsert never touches a row twice."""
    kept: dict[tuple[UUID, ReportKind], Report] = {}
    for report in reports:
        kept.setdefault((report.recipient_id, kind_of(report)), report)
    return list(kept.values())


@dataclass(frozen=True)
class Recorded:
    """A report new to the tracker (copies left out), for the metrics."""

    channel: str
    kind: ReportKind
