"""The environment that runs the stack and the suite on a shifted wall clock (libfaketime).

    python deploy/local/fake_clock.py -- COMMAND...

Runs COMMAND with every process it starts (PostgreSQL, the sinks, the services, pytest) seeing
the wall clock moved, by one fixed offset, to the last Saturday 23:59:50 in Toronto, the
default tenant time zone: the ten seconds before the weekend's last midnight, when a suite that
depends on the calendar or on "tomorrow" breaks. Durations are unchanged: every clock moves by
the same offset (libfaketime 0.9.10 makes Python's sleep fail with EINVAL when the monotonic
clock alone is left true). Kafka's JVM keeps the true clock: it is known to misbehave under
libfaketime, and the engine never reads record timestamps; the offset is into the past and
within a week, so the broker accepts the records (it refuses timestamps an hour ahead) and its
time-based retention keeps every one the suite produces.

Standard library only: it runs before the project's dependencies.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

TORONTO = ZoneInfo("America/Toronto")
SATURDAY = 5


def last_saturday_end(now: datetime) -> datetime:
    """The latest Saturday 23:59:50 in Toronto that is not after `now`."""
    local = now.astimezone(TORONTO)
    day = local.date() - timedelta(days=(local.weekday() - SATURDAY) % 7)
    moment = datetime(day.year, day.month, day.day, 23, 59, 50, tzinfo=TORONTO)
    return moment if moment <= local else moment - timedelta(days=7)


def library() -> str:
    """Debian's libfaketime (`deploy/local/install.sh faketime` installs it)."""
    found = sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))
    if not found:
        raise SystemExit("libfaketime is missing: run deploy/local/install.sh faketime")
    return str(found[0])


def environment(now: datetime) -> dict[str, str]:
    offset = int((last_saturday_end(now) - now).total_seconds())
    return {
        "LD_PRELOAD": library(),
        "FAKETIME": f"{offset:+d}",  # seconds: the same shift for every process
        "FAKETIME_SKIP_CMDS": "java",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="+", help="what to run on the shifted clock")
    args = parser.parse_args()
    env = environment(datetime.now(TORONTO))
    shifted = datetime.now(TORONTO) + timedelta(seconds=int(env["FAKETIME"]))
    print(f"clock: {shifted:%A %Y-%m-%d %H:%M:%S %Z} (FAKETIME={env['FAKETIME']})", flush=True)
    return subprocess.call(args.command, env={**os.environ, **env})


if __name__ == "__main__":
    sys.exit(main())
