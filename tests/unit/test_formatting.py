import operator
from datetime import UTC, datetime, timedelta, timezone
from datetime import date as Date
from decimal import Decimal
from typing import Protocol
from uuid import uuid4
from zoneinfo import ZoneInfo

import pytest
from jinja2 import StrictUndefined, Template
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from services.composer.context import Link, LinkKeys
from services.composer.formatting import Moment, Money, date, date_time, money
from services.composer.render import compile_run
from shared.events import RunStarted
from shared.links import LinkClaims

NBSP = "\u00a0"
TORONTO = ZoneInfo("America/Toronto")


@pytest.mark.parametrize(
    ("amount", "fr", "en"),
    [
        ("1234.56", f"1{NBSP}234,56{NBSP}$", "$1,234.56"),
        ("-1234.56", f"-1{NBSP}234,56{NBSP}$", "-$1,234.56"),
        ("0", f"0,00{NBSP}$", "$0.00"),
        ("0.005", f"0,01{NBSP}$", "$0.01"),
        ("0.015", f"0,02{NBSP}$", "$0.02"),  # half up, not half even
        ("2.675", f"2,68{NBSP}$", "$2.68"),
        ("-0.005", f"-0,01{NBSP}$", "-$0.01"),
        ("0.004", f"0,00{NBSP}$", "$0.00"),
        ("-0.004", f"0,00{NBSP}$", "$0.00"),  # rounds to zero: no sign
        ("1234567.89", f"1{NBSP}234{NBSP}567,89{NBSP}$", "$1,234,567.89"),
        ("999.999", f"1{NBSP}000,00{NBSP}$", "$1,000.00"),
        ("12", f"12,00{NBSP}$", "$12.00"),
        ("1E+3", f"1{NBSP}000,00{NBSP}$", "$1,000.00"),
        ("123456789012345678901234567890.12", None, "$123,456,789,012,345,678,901,234,567,890.12"),
    ],
)
def test_money(amount: str, fr: str | None, en: str) -> None:
    if fr is not None:
        assert money(Decimal(amount), "fr") == fr
    assert money(Decimal(amount), "en") == en


def test_money_refuses_what_is_not_an_amount() -> None:
    for value in ("NaN", "Infinity", "-Infinity"):
        with pytest.raises(ValueError, match="not an amount"):
            money(Decimal(value), "fr")


FRENCH_MONTHS = [
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
]
ENGLISH_MONTHS = [
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
]


@pytest.mark.parametrize("month", range(1, 13))
def test_every_month_in_both_languages(month: int) -> None:
    day = Date(2026, month, 23)
    assert date(day, "fr") == f"23 {FRENCH_MONTHS[month - 1]} 2026"
    assert date(day, "en") == f"{ENGLISH_MONTHS[month - 1]} 23, 2026"


def test_date() -> None:
    assert date(Date(2026, 11, 23), "fr") == "23 novembre 2026"
    assert date(Date(2026, 12, 1), "fr") == "1er décembre 2026"
    assert date(Date(2026, 12, 2), "fr") == "2 décembre 2026"
    assert date(Date(2026, 12, 1), "en") == "December 1, 2026"
    # A datetime is taken as given: its own calendar day, no conversion.
    assert date(datetime(2026, 11, 23, 23, 59, tzinfo=UTC), "en") == "November 23, 2026"


def test_date_time() -> None:
    moment = datetime(2026, 11, 23, 14, 30, tzinfo=TORONTO)
    assert date_time(moment, "fr", TORONTO) == "23 novembre 2026 à 14 h 30"
    assert date_time(moment, "en", TORONTO) == "November 23, 2026 at 2:30 PM"
    first = datetime(2026, 12, 1, 9, 5, tzinfo=TORONTO)
    assert date_time(first, "fr", TORONTO) == "1er décembre 2026 à 9 h 05"
    assert date_time(first, "en", TORONTO) == "December 1, 2026 at 9:05 AM"


def test_midnight_and_noon() -> None:
    midnight = datetime(2026, 1, 5, 0, 0, tzinfo=TORONTO)
    noon = datetime(2026, 1, 5, 12, 0, tzinfo=TORONTO)
    assert date_time(midnight, "en", TORONTO) == "January 5, 2026 at 12:00 AM"
    assert date_time(noon, "en", TORONTO) == "January 5, 2026 at 12:00 PM"
    assert date_time(midnight, "fr", TORONTO) == "5 janvier 2026 à 0 h 00"
    assert date_time(noon, "fr", TORONTO) == "5 janvier 2026 à 12 h 00"
    assert date_time(noon + timedelta(hours=11, minutes=59), "en", TORONTO).endswith("11:59 PM")


