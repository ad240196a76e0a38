"""What the end-to-end bench reports, without the stack: CPU per message, the time to the first
message at the server, the composer's window, the before/after table and `make bench N=…`."""

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from bench import compare, probes, report, stages
from bench.e2e import main

ROOT = Path(__file__).resolve().parents[2]
OLD_RUN: dict[str, Any] = {  # the shape of a run written before this change
    "recipients": 100_000,
    "elapsed_s": 101.0,
    "end_to_end_per_s": 990.2,
    "delivered": 100_000,
    "stages": {"composer": 1511.1},
    "cpu_s": {"dispatcher": 61.1, "kafka": 20.1, "bench-smtp-sink": 10.8},
    "peak_rss_mb": {"dispatcher": 128.5},
}


def test_cpu_per_message_is_each_component_s_share_and_the_stack_s_sum() -> None:
    figures = report.cpu_per_message({"dispatcher": 25.0, "kafka": 3.3, "postgres": 1.7}, 100_000)
    assert figures == {
        "cpu_us_per_message": {
            "dispatcher": 250.0,
            "kafka": 33.0,
            "postgres": 17.0,
            "stack": 300.0,
        },
        "recipients_per_cpu_s": 3333.3,
    }
    assert report.cpu_per_message({"dispatcher": 25.0}, 0) == {}
    assert report.cpu_per_message({}, 100) == {}


def test_the_table_derives_the_cpu_figures_of_an_older_run_and_shows_what_it_lacks() -> None:
    figures = dict(report.figures(OLD_RUN))
    assert figures["  CPU dispatcher (µs/msg)"] == 611.0
    assert figures["  CPU stack (µs/msg)"] == 920.0
    assert figures["recipients per CPU-second"] == 1087.0
    assert figures["first message at server (s)"] is None
    assert report.fmt(None) == "-" and report.fmt(1234) == "1,234" and report.fmt(2.25) == "2.2"


def test_the_comparison_gives_after_over_before_for_every_figure_of_either_run() -> None:
    after = {
        **OLD_RUN,
        "elapsed_s": 50.5,
        "first_message_s": 0.4,
        "cpu_s": {"dispatcher": 6.11, "kafka": 20.1},
        "peak_rss_mb": {},
    }
    rows = {label: (b, a, ratio) for label, b, a, ratio in compare.comparison(OLD_RUN, after)}
    assert rows["elapsed (s)"] == (101.0, 50.5, 0.5)
    assert rows["  CPU dispatcher (µs/msg)"] == (611.0, 61.1, 0.1)
    assert rows["first message at server (s)"] == (None, 0.4, None)
    # Only the before run measured the sink and the dispatcher's RSS: still shown.
    assert rows["  CPU bench-smtp-sink (s)"] == (10.8, None, None)
    assert rows["  peak RSS dispatcher (MB)"] == (128.5, None, None)
    labels = list(rows)
    assert labels.index("elapsed (s)") < labels.index("  CPU stack (µs/msg)")


