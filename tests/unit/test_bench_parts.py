"""The parts of the end-to-end bench that need no stack: figures, probes and the results."""

import asyncio
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from bench import probes, report, stages
from bench.e2e import parse_args


def test_a_window_gives_its_rate_and_its_place_after_the_start() -> None:
    window = stages.Window(count=1000, first=100.0, last=102.0)
    assert window.per_s() == 500.0
    assert window.describe(origin=99.5) == {
        "count": 1000,
        "per_s": 500.0,
        "from_s": 0.5,
        "to_s": 2.5,
    }
    assert stages.Window(count=1, first=5.0, last=5.0).per_s() is None


class _Conn:
    def __init__(self, row: dict[str, Any] | None) -> None:
        self.row = row
        self.queries: list[str] = []

    async def fetchrow(self, query: str, *args: object) -> dict[str, Any] | None:
        self.queries.append(query)
        return self.row


async def test_a_table_window_reads_the_stage_s_own_table() -> None:
    first, last = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 0, 0, 4, tzinfo=UTC)
    conn = _Conn({"n": 8, "first": first, "last": last})
    window = await stages.table_window(conn, "tracker", uuid4())  # type: ignore[arg-type]
    assert window == stages.Window(8, first.timestamp(), last.timestamp())
    assert "tracker.messages" in conn.queries[0]
    nothing = _Conn({"n": 0, "first": None, "last": None})
    assert await stages.table_window(nothing, "targeting", uuid4()) is None  # type: ignore[arg-type]


def test_the_sink_count_is_the_last_counter_smtp_sink_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "sink.log"
    monkeypatch.setattr(probes, "SINK_LOG", log)
    assert probes.sink_count() == 0
    log.write_bytes(b"sess=1 quit=0 mesg=1\nsess=2 quit=1 mesg=2\nsess=2 quit=2 mesg=2\n")
    assert probes.sink_count() == 2


async def test_the_rss_sampler_samples_in_the_background_while_the_body_runs() -> None:
    sampler = probes.RssSampler({"bench": [os.getpid()]})
    async with sampler.sampling():
        await asyncio.sleep(0.05)
    assert sampler.samples >= 1
    assert sampler.peak_mb()["bench"] > 0


def test_log_problems_lists_error_lines_written_since_and_skips_missing_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "composer.log"
    log.write_text("old ERROR before the run\n")
    before = {"composer": log.stat().st_size, "tracker": 0}
    with log.open("a") as out:
        out.write("INFO fine\nERROR during the run\n")
    logs = {name: tmp_path / f"{name}.log" for name in before}
    monkeypatch.setattr(probes, "_service_logs", lambda: logs)
    assert probes.log_problems(before) == {"composer": ["ERROR during the run"]}


def test_results_go_to_the_run_s_file_and_latest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    run = report.Report(data={"tenant": "bench-1", "name": "Québec"}, problems=["failed is 1"])
    path = report.write_results(run, clock=lambda: datetime(2026, 12, 2, 13, 0, tzinfo=UTC))
    assert path == tmp_path / "run-20261202T130000Z.json"
    assert path.read_text() == (tmp_path / "latest.json").read_text()
    written = json.loads(path.read_text())
    assert written["ok"] is False and written["problems"] == ["failed is 1"]
    assert "Québec" in path.read_text()


def test_the_e2e_command_line_keeps_its_arguments() -> None:
    args = parse_args(["--contracts", "5000"])
    assert (args.contracts, args.ceiling_messages, args.idle_seconds) == (5000, 20_000, 20.0)
    assert parse_args(["--idle-seconds", "0"]).idle_seconds == 0
    for wrong in (["--contracts", "0"], ["--idle-seconds", "-1"]):
        with pytest.raises(SystemExit):
            parse_args(wrong)


def test_log_problems_keeps_the_first_twenty_error_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "dispatcher.log").write_text("".join(f"ERROR {n}\n" for n in range(30)))
    monkeypatch.setattr(
        probes, "_service_logs", lambda: {"dispatcher": tmp_path / "dispatcher.log"}
    )
    assert probes.log_problems({"dispatcher": 0}) == {
        "dispatcher": [f"ERROR {n}" for n in range(20)]
    }
