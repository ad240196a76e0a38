"""What every record shares: the `Record` base (and `RunPage`, several of one run's in one), and
the field types and validators of the contract (one-line and body text, ids, channel,
language, time zone, URL)."""

import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal, Protocol, Self, TypeVar, get_args, runtime_checkable
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

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


# Entries in one page record (`RunPage`): near 30 KB of recipients, 150 KB of rendered invoices.
PAGE_ENTRIES = 32


class _OfRun(Protocol):
    @property
    def tenant_id(self) -> str: ...

    @property
    def run_id(self) -> UUID: ...


class RunPage(Record):
    """Several records of one run in one Kafka record, each exactly as it would be alone. A
    record costs the producer, the broker and the consumer a fixed amount whatever its size
    (bench/README.md, "Issue 17, fifth pass"). A page never mixes runs, so whatever befalls
    it as a record (a dead letter, a replay) befalls one tenant's run."""

    tenant_id: str
    run_id: UUID

    def entries(self) -> Sequence[_OfRun]:
        raise NotImplementedError

    @model_validator(mode="after")
    def _one_run(self) -> Self:
        strays = sum(
            1 for e in self.entries() if e.run_id != self.run_id or e.tenant_id != self.tenant_id
        )
        if strays:
            raise ValueError(f"{strays} entries not of the page's run and tenant")
        return self


_E = TypeVar("_E")
_E_co = TypeVar("_E_co", covariant=True)


@runtime_checkable
class Paged(Protocol[_E_co]):
    def entries(self) -> Sequence[_E_co]: ...


def unpaged(records: Iterable[_E | Paged[_E]]) -> list[_E]:
    """What a consumer of a paged topic handles: every entry, pages opened, in order, so that
    each succeeds or fails on its own, as it would in a record of its own."""
    entries: list[_E] = []
    for record in records:
        if isinstance(record, Paged):
            entries.extend(record.entries())
        else:
            entries.append(record)
    return entries


def types_of(union: Any) -> frozenset[str]:
    """The `type` of every record model in `union`: what a decoder's `mine` admits, from the
    models themselves, so the set cannot drift from the union it decodes."""
    return frozenset(m.model_fields["type"].default for m in get_args(union))
