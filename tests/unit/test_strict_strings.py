"""Strict strings at the edge: what PostgreSQL, a JSON encoder or a mail header cannot take is
refused when a command is read, naming the field."""

from typing import Any

import pytest
from pydantic import ValidationError

from shared.events import COMMAND_ADAPTER, TRACKER_COMMAND_ADAPTER, TenantSettings, base
from shared.kafka import field_errors

CREATE: dict[str, Any] = {
    "type": "create_broadcast",
    "tenant_id": "acme",
    "request_id": "r1",
    "requested_by": "u1",
    "name": "Avis",
    "criteria": [{"field": "status", "values": ["active"]}],
    "channels": ["email"],
    "languages": ["fr"],
    "content": {"email": {"fr": {"subject": "Avis", "html": "<p>Bonjour</p>"}}},
    "sender": {"address": "avis@acme.example", "name": "Acme"},
}


def refused(command: dict[str, Any]) -> tuple[str, str]:
    with pytest.raises(ValidationError) as caught:
        COMMAND_ADAPTER.validate_python(command)
    field, reason = field_errors(caught.value, skip=command["type"])[0]
    return field, reason


def changed(path: str, value: Any) -> dict[str, Any]:
    command: dict[str, Any] = {**CREATE, "sender": dict(CREATE["sender"])}
    command["content"] = {"email": {"fr": dict(CREATE["content"]["email"]["fr"])}}
    command["criteria"] = [dict(CREATE["criteria"][0])]
    target: Any = command
    *parents, last = path.split(".")
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    if last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value
    return command


@pytest.mark.parametrize(
    ("path", "value", "code"),
    [
        ("name", "Avis\x00", "U+0000"),
        ("requested_by", "u\x00", "U+0000"),
        ("request_id", "r-\ud800", "unicode"),
        ("criteria.0.values", ["active\x00"], "U+0000"),
        ("sender.name", "Acme\u2028Bcc: x@y.example", "U+2028"),
        ("sender.address", "a@b.example\r\nBcc: x@y.example", "U+000D"),
        ("content.email.fr.subject", "Avis\x85suite", "U+0085"),
        ("content.email.fr.subject", "Avis\u2029", "U+2029"),
        ("content.email.fr.subject", "Avis\tà", "U+0009"),
        ("content.email.fr.html", "<p>\x0b</p>", "U+000B"),
        ("content.email.fr.html", "<p>\x1b[31m</p>", "U+001B"),
    ],
)
def test_control_characters_are_refused_naming_the_field(path: str, value: Any, code: str) -> None:
    field, reason = refused(changed(path, value))
    expected = path.replace(".0.values", "[0].values[0]").replace("criteria.0", "criteria[0]")
    assert field == expected
    assert code in reason


def test_a_body_keeps_tabs_and_line_breaks() -> None:
    html = "<p>\tBonjour,\r\n</p>\n<p>À bientôt</p>"
    COMMAND_ADAPTER.validate_python(changed("content.email.fr.html", html))


def test_too_many_criteria_values_are_refused() -> None:
    field, reason = refused(changed("criteria.0.values", ["active"] * 1001))
    assert field == "criteria[0].values" and "1000" in reason


@pytest.mark.parametrize("domain", ["acme.example", "mail.acme-quebec.ca"])
def test_a_dkim_domain_is_a_host_name(domain: str) -> None:
    TenantSettings.model_validate({"dkim": {"domain": domain, "selector": "s1"}})


@pytest.mark.parametrize("domain", ["acme", "acme.example\n", "a b.example", "-acme.example"])
def test_anything_else_is_not_a_dkim_domain(domain: str) -> None:
    with pytest.raises(ValidationError) as caught:
        TenantSettings.model_validate({"dkim": {"domain": domain, "selector": "s1"}})
    assert field_errors(caught.value)[0][0] == "dkim.domain"


def test_dates_and_ids_are_bounded_to_what_is_stored() -> None:
    schedule = {
        "type": "schedule_broadcast",
        "tenant_id": "acme",
        "request_id": "r1",
        "requested_by": "u1",
        "broadcast_id": "00000000-0000-0000-0000-000000000001",
        "at": "9999-12-31T23:59:59",
    }
    assert refused(schedule)[0] == "at"
    resolve = {
        "type": "resolve_action",
        "tenant_id": "acme",
        "request_id": "r1",
        "requested_by": "u1",
        "action_id": 2**63,
        "resolution": "ignore",
    }
    with pytest.raises(ValidationError) as caught:
        TRACKER_COMMAND_ADAPTER.validate_python(resolve)
    assert field_errors(caught.value, skip="resolve_action")[0][0] == "action_id"


def _refused_by_definition(code: int, allowed: str) -> bool:
    """The rule as written before it was a regular expression: C0, DEL, C1, lone surrogates,
    Unicode's line and paragraph separators; a body keeps tab, line feed, carriage return."""
    if chr(code) in allowed:
        return False
    return code < 0x20 or 0x7F <= code < 0xA0 or 0xD800 <= code < 0xE000 or code in (0x2028, 0x2029)


@pytest.mark.parametrize(
    ("pattern", "allowed"), [("_REFUSED_IN_LINE", ""), ("_REFUSED_IN_BODY", "\t\n\r")]
)
def test_the_refused_characters_are_exactly_the_rule_over_all_of_unicode(
    pattern: str, allowed: str
) -> None:
    every = "".join(map(chr, range(0x110000)))
    found = {match.start() for match in getattr(base, pattern).finditer(every)}
    assert found == {code for code in range(0x110000) if _refused_by_definition(code, allowed)}


def test_the_first_refused_character_is_named() -> None:
    with pytest.raises(ValueError, match="U\\+0085"):
        base._line("a\u00a0b\x85c\x00")
    with pytest.raises(ValueError, match="U\\+DFFF"):
        base._body("a\r\n\tb\udfff\x01")
    assert base._body("a\r\n\tb\u00a0\U0001f600") == "a\r\n\tb\u00a0\U0001f600"
