"""What an address must look like to be usable on its channel: one rule for every service that
accepts an address from a person (targeting's previews and settings, the tracker's actions)."""

import re

from shared.events import Channel

# One mailbox as a header takes it, `local@domain.tld`: nothing that would make a list or a
# display name of it (a comma, a semicolon, angle brackets, quotes, parentheses, a space).
_LABEL = r"[^@\s,;<>\"()\[\].]+"
_MAILBOX = re.compile(rf"^[^@\s,;<>\"()\[\]]+@{_LABEL}(\.{_LABEL})+$")
# E.164, what SMS gateways take.
_PHONE = re.compile(r"^\+[1-9][0-9]{6,14}$")


def is_mailbox(value: str) -> bool:
    return _MAILBOX.match(value) is not None


def unusable_on(channel: Channel, address: str) -> str | None:
    """Why `address` cannot be used on `channel`, in a few words; None when it can."""
    if channel == "email":
        return None if is_mailbox(address) else f"'{address}' is not an email address"
    return None if _PHONE.match(address) else f"'{address}' is not an E.164 phone number"
