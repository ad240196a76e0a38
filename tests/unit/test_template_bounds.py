"""A tenant's template, however absurd, fails its own message within bounds: it never raises
out of `render`, never builds a huge value, never runs for long."""

import time

import pytest

from services.composer.render import MAX_HTML, Unrendered, compile_run, render, text_from_html
from shared import templating
from shared.events import DeliveryFailed, MessageRendered
from tests.unit.test_render import KEYS, NOW, parsed, part_text, recipient, run


def rendered(html: str, subject: str = "Avis") -> MessageRendered | Unrendered:
    started = run({"email": {"fr": {"subject": subject, "html": html}}}, languages=["fr"])
    return render(compile_run(started, KEYS, None), recipient(started), NOW)


@pytest.mark.parametrize(
    ("html", "why"),
    [
        ("{{ 1/0 }}", "ZeroDivisionError"),
        ("{{ 1 + 'a' }}", "TypeError"),
        ("{% include 'x' %}", "no loader"),
        ("{{ range(10**9) | list }}", "range() of more than"),
        ("{{ range(1000000) | list }}", "range() of more than"),
        ("{{ 'x' * 10**8 }}", "repetition of more than"),
        ("{{ 2 ** 1000 }}", "power above"),
        ("{{ 'x' * 100000000 }}", "repetition of more than"),
        ("{{ [1] * 100000000 }}", "repetition of more than"),
        ("{{ 10 ** 5000 }}", "power above"),
        # Whichever bound a busy machine reaches first: the stack's depth or the CPU budget.
        ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", "Recursion|CPU"),
        (
            "{% for a in range(9999) %}{% for b in range(9999) %}{% for c in range(9999) %}"
            "{{ c }}{% endfor %}{% endfor %}{% endfor %}",
            "CPU",
        ),
        ("{% for a in range(300) %}{{ 'x' * 1000 }}{% endfor %}", "256 KB"),
    ],
)
def test_an_absurd_template_fails_its_message_quickly(html: str, why: str) -> None:
    began = time.monotonic()
    output = rendered(html)
    assert isinstance(output, DeliveryFailed), output
    assert output.reason == "render_failed"
    assert any(w.lower() in output.detail.lower() for w in why.split("|")), output.detail
    assert len(output.detail) <= 200
    assert time.monotonic() - began < 5  # bounded (the CPU budget is 50 ms)


def test_a_subject_that_renders_a_line_break_fails_its_message() -> None:
    output = rendered("<p>Bonjour</p>", subject="Avis{{ '\\n' }}Bcc: x@y.example")
    assert isinstance(output, DeliveryFailed) and output.reason == "render_failed"


def test_a_normal_template_is_well_within_the_bounds() -> None:
    html = "{% for i in range(50) %}<p>{{ contract.client_name }} {{ i * 2 }}</p>{% endfor %}"
    output = rendered(html)
    assert isinstance(output, MessageRendered), output
    assert "Élise Tremblay 98" in part_text(parsed(output), "plain")
    assert len("<p>x</p>") * 50 < MAX_HTML


def test_html_entities_stay_text_in_the_text_part() -> None:
    html = "<p>&#123;&#123; 7*7 &#125;&#125; &#x7b;% if 1 %&#x7d; {{ contract.number }}</p>"
    output = rendered(html)
    text = part_text(parsed(output), "plain")
    assert "{{ 7*7 }}" in text and "49" not in text
    assert "{% if 1 %}" in text and "C-1" in text
    # On a rendered page the same references are plain characters.
    assert text_from_html("<p>&#123;&#123; 7*7 &#125;&#125;</p>") == "{{ 7*7 }}\n"


@pytest.mark.parametrize(
    ("source", "line"),
    [
        ("{{ contract._recipient }}", 1),
        ("<p>\n{{ contract.balance.__class__ }}</p>", 2),
        ("{{ cycler }}", 1),
        ("{{ namespace() }}", 1),
        ("{{ lipsum() }}", 1),
        ("{{ joiner }}", 1),
    ],
)
def test_private_attributes_and_sandbox_globals_are_refused_at_creation(
    source: str, line: int
) -> None:
    problem = templating.check(source)
    assert problem is not None and problem.line == line, problem


def test_a_template_nested_too_deep_is_refused_at_creation() -> None:
    problem = templating.check("{{ " + "(" * 500 + "1" + ")" * 500 + " }}")
    assert problem is not None


@pytest.mark.parametrize(
    "source",
    [
        "{{ 'x' * 10**8 }}",
        "{{ 10 ** 5000 }}",
        "{{ range(10**9) | list }}",
        "{% include 'x' %}",
        "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
        "{% for a in range(9999) %}{% for b in range(9999) %}{% endfor %}{% endfor %}",
    ],
)
def test_what_fails_whatever_the_contract_is_refused_at_creation(source: str) -> None:
    assert templating.check(source) is not None


@pytest.mark.parametrize(
    "source",
    [
        "{{ 100 / contract.balance }}",  # fails only for a balance of zero
        "{{ contract.balance * 2 }} {{ contract.visit_at.date }}",
        "{% for key in contract.attributes %}{{ key }}{% endfor %}",
        "{% if contract.balance > 0 %}À payer{% endif %} {{ today }} {{ unsubscribe_url }}",
        "{{ 'x' * 50 }}{% for i in range(100) %}{{ i ** 2 }}{% endfor %}",
    ],
)
def test_what_depends_on_the_contract_is_not_refused_at_creation(source: str) -> None:
    assert templating.check(source) is None