def test_converted_to_the_zone_with_daylight_saving_time() -> None:
    summer = datetime(2026, 7, 15, 18, 0, tzinfo=UTC)  # EDT, UTC-4
    winter = datetime(2026, 1, 15, 18, 0, tzinfo=UTC)  # EST, UTC-5
    assert date_time(summer, "fr", TORONTO) == "15 juillet 2026 à 14 h 00"
    assert date_time(winter, "fr", TORONTO) == "15 janvier 2026 à 13 h 00"
    assert date_time(summer, "en", TORONTO) == "July 15, 2026 at 2:00 PM"
    # Converting can change the day.
    late = datetime(2026, 3, 1, 3, 0, tzinfo=UTC)
    assert date_time(late, "en", TORONTO) == "February 28, 2026 at 10:00 PM"
    fixed = datetime(2026, 11, 23, 14, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert date_time(fixed, "fr", TORONTO) == "23 novembre 2026 à 14 h 30"


def test_naive_datetimes_are_refused() -> None:
    naive = datetime(2026, 11, 23, 14, 30)
    with pytest.raises(ValueError, match="naive"):
        date_time(naive, "fr", TORONTO)
    with pytest.raises(ValueError, match="naive"):
        Moment(naive, "fr", TORONTO)


def test_money_prints_and_compares_on_the_amount() -> None:
    balance = Money(Decimal("12.50"), "fr")
    assert str(balance) == f"12,50{NBSP}$"
    assert str(Money(Decimal("12.50"), "en")) == "$12.50"
    assert balance.amount == Decimal("12.50")
    assert balance.language == "fr"
    assert balance > 0
    assert balance >= 12.5
    assert balance < 13
    assert balance <= Decimal("12.50")
    assert balance == Decimal("12.5")
    assert balance == 12.5
    assert balance != 12
    assert 0 < balance  # noqa: SIM300 (the reflected comparison is the point)
    assert Money(Decimal("-1"), "fr") < 0
    assert not Money(Decimal("0"), "en") > 0
    assert balance == Money(Decimal("12.5"), "en")
    assert Money(Decimal("1"), "fr") < Money(Decimal("2"), "fr")
    assert max(Money(Decimal("1"), "fr"), Money(Decimal("3"), "fr")).amount == 3
    assert hash(balance) == hash(Decimal("12.5"))
    assert balance != "12.50"
    with pytest.raises(TypeError):
        operator.lt(balance, "13")


def test_equal_values_are_neither_less_nor_greater() -> None:
    balance = Money(Decimal("12.50"), "fr")
    assert not balance < Money(Decimal("12.5"), "en")
    assert not balance > Money(Decimal("12.5"), "en")
    instant = datetime(2026, 11, 23, 19, 30, tzinfo=UTC)
    visit = Moment(instant, "fr", TORONTO)
    assert not visit < Moment(instant, "en", TORONTO)
    assert not visit < instant
    assert not visit > instant


def test_a_moment_hashes_like_the_datetime_it_equals() -> None:
    instant = datetime(2026, 11, 23, 19, 30, tzinfo=UTC)
    visit = Moment(instant, "fr", TORONTO)
    assert hash(visit) == hash(instant)
    assert instant in {visit} and visit in {instant}


def test_moment_prints_and_compares_on_the_datetime() -> None:
    visit = Moment(datetime(2026, 11, 23, 19, 30, tzinfo=UTC), "fr", TORONTO)
    assert str(visit) == "23 novembre 2026 à 14 h 30"
    assert visit.date == "23 novembre 2026"
    assert visit.time == "14 h 30"
    assert visit.at == datetime(2026, 11, 23, 14, 30, tzinfo=TORONTO)
    assert visit.at.tzinfo is TORONTO
    english = Moment(datetime(2026, 11, 23, 19, 30, tzinfo=UTC), "en", TORONTO)
    assert str(english) == "November 23, 2026 at 2:30 PM"
    assert english.date == "November 23, 2026"
    assert english.time == "2:30 PM"
    assert visit == english
    assert visit == datetime(2026, 11, 23, 19, 30, tzinfo=UTC)
    later = Moment(datetime(2026, 11, 24, tzinfo=UTC), "fr", TORONTO)
    assert visit < later
    assert later > visit
    assert visit <= datetime(2026, 11, 23, 19, 30, tzinfo=UTC)
    assert visit > datetime(2026, 1, 1, tzinfo=UTC)
    assert hash(visit) == hash(english)


class Render(Protocol):
    def __call__(self, source: str, **values: object) -> str: ...


KEYS = LinkKeys(b"unit-test-secret", "https://engine.example/unsubscribe", 60)
PLACEHOLDER = "{{ contract.number }}"


def compiled_by_the_composer(source: str, part: str) -> Template:
    """`source` compiled as the composer compiles a run's content (`compile_run`), as the
    `part` of the message: the environment is the product's, whatever it is built from."""
    email = {"subject": PLACEHOLDER, "html": PLACEHOLDER}
    sms = {"text": PLACEHOLDER}
    if part == "sms":
        sms["text"] = source
    else:
        email[part] = source
    run = RunStarted.model_validate(
        {
            "tenant_id": "t",
            "broadcast_id": uuid4(),
            "run_id": uuid4(),
            "name": "n",
            "requested_by": "u",
            "channels": ["email", "sms"],
            "languages": ["en"],
            "content": {"email": {"en": email}, "sms": {"en": sms}},
            "sender": {"address": "avis@neige.example", "name": "Déneigement"},
        }
    )
    compiled = compile_run(run, KEYS, None)
    if part == "sms":
        return compiled.sms["en"]
    template: Template = getattr(compiled.email["en"], part)
    return template


@pytest.fixture(params=["html", "subject", "sms"])
def render(request: pytest.FixtureRequest) -> Render:
    """Renders a template as the composer would in an email's HTML (autoescaped), an email's
    subject or an SMS (plain text)."""
    part: str = request.param

    def rendered(source: str, **values: object) -> str:
        return compiled_by_the_composer(source, part).render(**values)

    return rendered


def test_the_composer_renders_in_a_sandbox() -> None:
    for part in ("html", "subject", "sms"):
        template = compiled_by_the_composer("x", part)
        assert isinstance(template.environment, SandboxedEnvironment), part
        assert template.environment.undefined is StrictUndefined, part
    assert compiled_by_the_composer("x", "html").environment.autoescape is True
    assert compiled_by_the_composer("x", "sms").environment.autoescape is False


def test_templates_print_and_compare(render: Render) -> None:
    m = Money(Decimal("1234.5"), "fr")
    assert render("{{ m }}", m=m) == f"1{NBSP}234,50{NBSP}$"
    assert render("{% if m > 0 %}yes{% endif %}", m=m) == "yes"
    assert render("{% if m > 0 %}yes{% else %}no{% endif %}", m=Money(Decimal(0), "en")) == "no"
    assert render("{% if m == 1234.5 %}same{% endif %}", m=m) == "same"
    visit = Moment(datetime(2026, 12, 1, 14, 5, tzinfo=UTC), "fr", TORONTO)
    assert render("{{ v }} / {{ v.date }} / {{ v.time }}", v=visit) == (
        "1er décembre 2026 à 9 h 05 / 1er décembre 2026 / 9 h 05"
    )
    assert render("{{ v.at.year }}", v=visit) == "2026"


@pytest.mark.parametrize(
    "source",
    [
        "{{ link._secret }}",
        "{{ link._claims.contract_id }}",
        "{{ link._base }}",
        "{{ m.__class__ }}",
        "{{ m.__class__.__mro__ }}",
        "{{ m.__init__.__globals__ }}",
        "{{ m.__slots__ }}",
        "{{ v.__class__ }}",
        "{{ v.at.__class__ }}",
        "{{ m.amount.__class__ }}",
    ],
)
def test_the_sandbox_refuses_private_attributes(render: Render, source: str) -> None:
    claims = LinkClaims(
        tenant_id="t", contract_id="C-1", purpose="payment", address=None, expires_at=2**31
    )
    values = {
        "m": Money(Decimal("5"), "en"),
        "v": Moment(datetime(2026, 12, 1, tzinfo=UTC), "en", TORONTO),
        # A link variable holds the secret it signs with: a template must never print it.
        "link": Link("https://portail.example/paiement", claims, KEYS.secret),
    }
    # Refused, not printed as blank: the composer fails that recipient (render_failed).
    with pytest.raises(SecurityError):
        render(source, **values)
