"""The local runner's Kafka: one node by default, three with BROADCAST_KAFKA_BROKERS=3
(deploy/local/stack/kafka.py), each node configured for the cluster it belongs to."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from deploy.local.stack import StackError, components
from deploy.local.stack.kafka import (
    BROKERS_VARIABLE,
    NodeLayout,
    bootstrap,
    ensure_cluster_id,
    nodes,
)
from deploy.local.stack.kafka_secure import SECURE_VARIABLE


def properties(text: str) -> dict[str, str]:
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def test_the_nodes_take_every_other_port_from_the_single_nodes() -> None:
    cluster = nodes(3)
    assert [(n.node_id, n.broker_port, n.controller_port) for n in cluster] == [
        (1, 19092, 19093),
        (2, 19094, 19095),
        (3, 19096, 19097),
    ]
    assert bootstrap(cluster) == "127.0.0.1:19092,127.0.0.1:19094,127.0.0.1:19096"


def test_a_node_of_three_votes_with_the_others_and_keeps_three_copies(tmp_path: Path) -> None:
    cluster = nodes(3)
    layout = NodeLayout(
        cluster[1], cluster, tmp_path / "node-2", tmp_path / "cluster.id", "kafka-2"
    )
    props = properties(layout.properties("listeners=PLAINTEXT://127.0.0.1:19094"))
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == (
        "1@127.0.0.1:19093,2@127.0.0.1:19095,3@127.0.0.1:19097"
    )
    assert props["log.dirs"] == str(tmp_path / "node-2" / "data")
    for key in ("offsets.topic", "transaction.state.log", "share.coordinator.state.topic"):
        assert props[f"{key}.replication.factor"] == "3"
    assert props["transaction.state.log.min.isr"] == "2"
    assert props["default.replication.factor"] == "3"
    assert props["min.insync.replicas"] == "2"


def test_a_single_node_keeps_one_copy(tmp_path: Path) -> None:
    (node,) = nodes(1)
    props = properties(NodeLayout(node, (node,), tmp_path, tmp_path / "id", "kafka").properties(""))
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["min.insync.replicas"] == "1"


def test_the_stack_runs_one_node_unless_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BROADCAST_RUN_DIR", str(tmp_path))
    monkeypatch.delenv(BROKERS_VARIABLE, raising=False)
    table = components()
    assert "kafka" in table and "kafka-1" not in table
    assert "TRACKER_KAFKA_BOOTSTRAP_SERVERS" not in table["tracker"].env


def test_three_nodes_and_every_service_knows_them_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BROADCAST_RUN_DIR", str(tmp_path))
    monkeypatch.setenv(BROKERS_VARIABLE, "3")
    table = components()
    names = list(table)
    assert names[names.index("postgres") + 1 : names.index("postgres") + 4] == [
        "kafka-1",
        "kafka-2",
        "kafka-3",
    ]
    assert "kafka" not in table
    assert table["kafka-3"].ports == (19096, 19097)
    for name in ("targeting", "composer", "dispatcher", "tracker"):
        assert table[name].env[f"{name.upper()}_KAFKA_BOOTSTRAP_SERVERS"] == bootstrap(nodes(3))


@pytest.mark.parametrize("value", ["2", "three", "0"])
def test_another_size_is_refused_naming_the_variable(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(BROKERS_VARIABLE, value)
    with pytest.raises(StackError, match=f"{BROKERS_VARIABLE}='{value}': expected 1 or 3"):
        components()


def test_the_secure_broker_is_a_single_node(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BROKERS_VARIABLE, "3")
    monkeypatch.setenv(SECURE_VARIABLE, "1")
    with pytest.raises(StackError, match=f"{SECURE_VARIABLE}=1 runs a single node"):
        components()


def test_nodes_prepared_at_once_share_one_cluster_id(tmp_path: Path) -> None:
    id_file = tmp_path / "cluster.id"
    with ThreadPoolExecutor(3) as preparing:
        list(preparing.map(lambda _: ensure_cluster_id(id_file), range(3)))
    first = id_file.read_text()
    ensure_cluster_id(id_file)
    assert id_file.read_text() == first and first.strip()
    assert [p.name for p in tmp_path.iterdir()] == ["cluster.id"]
