"""The dispatcher's SMTP relay alone, into Postfix's smtp-sink: `python -m bench.smtp --port N`.

Runs `SmtpRelay` with the dispatcher's default connection count, as many sends in flight as the
hand-over keeps (two per connection), over `--messages` pre-rendered invoice messages (the
composer's bodies, ~3.9 KB, CRLF already), once against an smtp-sink started with `-p` (no
PIPELINING announced: the relay falls back to lockstep) and once against one that announces it.
Reports messages/s and CPU µs per message of this process (`time.process_time`) and of
smtp-sink, and checks smtp-sink counted every message. Needs `/usr/sbin/smtp-sink` (Debian
package `postfix`) and a free `--port`; touches nothing of the stack.
"""

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from bench import invoice
from deploy.local.stack import wait_tcp
from services.composer.render import render
from services.dispatcher.settings import Settings
from services.dispatcher.smtp import SmtpRelay
from shared.clock import utc_now
from shared.events import MessageRendered

DISTINCT = 1000  # distinct messages, cycled
HOST = "127.0.0.1"
_COUNTED = re.compile(rb"mesg=(\d+)")


def messages(count: int) -> list[MessageRendered]:
    compiled, now = invoice.compiled_run(), utc_now()
    distinct = [render(compiled, invoice.recipient(i), now) for i in range(DISTINCT)]
    built = [m for m in distinct if isinstance(m, MessageRendered)]
    assert len(built) == DISTINCT
    return [built[i % DISTINCT] for i in range(count)]


@contextlib.contextmanager
def smtp_sink(port: int, *, pipelining: bool) -> Iterator[tuple[psutil.Process, Path]]:
    """smtp-sink on `port`, counting messages (`-c`) into a log; stopped on exit."""
    binary = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    argv = [binary, "-c", "-t", "3600"] + ([] if pipelining else ["-p"])
    if os.geteuid() == 0:
        argv += ["-u", "nobody"]  # smtp-sink refuses to keep root privileges
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "sink.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([*argv, f"{HOST}:{port}", "1024"], stdout=out, stderr=out)
        try:
            wait_tcp(port, HOST, timeout=10.0)
            yield psutil.Process(proc.pid), log
        finally:
            proc.terminate()
            proc.wait(timeout=10.0)


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


async def _send_all(relay: SmtpRelay, batch: list[MessageRendered], in_flight: int) -> int:
    """Sends everything with `in_flight` senders; the number of messages accepted."""
    queue = iter(batch)
    accepted = itertools.count()

    async def sender() -> None:
        for message in queue:
            attempt = await relay.send(message)
            if attempt.verdict == "accepted":
                next(accepted)

    await asyncio.gather(*(sender() for _ in range(in_flight)))
    return next(accepted)


async def run(port: int, batch: list[MessageRendered], *, pipelining: bool) -> dict[str, Any]:
    connections = Settings().smtp_connections
    with smtp_sink(port, pipelining=pipelining) as (sink, log):
        relay = SmtpRelay(host=HOST, port=port, size=connections, timeout=30.0)
        # Connections open (and EHLO) before the clock starts, as they are in a running relay.
        await _send_all(relay, batch[: connections * 2], connections * 2)
        sink_before, cpu_before, began = _cpu(sink), time.process_time(), time.perf_counter()
        accepted = await _send_all(relay, batch, connections * 2)
        wall = time.perf_counter() - began
        client_cpu, sink_cpu = time.process_time() - cpu_before, _cpu(sink) - sink_before
        await relay.close()
        await asyncio.sleep(0.5)  # smtp-sink's last counter line
        counted = _COUNTED.findall(log.read_bytes())
    count = len(batch)
    return {
        "mode": "pipelined" if pipelining else "lockstep",
        "connections": connections,
        "messages": count,
        "accepted": accepted,
        "sink_counted": int(counted[-1]) - connections * 2 if counted else 0,
        "per_s": round(count / wall),
        "client_us_per_message": round(client_cpu / count * 1e6, 1),
        "sink_us_per_message": round(sink_cpu / count * 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="a free port for smtp-sink")
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--mode", choices=["both", "lockstep", "pipelined"], default="both")
    args = parser.parse_args()
    batch = messages(args.messages)
    modes = {"both": [False, True], "lockstep": [False], "pipelined": [True]}[args.mode]
    results = [asyncio.run(run(args.port, batch, pipelining=p)) for p in modes]
    json.dump(results, sys.stdout, indent=2)
    print()
    if any(r["accepted"] != r["messages"] or r["sink_counted"] != r["messages"] for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
