"""What every record shares: the `Record` base, and the field types and validators of the
contract (one-line and body text, ids, channel, language, time zone, URL)."""

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from shared.clock import utc_now

# Characters no field of a command may hold: control characters (C0, DEL, C1) and lone
# surrogates, which PostgreSQL refuses (NUL) or no UTF-8 encoder can write. A line (a name, a
# subject, an address, an id) holds no line break of any kind either, Unicode's included: a
# header or a log line must not be split. A body keeps tab, line feed and carriage return.
_LINE_BREAKS = "\u2028\u2029"


def _refused(value: str, allowed: str) -> str | None:
    for char in value:
        code = ord(char)
        if char in allowed:
            continue
        if code < 0x20 or 0x7F <= code < 0xA0 or 0xD800 <= code < 0xE000 or char in _LINE_BREAKS:
            return f"U+{code:04X}"
    return None


def _line(value: str) -> str:
    refused = _refused(value, "")
    if refused:
        raise ValueError(f"must be one line of printable characters, not {refused}")
    return value


def _body(value: str) -> str:
    refused = _refused(value, "\t\n\r")
    if refused:
        raise ValueError(f"must hold printable characters, tab and line breaks only, not {refused}")
    return value


OneLine = AfterValidator(_line)
Body = AfterValidator(_body)


Channel = Literal["email", "sms"]
Language = Literal["fr", "en"]
TenantId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
]
RequestId = Annotated[str, StringConstraints(min_length=1, max_length=128), OneLine]
UserId = Annotated[str, StringConstraints(min_length=1, max_length=256), OneLine]
ContractId = Annotated[str, StringConstraints(min_length=1, max_length=128), OneLine]
Text = Annotated[str, StringConstraints(max_length=100_000), Body]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200), OneLine]
Address = Annotated[str, StringConstraints(min_length=3, max_length=254), OneLine]
TemplateId = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")
]


def _known_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone '{name}'") from None
    return name


TimeZone = Annotated[str, AfterValidator(_known_zone)]
HttpUrl = Annotated[
    str, StringConstraints(max_length=2000, pattern=r"^https?://[^\s]+$"), AfterValidator(_line)
]


class Record(BaseModel):
    """Fields every record on the wire carries."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_version: Literal[1] = 1
    event_id: UUID = Field(default_factory=uuid4)
    occurred_at: datetime = Field(default_factory=utc_now)
