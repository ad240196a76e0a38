"""The values one recipient's templates see, named as in `shared.variables`. Pure.

Amounts and dates are objects that print in the message's language and still compare in a
template (`{% if contract.balance > 0 %}`). Links are signed only when a template prints them:
most messages use one or two of the nine.
"""

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from shared import links
from shared.events import Language, LinkKind, RecipientTargeted, RunStarted
from shared.templating import Missing, fields_only, missing
from shared.variables import LINK_KINDS

from .formatting import Moment, Money, date


@dataclass(frozen=True)
class LinkKeys:
    """What signing a link needs besides the recipient: the master secret, the unsubscribe page
    and how many days an unsubscribe link works (the other links: the tenant's settings)."""

    secret: bytes
    unsubscribe_url: str
    unsubscribe_days: int


class Link:
    """A signed link, computed when first printed."""

    __slots__ = ("_base", "_claims", "_secret", "_url")

    def __init__(self, base: str, claims: links.LinkClaims, secret: bytes) -> None:
        self._base = base
        self._claims = claims
        self._secret = secret
        self._url: str | None = None

    def __str__(self) -> str:
        if self._url is None:
            self._url = links.with_token(self._base, links.sign(self._secret, self._claims))
        return self._url


class Attributes(dict[str, str]):
    """The platform's custom fields: an absent one is a missing value, named."""

    def __missing__(self, key: str) -> Missing:
        return missing(f"contract.attributes.{key}")


def _text(value: str | None, name: str) -> str | Missing:
    return value if value else missing(f"contract.{name}")


@dataclass(frozen=True)
class RunValues:
    """What every recipient of one run shares: computed once per run and language."""

    run: RunStarted
    zone: ZoneInfo
    keys: LinkKeys


def unsubscribe_link(values: RunValues, recipient: RecipientTargeted, expires_at: int) -> Link:
    claims = links.LinkClaims(
        tenant_id=recipient.tenant_id,
        contract_id=recipient.contract.contract_id,
        purpose=f"unsubscribe:{recipient.channel}",
        address=recipient.address,
        expires_at=expires_at,
    )
    return Link(values.keys.unsubscribe_url, claims, values.keys.secret)


def expiry(now: datetime, days: int) -> int:
    return int(now.timestamp()) + days * 86_400


@fields_only
class ContractValues:
    """`contract.*` for one recipient, each computed on first use: a template prints a handful
    of the thirty, and building them all cost more than rendering the message."""

    __slots__ = ("_cache", "_expires_at", "_language", "_recipient", "_values")

    def __init__(
        self,
        values: RunValues,
        recipient: RecipientTargeted,
        language: Language,
        expires_at: int,
    ) -> None:
        self._values = values
        self._recipient = recipient
        self._language = language
        self._expires_at = expires_at
        self._cache: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        # jinja2 reads `contract.number` as `contract["number"]` (no such attribute); an
        # unknown name raises KeyError, which jinja2 turns into an undefined-variable error.
        cache = self._cache
        if name in cache:  # not try/except: a first read would raise and catch every time
            return cache[name]
        value = cache[name] = _CONTRACT[name](self)
        return value

    def _money(self, amount: Decimal) -> Money:
        return Money(amount, self._language)

    def _visit(self) -> Moment | Missing:
        at = self._recipient.contract.details.visit_at
        if at is None:
            return missing("contract.visit_at")
        return Moment(at, self._language, self._values.zone)

    def _link(self, variable: str, kind: LinkKind) -> Link | Missing:
        base = self._values.run.settings.links.get(kind)
        if not base:
            return missing(f"contract.{variable}", ": the tenant has no base URL for these links")
        contract_id = self._recipient.contract.contract_id
        claims = links.LinkClaims(
            self._recipient.tenant_id, contract_id, kind, None, self._expires_at
        )
        return Link(base, claims, self._values.keys.secret)


def _snapshot_text(name: str) -> Callable[[ContractValues], str | Missing]:
    return lambda v: _text(getattr(v._recipient.contract, name), name)


def _detail_text(name: str) -> Callable[[ContractValues], str | Missing]:
    return lambda v: _text(getattr(v._recipient.contract.details, name), name)


def _link_of(variable: str, kind: LinkKind) -> Callable[[ContractValues], Link | Missing]:
    return lambda v: v._link(variable, kind)


_CONTRACT: dict[str, Callable[[ContractValues], Any]] = {
    **{
        name: _snapshot_text(name)
        for name in (
            "service_address",
            "number",
            "client_name",
            "status",
            "building_type",
            "zone",
            "season",
        )
    },
    **{
        name: _detail_text(name)
        for name in (
            "transaction_id",
            "auth_code",
            "driver_name",
            "spreading",
            "transport_10_wheels",
            "transport_12_wheels",
            "transport_semi_2",
            "transport_semi_3",
            "spring_cleaning",
        )
    },
    **{variable: _link_of(variable, kind) for variable, kind in LINK_KINDS.items()},
    "contract_id": lambda v: v._recipient.contract.contract_id,
    "balance": lambda v: v._money(v._recipient.contract.balance),
    "amount_paid": lambda v: v._money(v._recipient.contract.amount_paid),
    "visit_at": lambda v: v._visit(),
    "attributes": lambda v: Attributes(v._recipient.contract.attributes),
}


@functools.lru_cache(maxsize=64)
def _today(now: datetime, zone: ZoneInfo, language: Language) -> str:
    # The same for every message of a batch (they share `now`): computed once per batch.
    return date(now.astimezone(zone), language)


def context(
    values: RunValues, recipient: RecipientTargeted, language: Language, now: datetime
) -> dict[str, Any]:
    run = values.run
    expires_at = expiry(now, run.settings.link_validity_days)
    return {
        "contract": ContractValues(values, recipient, language, expires_at),
        "recipient": {"address": recipient.address},
        "sender": {
            "name": run.sender.name or missing("sender.name"),
            "address": run.sender.address,
        },
        "today": _today(now, values.zone, language),
        "unsubscribe_url": unsubscribe_link(
            values, recipient, expiry(now, values.keys.unsubscribe_days)
        ),
    }
