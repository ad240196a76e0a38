"""From contracts to recipients: one recipient per usable address and enabled channel, and a
`no_contact` failure for a contract with none; a waiting message's recipient again, as its
contract stands now. Pure."""

import json
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Protocol
from uuid import UUID

from pydantic_core import to_json

from shared.events import (
    Channel,
    ContactPoint,
    ContractDetails,
    ContractFields,
    ContractSnapshot,
    DeliveryFailed,
    RecipientsTargeted,
    RecipientTargeted,
    RefreshDeclined,
    RefreshRequested,
)
from shared.ids import event_id_for, random_ids, recipient_id_for, recipient_key_for
from shared.pages import Keyed, pages

from .suppression import normalised

# A suppressed address: its channel and normalised address.
SuppressedKey = tuple[Channel, str]


class Row(Protocol):
    """A contract row by column name: an asyncpg Record in the service, a dict in tests."""

    def __getitem__(self, key: str, /) -> Any: ...


@dataclass(frozen=True)
class RunScope:
    tenant_id: str
    broadcast_id: UUID
    run_id: UUID
    channels: Sequence[Channel]


class Targeted(NamedTuple):
    """One recipient of a page, as published: what a resend filters on, and its record.
    (A tuple: a frozen dataclass costs 1 µs more per recipient to build.)"""

    contract_id: str
    channel: Channel
    address: str
    # The record's key (the recipient id) and value: the very bytes of
    # `RecipientTargeted.model_dump_json()` for this recipient (`test_audience.py` checks).
    key: bytes
    value: bytes


@dataclass
class Expansion:
    """A page of contracts as messages: `recipients` go to the composer; `no_contact` are the
    failed messages of the contracts with no usable address, one each, which go straight to
    the tracker (nothing can be rendered or sent for them). Both count in the run's total."""

    recipients: list[Targeted] = field(default_factory=list)
    no_contact: list[DeliveryFailed] = field(default_factory=list)
    contracts: int = 0

    @property
    def unreachable_contracts(self) -> int:
        return len(self.no_contact)

    @property
    def messages(self) -> int:
        """The run's messages this page adds: `messages_targeted` counts both kinds."""
        return len(self.recipients) + len(self.no_contact)

    def only(self, keep: Container[tuple[str, str, str]], reached: Container[str]) -> "Expansion":
        """A resend to the previous run's failures: the recipients whose (contract, channel,
        address) is in `keep`, and every recipient of the contracts in `reached` (they had no
        address then). A contract still without one is left out, not failed again; contracts
        left without any recipient do not count."""
        kept = [
            r
            for r in self.recipients
            if (r.contract_id, r.channel, r.address) in keep or r.contract_id in reached
        ]
        return Expansion(kept, contracts=len({r.contract_id for r in kept}))


def usable_addresses(points: Iterable[Mapping[str, Any]]) -> list[str]:
    """Addresses neither opted out nor suppressed, each once (compared case-insensitively), in
    the order given."""
    seen: set[str] = set()
    usable = []
    for point in points:
        address = str(point["address"]).strip()
        unusable = point.get("opted_out") or point.get("suppressed") or not address
        if unusable or address.lower() in seen:
            continue
        seen.add(address.lower())
        usable.append(address)
    return usable


def with_opt_outs(contract: ContractFields, opted_out: set[tuple[Channel, str]]) -> ContractFields:
    """The contract with every address its owner unsubscribed (`(channel, lower-cased address)`)
    marked opted out, whatever the platform sent."""

    def marked(channel: Channel, points: list[ContactPoint]) -> list[ContactPoint]:
        return [
            p.model_copy(update={"opted_out": True})
            if (channel, p.address.strip().lower()) in opted_out
            else p
            for p in points
        ]

    return contract.model_copy(
        update={
            "emails": marked("email", contract.emails),
            "phones": marked("sms", contract.phones),
        }
    )


