"""Every port the stack, or a test that runs beside it, listens on at a fixed number lies below
the kernel's ephemeral range and is taken once.

A fixed port inside the ephemeral range (32768-60999 on Linux by default) can be held, at the
moment a server binds it, by the local end of any outgoing connection of the suite: the
three-node cluster's test once failed in CI for exactly that, with `port 39092 is taken`.
"""

from pathlib import Path

import pytest

from deploy.local import stack
from deploy.local.stack.kafka import BROKERS_VARIABLE
from tests.e2e import test_prometheus
from tests.integration import test_kafka_cluster, test_kafka_security

# Linux's default; a machine configured with a lower start counts with its own.
EPHEMERAL_START = 32768


def ephemeral_start() -> int:
    found = Path("/proc/sys/net/ipv4/ip_local_port_range")
    configured = int(found.read_text().split()[0]) if found.exists() else EPHEMERAL_START
    return min(configured, EPHEMERAL_START)


def stack_ports(monkeypatch: pytest.MonkeyPatch, brokers: str) -> list[int]:
    """Every port of the largest stack the runner starts: every node, nine instances each."""
    monkeypatch.setenv(BROKERS_VARIABLE, brokers)
    monkeypatch.setenv("BROADCAST_INSTANCES", "9")
    return [port for component in stack.components().values() for port in component.ports]


def isolated_ports() -> dict[str, list[int]]:
    """The tests that start brokers or services of their own, beside the stack."""
    cluster = [p for n in test_kafka_cluster.CLUSTER for p in (n.broker_port, n.controller_port)]
    security = [test_kafka_security.BROKER, test_kafka_security.CONTROLLER]
    return {
        "test_kafka_cluster": cluster,
        "test_kafka_security": [*security, *test_kafka_security.PORTS.values()],
        "test_prometheus": [test_prometheus.PORT],
    }


@pytest.mark.parametrize("brokers", ["1", "3"])
def test_every_fixed_port_is_below_the_ephemeral_range_and_taken_once(
    brokers: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    owners: dict[int, list[str]] = {}
    for port in stack_ports(monkeypatch, brokers):
        owners.setdefault(port, []).append("stack")
    for owner, ports in isolated_ports().items():
        for port in ports:
            owners.setdefault(port, []).append(owner)
    start = ephemeral_start()
    assert [p for p in owners if p >= start] == []
    assert {p: o for p, o in owners.items() if len(o) > 1} == {}
