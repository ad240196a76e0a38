"""The README's CLI tutorial, run as written against the running stack."""

import asyncio
import os
import re
import sys
from collections import Counter
from pathlib import Path

import asyncpg
import pytest

from tests.stack import SmtpSink

pytestmark = pytest.mark.stack
REPO = Path(__file__).resolve().parents[2]
DOMAIN = "tutorial.example"


def tutorial() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- tutorial -->\n```sh\n(.*?)```\n<!-- /tutorial -->", readme, re.S)
    assert found, "README.md lost its tutorial block"
    return found.group(1)


async def test_the_readme_tutorial_runs_as_written(db: asyncpg.Pool, smtp_sink: SmtpSink) -> None:
    before = Counter(r for m in await smtp_sink.messages(DOMAIN) for r in m.rcpt_tos)
    script = tutorial()
    assert "broadcast start" in script and "broadcast resend" in script
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-euo",
        "pipefail",
        "-c",
        script,
        cwd=REPO,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 300)
    stdout = output.decode()
    assert process.returncode == 0, stdout
    # The estimate, as the comment says: T-5 matches but has no address.
    assert "contracts            4" in stdout
    assert '"email": 4' in stdout
    assert "unreachable_contracts 1" in stdout
    # The catalogues, labelled: a criteria value in French, a variable in English.
    assert "Résidentiel" in stdout
    assert "Client name" in stdout
    # The render-only preview, in the contract's language; it sends nothing (counted below).
    assert "Subject: Snow removal at 4 Maple Street" in stdout

    broadcast_id = await db.fetchval(
        "SELECT broadcast_id FROM targeting.broadcasts_v1 WHERE tenant_id = 'tutorial' "
        "ORDER BY created_at DESC LIMIT 1"
    )
    # Targeting numbers the runs, the tracker counts them: each from its own view.
    run_ids = await db.fetch(
        "SELECT run_id FROM targeting.runs_v1 WHERE broadcast_id = $1 ORDER BY run_number",
        broadcast_id,
    )
    counters = {
        r["run_id"]: (r["delivered"], r["failed"], r["outcome"])
        for r in await db.fetch(
            "SELECT run_id, delivered, failed, outcome FROM tracker.run_counters_v1 "
            "WHERE broadcast_id = $1",
            broadcast_id,
        )
    }
    runs = [counters[r["run_id"]] for r in run_ids]
    # T-5 has no address: one no_contact failure a run, so each is partially successful.
    assert runs == [(4, 1, "partially_successful")] * 2
    assert "no_contact" in stdout  # the message log of its failures
    after = Counter(r for m in await smtp_sink.messages(DOMAIN) for r in m.rcpt_tos)
    assert after - before == Counter(
        {
            f"emilie@{DOMAIN}": 2,
            f"john@{DOMAIN}": 2,
            f"marc@{DOMAIN}": 2,
            f"bureau.marc@{DOMAIN}": 2,
            f"moi@{DOMAIN}": 1,  # the preview
        }
    )
