from typing import Any

import pytest

from services.targeting.broadcasts import Rejection, check_definition
from shared.events import CreateBroadcast


def command(**overrides: Any) -> CreateBroadcast:
    fields: dict[str, Any] = {
        "tenant_id": "acme",
        "request_id": "r1",
        "requested_by": "u1",
        "name": "Avis",
        "channels": ["email"],
        "languages": ["fr"],
        "content": {
            "email": {
                "fr": {
                    "subject": "Bonjour {{ contract.client_name }}",
                    "html": "<p>{{ contract.number }}</p>",
                }
            }
        },
        "sender": {"address": "noreply@acme.example", "name": "Acme"},
    }
    fields.update(overrides)
    return CreateBroadcast.model_validate(fields)


def rejection(cmd: CreateBroadcast) -> Rejection:
    with pytest.raises(Rejection) as caught:
        check_definition(cmd)
    return caught.value


def test_a_valid_definition_passes() -> None:
    check_definition(command())


def test_content_is_required_for_each_enabled_channel_and_language() -> None:
    found = rejection(command(languages=["fr", "en"]))
    assert (found.code, found.field) == ("missing_content", "content.email.en")
    found = rejection(command(channels=["email", "sms"]))
    assert (found.code, found.field) == ("missing_content", "content.sms.fr")


def test_template_syntax_error_names_field_and_line() -> None:
    found = rejection(
        command(
            content={
                "email": {
                    "fr": {"subject": "ok", "html": "<p>a</p>\n<p>{% if contract.number %}</p>"}
                }
            }
        )
    )
    assert (found.code, found.field) == ("invalid_template", "content.email.fr.html")
    assert "line 2" in found.message


def test_unknown_variable_is_named() -> None:
    found = rejection(
        command(content={"email": {"fr": {"subject": "{{ customer.name }}", "html": "<p></p>"}}})
    )
    assert found.field == "content.email.fr.subject"
    assert "'customer'" in found.message


def test_sender_name_cannot_inject_headers() -> None:
    found = rejection(
        command(sender={"address": "a@b.example", "name": "Acme\r\nBcc: victim@example.com"})
    )
    assert (found.code, found.field) == ("invalid_field", "sender.name")


def test_invalid_criteria_are_reported_as_rejections() -> None:
    found = rejection(command(criteria=[{"field": "size", "values": ["xl"]}]))
    assert (found.code, found.field) == ("unknown_criterion", "criteria[0].field")
