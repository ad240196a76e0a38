"""The capacity model (bench/capacity.py): a run's CPU split into a fixed and a marginal part,
and the instances, cores, partitions and connections a target rate needs."""

from typing import Any

import pytest

from bench.capacity import costs, plan

SERVICES = ("targeting", "composer", "dispatcher", "tracker")


def run(**changes: Any) -> dict[str, Any]:
    """100,000 messages in 100 s: every service 20 s of CPU, 2 s of it idle cost (20 ms/s)."""
    base: dict[str, Any] = {
        "elapsed_s": 100.0,
        "delivered": 100_000,
        "topology": {"kafka_nodes": 3, "instances": 2},
        "cpu_s": {**dict.fromkeys(SERVICES, 20.0), "kafka": 40.0, "postgres": 10.0},
        "idle_cpu_ms_per_s": {**dict.fromkeys(SERVICES, 20.0), "kafka": 150.0, "postgres": 0.0},
        "bytes_per_message": {"postgres_wal": 1500, "kafka_logs": 2700},
    }
    return base | changes


def test_the_idle_cost_is_taken_out_before_the_cost_per_message() -> None:
    found = costs(run())
    assert found["composer"].fixed_cores == pytest.approx(0.02)
    assert found["composer"].marginal_us == pytest.approx(180.0)  # (20 - 0.02 x 100) s / 1e5
    assert found["kafka"].marginal_us == pytest.approx(250.0)  # (40 - 15) s / 1e5


def test_a_rate_gets_the_instances_that_keep_each_under_the_ceiling() -> None:
    planned = plan(run(), rate=10_000, utilisation=0.6)
    # 10,000 x 180 µs = 1.8 cores, each instance has 0.6 - 0.01 of a core for it: 3.05 -> 4.
    assert planned.instances["composer"] == 4
    assert planned.partitions == 4
    assert planned.database_connections == 16 * 5
    # Kafka: its 0.15 idle cores, and 10,000 x 250 µs at 60 %.
    assert planned.cores["kafka"] == pytest.approx(0.15 + 2.5 / 0.6, abs=0.01)
    assert planned.written_mb_per_s == {"postgres_wal": 15.0, "kafka_logs": 27.0}


def test_never_fewer_than_two_instances_one_may_die() -> None:
    assert set(plan(run(), rate=10, utilisation=0.6).instances.values()) == {2}


def test_a_run_without_its_idle_figures_is_refused() -> None:
    with pytest.raises(ValueError, match="idle_cpu_ms_per_s"):
        costs(run(idle_cpu_ms_per_s={}))


@pytest.mark.parametrize("utilisation", [0.0, 1.5])
def test_a_ceiling_outside_a_core_is_refused(utilisation: float) -> None:
    with pytest.raises(ValueError, match="utilisation"):
        plan(run(), rate=1000, utilisation=utilisation)
