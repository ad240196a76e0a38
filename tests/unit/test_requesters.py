"""Who may speak for which tenant: the BROADCAST_REQUEST_CLIENTS mapping, its errors, its topics."""

import pytest

from services.targeting.settings import Settings
from shared.requesters import (
    RequestClientsError,
    Requesters,
    answers_topic_for,
    parse,
    topic_for,
)

MAPPING = '{"acme-crm": ["acme", "acme-2"], "ops-tool": "*"}'


def test_each_client_has_its_own_topic_after_the_platforms() -> None:
    requesters = parse(MAPPING)
    assert requesters.topics() == (
        "broadcast.requests",
        "broadcast.requests.acme-crm",
        "broadcast.requests.ops-tool",
    )
    assert [(t.name, t.key, t.partitions) for t in requesters.client_topics()] == [
        ("broadcast.requests.acme-crm", "tenant_id", 4),
        ("broadcast.events.acme-crm", "broadcast_id", 4),
        ("broadcast.requests.ops-tool", "tenant_id", 4),
        ("broadcast.events.ops-tool", "broadcast_id", 4),
    ]
    assert topic_for(None) == "broadcast.requests"
    assert topic_for("acme-crm") == "broadcast.requests.acme-crm"


def test_a_client_acts_for_its_tenants_only_and_an_unknown_topic_for_nobody() -> None:
    requesters = parse(MAPPING)
    assert requesters.may_act("broadcast.requests.acme-crm", "acme")
    assert requesters.may_act("broadcast.requests.acme-crm", "acme-2")
    assert not requesters.may_act("broadcast.requests.acme-crm", "globex")
    # Tenant ids are compared exactly: no case folding, no prefix match.
    assert not requesters.may_act("broadcast.requests.acme-crm", "ACME")
    assert not requesters.may_act("broadcast.requests.acme-crm", "acme-")
    assert requesters.may_act("broadcast.requests.ops-tool", "globex")
    # The platform acts for every tenant, configured clients or not.
    assert requesters.may_act("broadcast.requests", "globex")
    assert Requesters().may_act("broadcast.requests", "globex")
    for topic in (
        "broadcast.requests.unknown",
        "broadcast.requests.",
        "broadcast.requestsacme-crm",
        "broadcast.events",
        "acme-crm",
    ):
        assert not requesters.may_act(topic, "acme"), topic


def test_a_request_is_answered_on_its_senders_answers_topic() -> None:
    assert answers_topic_for("broadcast.requests") == "broadcast.events"
    assert answers_topic_for("broadcast.requests.acme-crm") == "broadcast.events.acme-crm"
    assert parse(MAPPING).answers_topics() == (
        "broadcast.events",
        "broadcast.events.acme-crm",
        "broadcast.events.ops-tool",
    )


@pytest.mark.parametrize(
    "topic",
    [
        "broadcast.events",
        "broadcast.requestsacme-crm",
        "broadcast.requests.",
        "broadcast.requests.A",
    ],
)
def test_what_is_no_request_topic_has_no_answers_topic(topic: str) -> None:
    with pytest.raises(RequestClientsError):
        answers_topic_for(topic)


@pytest.mark.parametrize("unset", [None, "", "  "])
def test_no_mapping_leaves_the_platform_alone(unset: str | None) -> None:
    assert parse(unset).topics() == ("broadcast.requests",)
    assert parse(unset).answers_topics() == ("broadcast.events",)
    assert parse("{}").client_topics() == ()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{acme", "not JSON"),
        ('["acme-crm"]', "expected a JSON object of client -> tenants"),
        ('{"Acme-CRM": ["acme"]}', "client name 'Acme-CRM': expected 1 to 40 lowercase"),
        ('{"": ["acme"]}', "client name '': expected 1 to 40"),
        ('{"' + "a" * 41 + '": ["acme"]}', "expected 1 to 40"),
        ('{"acme.crm": ["acme"]}', "client name 'acme.crm'"),
        ('{"acme-crm": []}', "client 'acme-crm': expected a non-empty list of tenant ids or \"*\""),
        ('{"acme-crm": "acme"}', "client 'acme-crm': expected a non-empty list"),
        ('{"acme-crm": null}', "client 'acme-crm': expected a non-empty list"),
        ('{"acme-crm": ["acme", 7]}', "client 'acme-crm': 7 is not a tenant id"),
        ('{"acme-crm": ["*"]}', "client 'acme-crm': '*' is not a tenant id"),
        ('{"acme-crm": [""]}', "client 'acme-crm': '' is not a tenant id"),
    ],
)
def test_a_bad_mapping_names_the_variable_and_the_reason(text: str, reason: str) -> None:
    with pytest.raises(RequestClientsError) as raised:
        parse(text)
    assert str(raised.value).startswith("BROADCAST_REQUEST_CLIENTS: ")
    assert reason in str(raised.value)


def test_a_bad_client_name_is_refused_before_it_becomes_a_topic() -> None:
    with pytest.raises(RequestClientsError, match="client name 'acme/crm'"):
        topic_for("acme/crm")


def test_every_service_reads_the_one_unprefixed_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROADCAST_REQUEST_CLIENTS", MAPPING)
    monkeypatch.setenv("TARGETING_REQUEST_CLIENTS", '{"other": "*"}')
    assert Settings().request_clients == parse(MAPPING)
    monkeypatch.setenv("BROADCAST_REQUEST_CLIENTS", '{"acme-crm": []}')
    with pytest.raises(ValueError, match="BROADCAST_REQUEST_CLIENTS"):
        Settings()
