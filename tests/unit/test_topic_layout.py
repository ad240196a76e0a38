"""How topics are laid out on the cluster: replication from the number of brokers
(shared/replication.py) and partition counts from BROADCAST_TOPIC_PARTITIONS
(shared/partitions.py)."""

import pytest

from services.dispatcher.settings import Settings as DispatcherSettings
from shared.admin import topic_configs
from shared.partitions import VARIABLE, TopicPartitionsError, parse
from shared.replication import Replication, replication_for
from shared.requesters import parse as parse_clients
from shared.topics import ALL, EVENTS, MESSAGES, REQUESTS, TENANTS


@pytest.mark.parametrize(
    ("brokers", "expected"),
    [
        (1, Replication(1, 1)),
        (2, Replication(2, 1)),
        (3, Replication(3, 2)),
        (5, Replication(3, 2)),
    ],
)
def test_replication_follows_the_brokers(brokers: int, expected: Replication) -> None:
    assert replication_for(brokers) == expected


def test_no_broker_is_no_cluster() -> None:
    with pytest.raises(ValueError, match="at least one broker"):
        replication_for(0)


def test_each_topic_carries_its_min_insync_replicas() -> None:
    assert topic_configs(MESSAGES, Replication(3, 2)) == {"min.insync.replicas": "2"}
    assert topic_configs(TENANTS, Replication(1, 1)) == {
        "min.insync.replicas": "1",
        "cleanup.policy": "compact",
    }


def test_partitions_default_to_the_topics_own() -> None:
    assert parse(None).apply(ALL) == ALL
    assert parse("  ").apply(ALL) == ALL


def test_a_setting_changes_the_topics_it_names() -> None:
    topics = parse('{"broadcast.messages": 16}').apply(ALL)
    counts = {t.name: t.partitions for t in topics}
    assert counts[MESSAGES.name] == 16
    assert all(counts[t.name] == t.partitions for t in ALL if t is not MESSAGES)


def test_client_topics_follow_the_platforms_request_and_answers_topics() -> None:
    clients = parse_clients('{"crm": ["acme"]}')
    default = {t.name: t.partitions for t in parse(None).every_topic(clients)}
    assert default["broadcast.requests.crm"] == REQUESTS.partitions
    assert default["broadcast.events.crm"] == EVENTS.partitions
    wider = {
        t.name: t.partitions
        for t in parse('{"broadcast.requests": 12, "broadcast.events": 6}').every_topic(clients)
    }
    assert wider["broadcast.requests"] == wider["broadcast.requests.crm"] == 12
    assert wider["broadcast.events"] == wider["broadcast.events.crm"] == 6


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("16", "expected a JSON object"),
        ("{nope", "not JSON"),
        ('{"broadcast.mesages": 16}', "unknown topic 'broadcast.mesages'"),
        ('{"broadcast.messages": 0}', "topic 'broadcast.messages': expected a whole number"),
        ('{"broadcast.messages": "16"}', "topic 'broadcast.messages': expected a whole number"),
        ('{"broadcast.messages": true}', "topic 'broadcast.messages': expected a whole number"),
        ('{"broadcast.messages": 2.5}', "topic 'broadcast.messages': expected a whole number"),
    ],
)
def test_a_wrong_setting_names_the_variable_and_the_topic(text: str, message: str) -> None:
    with pytest.raises(TopicPartitionsError, match=f"^{VARIABLE}: .*{message}"):
        parse(text)


def test_every_service_reads_the_one_unprefixed_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VARIABLE, '{"broadcast.messages": 16}')
    monkeypatch.setenv("DISPATCHER_TOPIC_PARTITIONS", '{"broadcast.messages": 2}')
    counts = {t.name: t.partitions for t in DispatcherSettings().topics()}
    assert counts[MESSAGES.name] == 16
    monkeypatch.setenv(VARIABLE, '{"broadcast.messages": -1}')
    with pytest.raises(ValueError, match=f"{VARIABLE}: topic 'broadcast.messages'"):
        DispatcherSettings()
