"""Building the RFC 5322 / MIME message of one email. Pure."""

from datetime import datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from uuid import UUID


class HeaderInjection(ValueError):
    """A rendered header value carried a line break."""


def message_id(recipient_id: UUID, sender_address: str) -> str:
    """Deterministic: the same recipient always gets the same Message-ID, even when re-rendered."""
    domain = sender_address.rpartition("@")[2] or "localhost"
    return f"<{recipient_id}@{domain}>"


def _header(value: str, name: str) -> str:
    if "\r" in value or "\n" in value:
        raise HeaderInjection(f"{name} contains a line break")
    return value


def build_email(
    *,
    recipient_id: UUID,
    sender_address: str,
    sender_name: str,
    reply_to: str | None,
    to: str,
    subject: str,
    text: str,
    html: str,
    sent_at: datetime,
) -> str:
    """The whole message, 7-bit clean (quoted-printable bodies, encoded-word headers)."""
    message = EmailMessage(policy=policy.SMTP)
    local, _, domain = sender_address.partition("@")
    message["From"] = Address(
        display_name=_header(sender_name, "From"), username=local, domain=domain
    )
    message["To"] = _header(to, "To")
    if reply_to:
        message["Reply-To"] = _header(reply_to, "Reply-To")
    message["Subject"] = _header(subject, "Subject")
    message["Date"] = format_datetime(sent_at)
    message["Message-ID"] = message_id(recipient_id, sender_address)
    message.set_content(text, cte="quoted-printable")
    message.add_alternative(html, subtype="html", cte="quoted-printable")
    return message.as_bytes().decode("ascii")
