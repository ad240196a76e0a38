"""What a bench leaves behind: a JSON document under bench/results/ and, for the end-to-end run,
a table on stdout."""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.clock import Clock, utc_now

RESULTS = Path(__file__).resolve().parent / "results"


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


def print_table(data: Mapping[str, Any]) -> None:
    def fmt(value: Any) -> str:
        if isinstance(value, int):
            return f"{value:,}"
        return f"{value:,.1f}" if isinstance(value, float) else str(value)

    rows = [
        ("recipients", data.get("recipients")),
        ("elapsed (s)", data.get("elapsed_s")),
        ("end to end (/s)", data.get("end_to_end_per_s")),
        *((f"  {k} (/s)", v) for k, v in data.get("stages", {}).items()),
        ("SMTP ceiling (/s)", data.get("smtp_ceiling_per_s")),
        ("delivered", data.get("delivered")),
        ("smtp-sink count", data.get("sink_count")),
        *((f"  peak RSS {k} (MB)", v) for k, v in data.get("peak_rss_mb", {}).items()),
        *((f"  CPU {k} (s)", v) for k, v in data.get("cpu_s", {}).items()),
    ]
    for label, value in rows:
        print(f"{label:<28}{fmt(value):>14}")
    for problem in data.get("problems", []):
        print(f"PROBLEM: {problem}")
