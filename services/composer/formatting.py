"""Amounts and dates as a Canadian reader expects them, in French (fr-CA) or English (en-CA). Pure.

Hand-written rather than through a locale or CLDR library: only two languages and three shapes
are needed, `locale` is process-global (not safe with concurrent renders) and this runs for every
message.
"""

import datetime as dt
import functools
from decimal import ROUND_HALF_UP, Context, Decimal
from zoneinfo import ZoneInfo

from shared.events import Language

# CLDR fr-CA separates thousands and the currency sign with a no-break space, so a line never
# wraps inside an amount.
_NBSP = "\u00a0"
_CENT = Decimal("0.01")
# Our own context: the default one (28 digits) would refuse to quantize a very large amount, and
# the caller's thread context must not change how money prints.
_CONTEXT = Context(prec=200, rounding=ROUND_HALF_UP)

_MONTHS: dict[Language, tuple[str, ...]] = {
    "fr": (
        "janvier",
        "février",
        "mars",
        "avril",
        "mai",
        "juin",
        "juillet",
        "août",
        "septembre",
        "octobre",
        "novembre",
        "décembre",
    ),
    "en": (
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ),
}


def money(amount: Decimal, language: Language) -> str:
    """Two decimals rounded half up: fr "1 234,56 $" (no-break spaces), en "$1,234.56".

    A negative amount starts with "-" ("-1 234,56 $", "-$1,234.56"); one that rounds to zero
    prints without a sign. Raises ValueError for NaN and infinities."""
    if not amount.is_finite():
        raise ValueError(f"not an amount: {amount}")
    cents = amount.quantize(_CENT, context=_CONTEXT)
    # copy_abs, not abs(): abs() would round to the thread's context precision.
    digits = format(cents.copy_abs(), ",.2f")
    sign = "-" if cents < 0 else ""
    if language == "fr":
        return f"{sign}{digits.replace(',', _NBSP).replace('.', ',')}{_NBSP}$"
    return f"{sign}${digits}"


def _day_month_year(day: dt.date, language: Language) -> str:
    month = _MONTHS[language][day.month - 1]
    if language == "fr":
        # French writes the first of the month as an ordinal: "1er décembre".
        return f"{'1er' if day.day == 1 else day.day} {month} {day.year}"
    return f"{month} {day.day}, {day.year}"


def _clock(moment: dt.datetime, language: Language) -> str:
    if language == "fr":
        return f"{moment.hour} h {moment.minute:02d}"
    return f"{moment.hour % 12 or 12}:{moment.minute:02d} {'AM' if moment.hour < 12 else 'PM'}"


def _local(moment: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    # A naive datetime could be UTC or local time: guessing would shift appointments by hours.
    if moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment.isoformat()}: give it a time zone")
    return moment.astimezone(zone)


def date_time(moment: dt.datetime, language: Language, zone: ZoneInfo) -> str:
    """`moment` as seen in `zone`: fr "23 novembre 2026 à 14 h 30", en "November 23, 2026 at
    2:30 PM". Raises ValueError for a naive datetime."""
    local = _local(moment, zone)
    joint = "à" if language == "fr" else "at"
    return f"{_day_month_year(local, language)} {joint} {_clock(local, language)}"


def date(day: dt.datetime | dt.date, language: Language) -> str:
    """fr "23 novembre 2026" ("1er décembre 2026"), en "November 23, 2026".

    A datetime is taken as it is, without conversion: convert it to the reader's zone first."""
    return _day_month_year(day, language)


@functools.total_ordering
class Money:
    """An amount a template can both print (in its language) and compare (on the amount).

    Equal to, and ordered against, Money, Decimal, int and float by amount alone."""

    __slots__ = ("_text", "amount", "language")

    def __init__(self, amount: Decimal, language: Language) -> None:
        self.amount = amount
        self.language = language
        self._text: str | None = None

    def __str__(self) -> str:
        # Kept: a message prints its amounts in both its HTML and its text part.
        if self._text is None:
            self._text = money(self.amount, self.language)
        return self._text

    def __repr__(self) -> str:
        return f"Money({self.amount!r}, {self.language!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Money):
            return self.amount == other.amount
        if isinstance(other, Decimal | int | float):
            return self.amount == other
        return NotImplemented

    def __lt__(self, other: object) -> bool:
        if isinstance(other, Money):
            return self.amount < other.amount
        if isinstance(other, Decimal | int | float):
            return self.amount < other
        return NotImplemented

    # Equal to the Decimal it holds, so it must hash like it.
    def __hash__(self) -> int:
        return hash(self.amount)


@functools.total_ordering
class Moment:
    """A point in time a template can print in the reader's zone and language, and compare.

    `at` is the moment converted to the zone; `date` and `time` are its two halves as text.
    Raises ValueError for a naive datetime."""

    __slots__ = ("at", "language", "zone")

    def __init__(self, moment: dt.datetime, language: Language, zone: ZoneInfo) -> None:
        self.at = _local(moment, zone)
        self.language = language
        self.zone = zone

    def __str__(self) -> str:
        return date_time(self.at, self.language, self.zone)

    def __repr__(self) -> str:
        return f"Moment({self.at!r}, {self.language!r}, {self.zone!r})"

    @property
    def date(self) -> str:
        """fr "23 novembre 2026", en "November 23, 2026"."""
        return _day_month_year(self.at, self.language)

    @property
    def time(self) -> str:
        """fr "14 h 30", en "2:30 PM"."""
        return _clock(self.at, self.language)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Moment):
            return self.at == other.at
        if isinstance(other, dt.datetime):
            return self.at == other
        return NotImplemented

    def __lt__(self, other: object) -> bool:
        if isinstance(other, Moment):
            return self.at < other.at
        if isinstance(other, dt.datetime):
            return self.at < other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.at)
