"""The reports a webhook learns, in the shape the intake takes, and the message they are about.

One place for what every provider's report must respect: the event's text limits, an RFC 3463
status or none, and how our Message-ID names its recipient. Pure.
"""

import re
from datetime import datetime
from typing import Any
from uuid import UUID

from shared.events import BounceKind, ReportSource

# ReportText's limit (shared/events/deliveries.py): a provider's diagnostic is cut, never
# refused, so that a long one cannot make its report unpublishable.
_TEXT_LIMIT = 1000
# RFC 3463: class.subject.detail.
_STATUS = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")
# RFC 3463's "other undefined status" of each class: an SMS failure whose provider says no more
# than whether the number is at fault.
PERMANENT = "5.0.0"
TRANSIENT = "4.0.0"


def text(value: object) -> str:
    """`value` as report text: a string, cut to the event's limit; anything else is empty."""
    if not isinstance(value, str):
        return ""
    return value if len(value) <= _TEXT_LIMIT else value[: _TEXT_LIMIT - 1] + "…"


def status(value: object) -> str:
    """An RFC 3463 status code (`5.1.1`) found at the start of `value`, or empty."""
    if not isinstance(value, str):
        return ""
    code = value.strip().split(" ", 1)[0]
    return code if _STATUS.match(code) else ""


def recipient_of_message_id(value: object) -> UUID | None:
    """The recipient id our Message-ID carries (`<{recipient_id}@{domain}>`, with or without the
    angle brackets); None for any other Message-ID."""
    if not isinstance(value, str):
        return None
    local, at, _ = value.strip().removeprefix("<").removesuffix(">").partition("@")
    if not at:
        return None
    try:
        return UUID(local)
    except ValueError:
        return None


def bounced(
    kind: BounceKind, code: str, diagnostic: str, source: ReportSource, at: datetime
) -> dict[str, Any]:
    return {
        "type": "delivery.bounced",
        "kind": kind,
        "status": status(code),
        "diagnostic": text(diagnostic),
        "source": source,
        "reported_at": at,
    }


def sms_failed(status: str, diagnostic: str, at: datetime) -> dict[str, Any]:
    """An SMS that did not reach the handset: a hard bounce, since this message failed, whose
    RFC 3463 `status` says whether its number is at fault (5.x.x, suppressed at once) or may take
    the next message (4.x.x, counted in the number's soft-bounce streak instead)."""
    return bounced("hard", status, diagnostic, "sms_gateway", at)


def complained(feedback_type: str, source: ReportSource, at: datetime) -> dict[str, Any]:
    return {
        "type": "delivery.complained",
        "feedback_type": text(feedback_type) or "abuse",
        "source": source,
        "reported_at": at,
    }


def confirmed(source: ReportSource, at: datetime) -> dict[str, Any]:
    return {"type": "delivery.confirmed", "source": source, "reported_at": at}


def replied(reply: str, at: datetime) -> dict[str, Any]:
    return {"type": "delivery.replied", "text": text(reply), "reported_at": at}
