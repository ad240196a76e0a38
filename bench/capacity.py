"""The capacity model: from one end-to-end run, what a target rate needs.

    .venv/bin/python -m bench.capacity RUN_JSON --rate 10000 [--rate 50000] [--utilisation 0.6]

Each component's CPU over a run is split into a fixed part, what it burns per second with
nothing to do (`idle_cpu_ms_per_s`, measured by the run before its broadcast), and a marginal
part per message (the rest, divided by the messages delivered). A service instance is one
Python process, so one core at most: a stage needs the instances that keep each under the
utilisation ceiling, its fixed cost included, and never fewer than two (one may die). Kafka and
PostgreSQL are given in cores of the machine the run was made on, with the bytes per second
they write. bench/README.md, "Scaling out", says where the model stops being true.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.probes import SERVICES

SHARED = ("kafka", "postgres")
# Each instance's asyncpg pool (<SERVICE>_DATABASE_POOL_SIZE's default).
POOL_SIZE = 5
# One instance may die without its stage stopping.
MIN_INSTANCES = 2


@dataclass(frozen=True)
class Cost:
    """One component's CPU: `fixed_cores` for all the instances the run had, `marginal_us`
    per message."""

    fixed_cores: float
    marginal_us: float


def costs(run: Mapping[str, Any]) -> dict[str, Cost]:
    """Each measured component's fixed and marginal CPU, from a run's JSON."""
    idle = run.get("idle_cpu_ms_per_s")
    if not idle:
        raise ValueError("the run has no idle_cpu_ms_per_s: run bench.e2e with --idle-seconds")
    elapsed, delivered = float(run["elapsed_s"]), int(run["delivered"])
    found: dict[str, Cost] = {}
    for name in (*SERVICES, *SHARED):
        fixed = idle[name] / 1000
        # Never below zero: on a busy machine the idle sample can exceed a short run's share.
        marginal = max(run["cpu_s"][name] - fixed * elapsed, 0.0) * 1e6 / delivered
        found[name] = Cost(fixed, marginal)
    return found


@dataclass(frozen=True)
class Plan:
    rate: float
    instances: dict[str, int]  # per service
    cores: dict[str, float]  # Kafka's and PostgreSQL's, at the utilisation ceiling
    partitions: int  # the least on the hot topics (recipients, messages, deliveries)
    database_connections: int
    written_mb_per_s: dict[str, float]


def plan(
    run: Mapping[str, Any], rate: float, utilisation: float, pool_size: int = POOL_SIZE
) -> Plan:
    """What `rate` messages per second need, each process kept under `utilisation` of a core."""
    if not 0 < utilisation <= 1:
        raise ValueError(f"utilisation must be in (0, 1], not {utilisation}")
    found = costs(run)
    topology = run.get("topology", {"kafka_nodes": 1, "instances": 1})
    instances: dict[str, int] = {}
    for name in SERVICES:
        cost = found[name]
        per_instance = cost.fixed_cores / topology["instances"]
        if per_instance >= utilisation:
            raise ValueError(f"{name}: idle cost {per_instance:.2f} cores leaves no room")
        busy = rate * cost.marginal_us / 1e6
        instances[name] = max(MIN_INSTANCES, math.ceil(busy / (utilisation - per_instance)))
    cores = {
        name: round(found[name].fixed_cores + rate * found[name].marginal_us / 1e6 / utilisation, 2)
        for name in SHARED
    }
    written = run.get("bytes_per_message", {})
    return Plan(
        rate=rate,
        instances=instances,
        cores=cores,
        # Targeting reads the command topics; the other three stages the hot ones.
        partitions=max(instances[name] for name in SERVICES if name != "targeting"),
        database_connections=sum(instances.values()) * pool_size,
        written_mb_per_s={k: round(rate * v / 1e6, 1) for k, v in written.items()},
    )


def print_plans(run: Mapping[str, Any], plans: Sequence[Plan]) -> None:
    found = costs(run)
    print("component          fixed (cores)   marginal (µs/msg)")
    for name, cost in found.items():
        print(f"{name:<18}{cost.fixed_cores:>14.3f}{cost.marginal_us:>20.1f}")
    print()
    rows: list[tuple[str, list[Any]]] = [
        ("messages/s", [round(p.rate) for p in plans]),
        *((f"{n} instances", [p.instances[n] for p in plans]) for n in SERVICES),
        *((f"{n} cores", [p.cores[n] for p in plans]) for n in SHARED),
        ("hot-topic partitions >=", [p.partitions for p in plans]),
        ("database connections", [p.database_connections for p in plans]),
        *(
            (f"{n} written (MB/s)", [p.written_mb_per_s[n] for p in plans])
            for n in (plans[0].written_mb_per_s if plans else {})
        ),
    ]
    for label, values in rows:
        print(f"{label:<26}" + "".join(f"{v:>12,}" for v in values))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__)
    parser.add_argument("run", type=Path, metavar="RUN_JSON", help="a bench.e2e run's JSON")
    parser.add_argument("--rate", type=float, action="append", required=True)
    parser.add_argument("--utilisation", type=float, default=0.6)
    args = parser.parse_args(argv)
    run = json.loads(args.run.read_text())
    try:
        print_plans(run, [plan(run, rate, args.utilisation) for rate in args.rate])
    except (ValueError, KeyError) as error:
        print(f"capacity: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