def points_json(
    channel: Channel, points: list[ContactPoint], suppressed: set[SuppressedKey]
) -> str:
    """The points as the contracts table keeps them: each suppressed one (`(channel, normalised
    address)`) flagged, a flag the platform's contract does not carry (targeting decides it)."""
    return json.dumps(
        [
            p.model_dump()
            | ({"suppressed": True} if (channel, normalised(p.address)) in suppressed else {})
            for p in points
        ]
    )


def _points(row: Row, channel: Channel) -> list[Mapping[str, Any]]:
    points: list[Mapping[str, Any]] = row["emails"] if channel == "email" else row["phones"]
    return points


def reachable(row: Row, channels: Sequence[Channel]) -> list[tuple[Channel, str]]:
    """(channel, address) of every message a contract gets: one rule for estimates and runs."""
    return [
        (channel, address)
        for channel in channels
        for address in usable_addresses(_points(row, channel))
    ]


@dataclass
class Estimate:
    contracts: int = 0
    unreachable_contracts: int = 0
    messages: dict[Channel, int] = field(default_factory=dict)
    opted_out_addresses: dict[Channel, int] = field(default_factory=dict)
    suppressed_addresses: dict[Channel, int] = field(default_factory=dict)

    def add(self, channels: Sequence[Channel], rows: Iterable[Row]) -> None:
        """Count a page of matching contracts exactly as `expand` turns them into messages."""
        for row in rows:
            self.contracts += 1
            targets = reachable(row, channels)
            if not targets:
                self.unreachable_contracts += 1
            for channel, _ in targets:
                self.messages[channel] = self.messages.get(channel, 0) + 1
            for channel in channels:
                points = _points(row, channel)
                opted_out = sum(1 for p in points if p.get("opted_out"))
                # An address both opted out and suppressed counts once, as opted out.
                suppressed = sum(
                    1 for p in points if p.get("suppressed") and not p.get("opted_out")
                )
                self.opted_out_addresses[channel] = (
                    self.opted_out_addresses.get(channel, 0) + opted_out
                )
                self.suppressed_addresses[channel] = (
                    self.suppressed_addresses.get(channel, 0) + suppressed
                )


def snapshot(row: Row) -> ContractSnapshot:
    return ContractSnapshot(
        contract_id=row["contract_id"],
        number=row["number"],
        status=row["status"],
        building_type=row["building_type"],
        zone=row["zone"],
        season=row["season"],
        client_name=row["client_name"],
        service_address=row["service_address"],
        language=row["language"],
        balance=row["balance"],
        amount_paid=row["amount_paid"],
        details=row["details"],
        attributes=row["attributes"],
    )


def no_contact(scope: RunScope, contract_id: str) -> DeliveryFailed:
    """The one failed message of a contract with no usable address: on the run's first
    channel, so that "send" on its action with a corrected address sends it there."""
    channel = scope.channels[0]
    recipient_id = recipient_id_for(scope.run_id, contract_id, channel, "")
    return DeliveryFailed(
        event_id=event_id_for(recipient_id, "no_contact"),
        tenant_id=scope.tenant_id,
        broadcast_id=scope.broadcast_id,
        run_id=scope.run_id,
        recipient_id=recipient_id,
        contract_id=contract_id,
        channel=channel,
        address="",
        reason="no_contact",
        detail=f"no usable address for {' or '.join(scope.channels)}",
    )


def expand(scope: RunScope, rows: Iterable[Row], now: datetime) -> Expansion:
    """The page's messages, each recipient targeted at `now`."""
    result = Expansion()
    write = _RecordWriter(scope, now)
    for row in rows:
        result.contracts += 1
        targets = reachable(row, scope.channels)
        if not targets:
            result.no_contact.append(no_contact(scope, row["contract_id"]))
            continue
        contract_id: str = row["contract_id"]
        contract = _snapshot_json(row)
        for channel, address in targets:
            key = recipient_key_for(scope.run_id, contract_id, channel, address).encode()
            result.recipients.append(
                Targeted(contract_id, channel, address, key, write(key, channel, address, contract))
            )
    return result


