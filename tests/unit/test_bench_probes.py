"""The bench measures every instance: each Kafka node's CPU counts as Kafka's, each dispatcher
is replaced by a bench dispatcher on its own port, and each service instance's log is read."""

from pathlib import Path

import pytest

from bench import probes
from bench.processes import bench_dispatchers
from deploy.local.stack import instance_number
from deploy.local.stack.kafka import BROKERS_VARIABLE


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BROADCAST_RUN_DIR", str(tmp_path))
    monkeypatch.setenv(BROKERS_VARIABLE, "3")
    monkeypatch.setenv("BROADCAST_INSTANCES", "2")
    return tmp_path / "pids"


@pytest.mark.parametrize(
    ("component", "group", "number"),
    [
        ("kafka", "kafka", 1),
        ("kafka-3", "kafka", 3),
        ("dispatcher-2", "dispatcher", 2),
        ("dispatcher", "dispatcher", 1),
        ("dispatcher-2", "tracker", None),
        ("sms-sink", "smtp", None),
        ("kafka-x", "kafka", None),
    ],
)
def test_instances_belong_to_their_group(component: str, group: str, number: int | None) -> None:
    assert instance_number(component, group) == number


def test_every_node_and_instance_is_measured(cluster: Path) -> None:
    assert probes.topology() == {"kafka_nodes": 3, "instances": 2}
    assert [p.name for p in probes._pid_files("kafka")] == [
        "kafka-1.pid",
        "kafka-2.pid",
        "kafka-3.pid",
    ]
    assert [p.name for p in probes._pid_files("tracker")] == ["tracker.pid", "tracker-2.pid"]
    # The dispatchers measured are the bench's, which replace the stack's.
    assert [p.name for p in probes._pid_files("dispatcher")] == [
        "bench-dispatcher.pid",
        "bench-dispatcher-2.pid",
    ]


def test_each_bench_dispatcher_takes_the_port_and_identity_of_the_one_it_replaces(
    cluster: Path,
) -> None:
    swapped = {
        c.name: (c.ports, c.env.get("DISPATCHER_INSTANCE_ID")) for c, _, _ in bench_dispatchers()
    }
    assert swapped == {"dispatcher": ((9103,), None), "dispatcher-2": ((9113,), "dispatcher-2")}


def test_the_logs_read_are_every_instance_s_with_the_bench_dispatchers(cluster: Path) -> None:
    logs = {name: path.name for name, path in probes._service_logs().items()}
    assert logs["composer-2"] == "composer-2.log"
    assert logs["dispatcher-2"] == "bench-dispatcher-2.log"
    assert len(logs) == 8
