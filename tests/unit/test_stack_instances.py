"""BROADCAST_INSTANCES: the local stack runs N instances of each service, on their own ports,
the dispatchers each with their own identity in the ledger."""

import os
from pathlib import Path

import pytest

from deploy.local import stack
from deploy.local.stack.control import recorded_settings
from deploy.local.stack.kafka import BROKERS_VARIABLE


def test_one_instance_each_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BROADCAST_INSTANCES", raising=False)
    services = {
        n: c for n, c in stack.components().items() if n.split("-")[0] in stack.SERVICE_PORTS
    }
    assert {n: tuple(c.ports) for n, c in services.items()} == {
        n: (p,) for n, p in stack.SERVICE_PORTS.items()
    }


def test_two_instances_each_on_their_own_ports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROADCAST_INSTANCES", "2")
    components = stack.components()
    for name, port in stack.SERVICE_PORTS.items():
        first, second = components[name], components[f"{name}-2"]
        assert (tuple(first.ports), tuple(second.ports)) == ((port,), (port + 10,))
        # The same app (and so the same consumer groups), another port.
        assert f"services.{name}.app:create_app" in second.command
        assert str(port + 10) in second.command
    assert components["dispatcher-2"].env["DISPATCHER_INSTANCE_ID"] == "dispatcher-2"
    assert "DISPATCHER_INSTANCE_ID" not in components["dispatcher"].env
    ports = [p for c in components.values() for p in c.ports]
    assert len(ports) == len(set(ports))


def test_a_wrong_count_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROADCAST_INSTANCES", "two")
    with pytest.raises(ValueError, match="BROADCAST_INSTANCES"):
        stack.components()


def test_a_bare_down_stops_the_instances_and_nodes_it_was_not_told_of(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # `BROADCAST_KAFKA_BROKERS=3 BROADCAST_INSTANCES=2 make up`, then `make down` without them.
    monkeypatch.setenv("BROADCAST_RUN_DIR", str(tmp_path))
    monkeypatch.delenv("BROADCAST_INSTANCES", raising=False)
    monkeypatch.delenv(BROKERS_VARIABLE, raising=False)
    started = {
        name: stack.start_process(
            ["sleep", "60"],
            log_file=tmp_path / f"{name}.log",
            pid_file=tmp_path / "pids" / f"{name}.pid",
        )
        for name in ("tracker-2", "kafka-3")
    }
    assert recorded_settings() == {BROKERS_VARIABLE: "3", "BROADCAST_INSTANCES": "2"}
    stack.down()
    for proc in started.values():
        assert proc.wait(timeout=10) is not None
    printed = capsys.readouterr().out
    assert "tracker-2: stopped" in printed and "kafka-3: stopped" in printed
    assert "kafka-1: not running" in printed and "composer-2: not running" in printed
    # The variables are the caller's again.
    assert "BROADCAST_INSTANCES" not in os.environ and BROKERS_VARIABLE not in os.environ