# The snapshot of a contract with no details, as pydantic writes it: most contracts.
_NO_DETAILS = ContractDetails()
_SNAPSHOT_FIELDS = tuple(name for name in ContractSnapshot.model_fields if name != "details")


def _snapshot_json(row: Row) -> bytes:
    """`ContractSnapshot` of the row, as JSON, without building the model: the row was
    validated as `ContractFields` when stored, and the columns are NOT NULL of the same types;
    only the details (free JSON in the table, and a datetime) go through their model."""
    fields = {name: row[name] for name in _SNAPSHOT_FIELDS}
    details = row["details"]
    fields["details"] = ContractDetails.model_validate(details) if details else _NO_DETAILS
    # The model's field order: details comes before attributes.
    fields["attributes"] = fields.pop("attributes")
    return to_json(fields)


class _RecordWriter:
    """`RecipientTargeted(...).model_dump_json()` without the model, for one run's page.

    A model per recipient and its serialisation were most of targeting's CPU per message; here
    the parts shared by the page are written once and each recipient's are spliced in, through
    pydantic's own JSON encoder (`to_json`), so every value is escaped exactly as the model
    would. The event id stays random per record, as the model's default makes it."""

    def __init__(self, scope: RunScope, now: datetime) -> None:
        self._event_ids = random_ids()
        self._head = b'{"schema_version":1,"event_id":"'
        self._run = b"".join(
            (
                b'","occurred_at":',
                to_json(now),
                b',"type":"recipient.targeted","tenant_id":',
                to_json(scope.tenant_id),
                b',"broadcast_id":"',
                str(scope.broadcast_id).encode(),
                b'","run_id":"',
                str(scope.run_id).encode(),
                b'","recipient_id":"',
            )
        )

    def __call__(self, key: bytes, channel: Channel, address: str, contract: bytes) -> bytes:
        return b"".join(
            (
                self._head,
                next(self._event_ids).encode(),
                self._run,
                key,
                b'","channel":',
                to_json(channel),
                b',"address":',
                to_json(address),
                b',"contract":',
                contract,
                b',"rendition":0}',
            )
        )


def in_records(scope: RunScope, now: datetime, recipients: Sequence[Targeted]) -> Iterator[Keyed]:
    """The recipients as `recipients.targeted` pages, in order, as (key, value)."""
    return pages(
        RecipientsTargeted,
        scope.tenant_id,
        scope.run_id,
        now,
        [(r.key, r.value) for r in recipients],
    )


def rendered_again(
    request: RefreshRequested, row: Row | None, *, address_given: bool
) -> RecipientTargeted | RefreshDeclined:
    """The recipient of a waiting message with its contract's current values, as the rendition
    the dispatcher asked for; declined when the contract was deleted meanwhile, or the address
    is no longer one it may be sent to (removed, opted out). `address_given`: a person gave
    the address (a manual action's follow-up), the contract need not list it."""
    if row is None:
        return _declined(request, "the contract was deleted while the message waited")
    usable = {a.lower() for a in usable_addresses(_points(row, request.channel))}
    if not address_given and request.address.strip().lower() not in usable:
        return _declined(
            request, f"{request.address} stopped being a usable address of the contract"
        )
    return RecipientTargeted(
        event_id=event_id_for(request.recipient_id, f"rendition-{request.rendition}"),
        tenant_id=request.tenant_id,
        broadcast_id=request.broadcast_id,
        run_id=request.run_id,
        recipient_id=request.recipient_id,
        channel=request.channel,
        address=request.address,
        contract=snapshot(row),
        rendition=request.rendition,
    )


def _declined(request: RefreshRequested, detail: str) -> RefreshDeclined:
    return RefreshDeclined(
        **request.ref(),
        event_id=event_id_for(request.recipient_id, f"declined-{request.rendition}"),
        rendition=request.rendition,
        detail=detail,
    )