def test_bench_compare_prints_the_two_runs_and_the_ratios(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before, after = tmp_path / "before.json", tmp_path / "after.json"
    before.write_text(json.dumps(OLD_RUN))
    after.write_text(json.dumps({**OLD_RUN, "elapsed_s": 202.0}))
    assert compare.main([str(before), str(after)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["before", "after", "after/before"]
    (elapsed,) = [line for line in out if line.startswith("elapsed (s)")]
    assert elapsed.split()[-3:] == ["101.0", "202.0", "2.00"]
    # A run from before the topology was reported shows none rather than a guess.
    (nodes,) = [line for line in out if line.startswith("Kafka nodes")]
    assert nodes.split()[-3:] == ["-", "-", "-"]


def test_a_missing_before_run_fails_before_the_bench_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def run_bench(*args: object) -> None:
        raise AssertionError("the bench ran")

    monkeypatch.setattr("bench.e2e.run_bench", run_bench)
    with pytest.raises(FileNotFoundError):
        main(["--contracts", "10", "--compare", str(tmp_path / "missing.json")])


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize(
    ("variables", "command"),
    [
        ([], "--contracts 100000"),
        (["N=1000000"], "--contracts 1000000"),
        # Still honoured: the last --contracts is the one argparse keeps.
        (["BENCH_ARGS=--contracts 5000"], "--contracts 100000 --contracts 5000"),
    ],
)
def test_make_bench_takes_the_size(variables: list[str], command: str) -> None:
    dry_run = subprocess.run(
        ["make", "-n", "-s", "-C", str(ROOT), "bench", *variables],
        capture_output=True,
        text=True,
        check=True,
        # Not the MAKEFLAGS of a `make test` around this run.
        env={"PATH": os.environ["PATH"]},
    )
    assert dry_run.stdout.splitlines()[-1].split() == [
        ".venv/bin/python",
        "-m",
        "bench.e2e",
        *command.split(),
    ]


# --- smtp-sink's log ---------------------------------------------------------------------------


def test_the_sink_count_reads_the_log_s_tail_and_skips_a_counter_still_being_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "sink.log"
    monkeypatch.setattr(probes, "SINK_LOG", log)
    lines = b"".join(b"sess=0 quit=0 mesg=%d\r" % n for n in range(1, 1001))
    log.write_bytes(lines + b"sess=0 quit=0 mesg=10")  # 1001's counter, half written
    assert len(lines) > 4 * probes._TAIL_BYTES
    assert probes.sink_count() == 1000


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)


def test_server_times_are_when_the_sink_counted_the_first_and_the_last_message(
    tmp_path: Path,
) -> None:
    path = tmp_path / "sink.log"
    path.write_bytes(b"sess=0 quit=0 mesg=1\rsess=0 quit=0 mesg=2\r")
    clock = _Clock()
    # (the clock, what the sink writes then, first and last time seen after the poll)
    steps = [
        (100.0, b"sess=1 quit=1 mesg=2\r", (None, None)),  # a session ends: no message yet
        (100.5, b"sess=1 quit=1 mesg=3\rsess=1 quit=1 mesg=", (100.5, None)),
        (101.0, b"4\r", (100.5, None)),  # the counter, finished
        (102.0, b"sess=1 quit=1 mesg=5\r", (100.5, 102.0)),
        (103.0, b"sess=2 quit=2 mesg=5\r", (100.5, 102.0)),
    ]
    with path.open("rb") as log, path.open("ab", buffering=0) as sink:
        log.seek(0, 2)
        times = probes.ServerTimes(log, before=2, expected=3, clock=clock)
        for now, written, seen in steps:
            clock.now = now
            sink.write(written)
            times.poll()
            assert (times.first_at, times.last_at) == seen


async def test_server_times_follow_the_log_in_the_background(tmp_path: Path) -> None:
    path = tmp_path / "sink.log"
    path.write_bytes(b"")
    with path.open("rb") as log, path.open("ab", buffering=0) as sink:
        times = probes.ServerTimes(log, before=0, expected=2)
        async with times.following():
            sink.write(b"sess=0 quit=0 mesg=1\r")
            await asyncio.sleep(0.1)
            assert times.first_at is not None and times.last_at is None
            sink.write(b"sess=0 quit=0 mesg=2\r")  # read by the last poll, on the way out
    assert times.last_at is not None and times.first_at <= times.last_at


def test_the_first_message_is_the_sink_s_and_else_the_ledger_s_first_outcome() -> None:
    outcomes = stages.Window(count=10, first=100.9, last=104.0)
    assert stages.first_message(100.0, 100.4567, outcomes) == {
        "first_message_s": 0.457,
        "first_message_source": "smtp-sink log (its counters, tailed)",
    }
    assert stages.first_message(100.0, None, outcomes) == {
        "first_message_s": 0.9,
        "first_message_source": "dispatcher.deliveries_v1 finished_at (fallback)",
    }
    assert stages.first_message(100.0, None, None)["first_message_s"] is None


# --- the composer's window ---------------------------------------------------------------------


@dataclass
class _Record:
    offset: int
    timestamp: int
    value: bytes


class _Consumer:
    """Partitions of (timestamp ms, value) records, from offset 0; counts the records read."""

    partitions: dict[int, list[tuple[int, bytes]]] = {}
    read = 0

    def __init__(self, **config: object) -> None:
        self.positions: dict[Any, int] = {}

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def assign(self, parts: list[Any]) -> None:
        self.parts = parts

    async def end_offsets(self, parts: list[Any]) -> dict[Any, int]:
        return {tp: len(self.partitions[tp.partition]) for tp in parts}

    def seek(self, tp: Any, offset: int) -> None:
        self.positions[tp] = offset

    async def getmany(self, tp: Any, timeout_ms: int, max_records: int) -> dict[Any, list[Any]]:
        offset = self.positions[tp]
        stamp, value = self.partitions[tp.partition][offset]
        type(self).read += 1
        return {tp: [_Record(offset, stamp, value)]}


@pytest.fixture
def consumer(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_Consumer]]:
    monkeypatch.setattr(stages, "AIOKafkaConsumer", _Consumer)
    monkeypatch.setattr("shared.client.endpoints.local", lambda: type("E", (), {"kafka": "k:1"})())
    yield _Consumer


async def test_the_composer_window_reads_the_first_and_last_record_of_each_partition(
    consumer: type[_Consumer],
) -> None:
    run = uuid4()
    mine = b'{"run_id":"%s","body":"Bonjour"}' % str(run).encode()
    consumer.partitions = {
        0: [(1_000, b"older run"), (2_000, mine), (2_500, mine), (7_000, mine)],
        1: [(1_500, mine), (6_000, mine)],
        2: [(500, b"older run")],  # nothing of this run
    }
    window, body = await stages.composer_window({0: 1, 1: 0, 2: 1}, run, 5, timeout_s=5)
    assert window == stages.Window(5, 1.5, 7.0)
    assert body == len("Bonjour")
    assert consumer.read == 4  # the ends of the two partitions the run wrote to

    consumer.partitions[1][1] = (6_000, b"someone else's record")
    assert await stages.composer_window({0: 1, 1: 0, 2: 1}, run, 5, timeout_s=5) == (None, 7)
