"""What a bench leaves behind: a JSON document under bench/results/ and, for the end-to-end run,
a table on stdout."""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.clock import Clock, utc_now

RESULTS = Path(__file__).resolve().parent / "results"
# The whole stack in the per-message CPU figures: every component the bench measures, summed.
STACK = "stack"


@dataclass
class Report:
    data: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def write_json(data: Mapping[str, Any], *names: str) -> Path:
    """The same document in each of bench/results/`names`; returns the first path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    paths = [RESULTS / name for name in names]
    for path in paths:
        path.write_text(text)
    return paths[0]


def write_results(report: Report, clock: Clock = utc_now) -> Path:
    """The run's own `run-<UTC stamp>.json`, returned, and `latest.json`."""
    report.data["ok"] = not report.problems
    report.data["problems"] = report.problems
    stamp = clock().strftime("%Y%m%dT%H%M%SZ")
    return write_json(report.data, f"run-{stamp}.json", "latest.json")


def cpu_per_message(cpu_s: Mapping[str, float], messages: int) -> dict[str, Any]:
    """µs of CPU per message of each component and of the whole stack (their sum), and the
    recipients the whole stack handles per CPU-second; empty without a message."""
    total = sum(cpu_s.values())
    if messages <= 0 or total <= 0:
        return {}
    per_message = {name: round(s * 1e6 / messages, 1) for name, s in cpu_s.items()}
    return {
        "cpu_us_per_message": {**per_message, STACK: round(total * 1e6 / messages, 1)},
        "recipients_per_cpu_s": round(messages / total, 1),
    }


def figures(data: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The figures of a run, labelled, in the order the table prints them; computed from the
    raw fields, so that runs written before a figure existed still give it."""
    cpu = cpu_per_message(data.get("cpu_s", {}), data.get("delivered", 0))
    return [
        ("recipients", data.get("recipients")),
        ("Kafka nodes", data.get("topology", {}).get("kafka_nodes")),
        ("instances of each service", data.get("topology", {}).get("instances")),
        ("elapsed (s)", data.get("elapsed_s")),
        ("start -> completed (/s)", data.get("end_to_end_per_s")),
        ("first message at server (s)", data.get("first_message_s")),
        *((f"  {k} (/s)", v) for k, v in data.get("stages", {}).items()),
        ("SMTP ceiling (/s)", data.get("smtp_ceiling_per_s")),
        ("delivered", data.get("delivered")),
        ("smtp-sink count", data.get("sink_count")),
        ("recipients per CPU-second", cpu.get("recipients_per_cpu_s")),
        *((f"  CPU {k} (µs/msg)", v) for k, v in cpu.get("cpu_us_per_message", {}).items()),
        *((f"  written {k} (bytes/msg)", v) for k, v in data.get("bytes_per_message", {}).items()),
        *((f"  peak RSS {k} (MB)", v) for k, v in data.get("peak_rss_mb", {}).items()),
        *((f"  CPU {k} (s)", v) for k, v in data.get("cpu_s", {}).items()),
        *((f"  idle CPU {k} (ms/s)", v) for k, v in data.get("idle_cpu_ms_per_s", {}).items()),
    ]


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.1f}" if isinstance(value, float) else str(value)


def print_table(data: Mapping[str, Any]) -> None:
    for label, value in figures(data):
        print(f"{label:<32}{fmt(value):>14}")
    for problem in data.get("problems", []):
        print(f"PROBLEM: {problem}")
