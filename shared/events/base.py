"""What every record shares: the `Record` base, and the field types and validators of the
contract (one-line and body text, ids, channel, language, time zone, URL)."""

import re
from datetime import datetime
from typing import Annotated, Any, Literal, get_args
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from shared.clock import utc_now

# Characters no field of a command may hold: control characters (C0, DEL, C1) and lone
# surrogates, which PostgreSQL refuses (NUL) or no UTF-8 encoder can write. A line (a name, a
# subject, an address, an id) holds no line break of any kind either, Unicode's included: a
# header or a log line must not be split. A body keeps tab, line feed and carriage return.
# One regular expression each rather than a loop over the characters: a 100 KB body is checked
# in 0.5 ms instead of 8 to 10 ms (bench/README.md, "Kafka path": decoding per record).
_REFUSED_IN_LINE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029]")
_REFUSED_IN_BODY = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\u2028\u2029]")


def _refused(value: str, refused: re.Pattern[str]) -> str | None:
    found = refused.search(value)
    return None if found is None else f"U+{ord(found.group()):04X}"


def _line(value: str) -> str:
    refused = _refused(value, _REFUSED_IN_LINE)
    if refused:
        raise ValueError(f"must be one line of printable characters, not {refused}")
    return value


def _body(value: str) -> str:
    refused = _refused(value, _REFUSED_IN_BODY)
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


def types_of(union: Any) -> frozenset[str]:
    """The `type` of every record model in `union`: what a decoder's `mine` admits, from the
    models themselves, so the set cannot drift from the union it decodes."""
    return frozenset(m.model_fields["type"].default for m in get_args(union))
