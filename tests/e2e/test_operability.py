"""What an operator relies on, through the running stack: the CLI's exit codes, progress events
at most once a second, and metrics whose labels never carry an identifier."""

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.audience import (
    OPEN_ALL_WEEK,
    configure,
    contract,
    create_and_start,
    french_only,
    load,
    new_tenant,
)
from tests.stack import EventLog, SmtpSink, publish_json

pytestmark = pytest.mark.stack
REPO = Path(__file__).resolve().parents[2]


# --- The CLI's exit codes ---------------------------------------------------------------------
# deploy/cli.py and the README: 0 done, 1 refused with the reason, 2 bad usage, 3 no answer in
# time ("no answer: is the stack up?").

DONE, REFUSED, NO_ANSWER = 0, 1, 3


@pytest.fixture
def settings_file(tmp_path: Path) -> Path:
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump(OPEN_ALL_WEEK))
    return path


def cli(*words: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`broadcast --json WORDS` as an operator runs it, in its own process."""
    return subprocess.run(
        [sys.executable, "-m", "deploy.cli", "--json", *words],
        capture_output=True,
        text=True,
        timeout=600,  # a hang, not a duration: the CLI gives up on an answer after 30 s
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )


def answer(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    lines = done.stdout.strip().splitlines()
    assert lines and lines[-1].startswith("{"), (done.returncode, done.stdout, done.stderr)
    parsed: dict[str, Any] = json.loads(lines[-1])
    return parsed


async def test_the_cli_exits_0_once_the_stack_answered(
    db: asyncpg.Pool, settings_file: Path, tmp_path: Path
) -> None:
    tenant, domain = new_tenant()
    configured = cli("configure", str(settings_file), "--tenant", tenant)
    assert (configured.returncode, answer(configured)["type"]) == (DONE, "tenant.configured")
    clients = tmp_path / "clients.csv"
    clients.write_text(
        "contract_id,client_name,status,building_type,emails\n"
        + "".join(f"C-{i},Client {i},active,residential,c{i}@{domain}\n" for i in range(3)),
        encoding="utf-8",
    )
    imported = cli("import", str(clients), "--tenant", tenant)
    assert (imported.returncode, answer(imported)["imported"]) == (DONE, 3)
    async with asyncio.timeout(60):  # the dispatcher has the tenant's settings before the start
        while not await db.fetchval(
            "SELECT 1 FROM dispatcher.tenant_settings_v1 WHERE tenant_id = $1", tenant
        ):
            await asyncio.sleep(0.2)
    spec = tmp_path / "avis.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "tenant_id": tenant,
                "name": "Avis",
                "channels": ["email"],
                "languages": ["fr"],
                "content": {"email": {"fr": {"subject": "Avis", "html": "<p>Bonjour</p>"}}},
                "sender": {"address": f"avis@{domain}", "name": "Déneigement"},
            },
            allow_unicode=True,
        ),
        encoding="utf-8",
    )
    created = cli("create", str(spec))
    assert (created.returncode, answer(created)["type"]) == (DONE, "broadcast.accepted")
    broadcast_id = answer(created)["broadcast_id"]
    started = cli("start", broadcast_id, "--tenant", tenant)
    assert (started.returncode, answer(started)["command"]) == (DONE, "start_broadcast")
    watched = cli("status", broadcast_id, "--tenant", tenant, "--watch")
    assert watched.returncode == DONE, watched.stderr
    assert (answer(watched)["outcome"], answer(watched)["delivered"]) == ("fully_successful", 3)
    # An answer that refuses is not "done" either: 1, with the reason.
    again = cli("start", broadcast_id, "--tenant", tenant)
    assert (again.returncode, answer(again)["reason"]) == (REFUSED, "already_started")


@pytest.mark.parametrize("words", [["start"], ["status"]], ids=["kafka", "read model"])
def test_the_cli_exits_3_when_the_stack_is_down(words: list[str]) -> None:
    # A port bound and not listening: whatever connects there is refused.
    with socket.socket() as nobody:
        nobody.bind(("127.0.0.1", 0))
        port = nobody.getsockname()[1]
        done = cli(
            *words,
            str(uuid4()),
            "--tenant",
            new_tenant()[0],
            env={
                "BROADCAST_KAFKA": f"127.0.0.1:{port}",
                "BROADCAST_DATABASE_URL": f"postgresql://broadcast:broadcast@127.0.0.1:{port}/x",
            },
        )
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == NO_ANSWER, (done.returncode, done.stderr)
    assert "is the stack up?" in done.stderr


# --- Progress at most once a second -----------------------------------------------------------

# The tracker (services/tracker/progress.py, progress_interval_seconds = 1) publishes a run's
# progress when a second has passed since its last one, by its own clock, and stamps the
# event after reading the counters: two events' occurred_at differ by the interval give or
# take the difference between two such reads. Tolerated: 50 ms.
AT_MOST_ONCE_A_SECOND = 0.95


async def test_progress_is_published_at_most_once_a_second(
    db: asyncpg.Pool, events: EventLog
) -> None:
    tenant, domain = new_tenant()
    # 300 messages at 50 a second: several seconds of deliveries, hundreds of counter changes.
    configured = await configure(events, tenant, {**OPEN_ALL_WEEK, "email_per_second": 50})
    assert configured["type"] == "tenant.configured", configured
    await load(
        db,
        [
            contract(tenant, f"C-{i}", status="active", building="residential", emails=[e])
            for i, e in enumerate(f"c{n}@{domain}" for n in range(300))
        ],
        timeout=120,
    )
    broadcast_id = await create_and_start(events, french_only(tenant))
    started = await events.wait_for(
        lambda e: e["type"] == "broadcast.started" and e["broadcast_id"] == broadcast_id
    )
    completed = await events.wait_for(
        lambda e: e["type"] == "broadcast.completed" and e["run_id"] == started["run_id"],
        timeout=600,
    )
    assert completed["counters"]["delivered"] == 300, completed
    moments = [
        datetime.fromisoformat(e["occurred_at"])
        for e in events.records
        if e["type"] == "broadcast.progressed" and e["run_id"] == started["run_id"]
    ]
    assert len(moments) >= 2, f"{len(moments)} progress events: the run was too short to tell"
    gaps = [(later - earlier).total_seconds() for earlier, later in pairwise(moments)]
    assert min(gaps) >= AT_MOST_ONCE_A_SECOND, gaps


# --- Metric labels never carry an identifier --------------------------------------------------

METRICS = {"targeting": 9101, "composer": 9102, "dispatcher": 9103, "tracker": 9104}
# docs/ARCHITECTURE.md, "Metrics": the domain metrics and their labels, closed sets.
DOMAIN_LABELS: dict[str, set[str]] = {
    "broadcast_dead_letters": {"topic"},
    "broadcast_composer_messages": {"channel", "outcome"},
    "broadcast_composer_sms_segments": {"encoding"},
    "broadcast_dispatcher_outcomes": {"channel", "outcome"},
    "broadcast_dispatcher_failures": {"channel", "reason"},
    "broadcast_dispatcher_deferrals": {"channel", "waiting_for"},
    "broadcast_dispatcher_deferral_delay_seconds": {"waiting_for"},
    "broadcast_dispatcher_provider_call_seconds": {"channel"},
    "broadcast_messages_final": {"channel", "state"},
    "broadcast_message_failures": {"channel", "reason"},
    "broadcast_delivery_latency_seconds": {"channel"},
    "broadcast_runs_running": set(),
    "broadcast_completion_seconds": {"size"},
    "broadcast_oldest_running_seconds": {"size"},
    "broadcast_consumer_lag_messages": {"topic", "group"},
    "broadcast_delivery_reports": {"channel", "kind"},
    "broadcast_tenant_report_rate_max": {"kind"},
    "broadcast_hard_bounce_alert_rate": set(),
    "broadcast_bounce_mail": {"kind"},
    "broadcast_bounce_rcpt_refused": set(),
    "broadcast_bounce_reports": {"type"},
}
# FastStream's middleware (faststream/prometheus/container.py; deploy/prometheus/alerts.yml).
FASTSTREAM_LABELS = {"app_name", "broker", "handler", "destination", "status", "exception_type"}
ANY_DOCUMENTED = FASTSTREAM_LABELS.union(*DOMAIN_LABELS.values())

UUID = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}", re.I)
EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
PHONE = re.compile(r"\+?\d(?:[\s().-]?\d){6,}")  # seven digits or more, however written
TENANT = re.compile(r"(?<![0-9a-z])t[0-9a-f]{10}(?![0-9a-z])")  # new_tenant()'s ids


def identifiers_in(value: str, known: set[str]) -> list[str]:
    """What in a label value looks like, or is, an identifier of a tenant, contract, broadcast,
    run, recipient, request or address."""
    found = [p.pattern for p in (UUID, EMAIL, PHONE, TENANT) if p.search(value)]
    return found + [k for k in known if k in value]


async def scrape() -> dict[str, list[tuple[str, str, dict[str, str]]]]:
    """Each service's samples: (family, sample name, labels)."""
    scraped: dict[str, list[tuple[str, str, dict[str, str]]]] = {}
    async with httpx.AsyncClient(timeout=10) as http:
        for service, port in METRICS.items():
            response = await http.get(f"http://127.0.0.1:{port}/metrics")
            response.raise_for_status()
            scraped[service] = [
                (family.name, sample.name, dict(sample.labels))
                for family in text_string_to_metric_families(response.text)
                for sample in family.samples
            ]
    return scraped


async def test_metric_labels_never_carry_an_identifier(
    db: asyncpg.Pool, smtp_sink: SmtpSink, events: EventLog
) -> None:
    tenant, domain = new_tenant()
    batch = uuid4().hex[:8]
    contract_ids = [f"K-{batch}-{i}" for i in range(6)]
    emails = [f"client{i}@{domain}" for i in range(6)]
    phones = [f"+1514{int(batch[:5], 16) % 1_000_000:06d}{i}" for i in range(6)]
    refused, busy = emails[0], emails[1]
    await smtp_sink.set_rules(
        [
            {"address": refused, "stage": "rcpt", "code": 550, "message": "5.1.1 User unknown"},
            {"address": busy, "stage": "rcpt", "code": 450, "message": "4.2.1 busy", "times": 1},
        ]
    )
    await configure(events, tenant, OPEN_ALL_WEEK)
    audience = []
    for number, address, phone in zip(contract_ids, emails, phones, strict=True):
        record = contract(tenant, number, status="active", building="residential", emails=[address])
        record["contract"]["phones"] = [{"address": phone, "opted_out": False}]
        audience.append(record)
    await load(db, audience)
    # A record no handler can parse, keyed like a message, counted by the dead-letter metric.
    poison_key = f"{tenant}:{uuid4()}"
    await publish_json("broadcast.messages", [(poison_key, {"type": "nonsense"})])
    create = french_only(
        tenant,
        channels=["email", "sms"],
        criteria=[{"field": "contract_id", "values": contract_ids}],
    )
    create["content"]["sms"] = {"fr": {"text": "Déneigement : {{ contract.number }}"}}
    broadcast_id = await create_and_start(events, create)
    completed = await events.wait_for(
        lambda e: e["type"] == "broadcast.completed" and e["broadcast_id"] == broadcast_id,
        timeout=120,
    )
    assert (completed["counters"]["delivered"], completed["counters"]["failed"]) == (11, 1)

    known = {
        tenant,
        domain,
        broadcast_id,
        completed["run_id"],
        create["request_id"],
        poison_key,
        *contract_ids,
        *emails,
        *phones,
    }
    # The check catches each of this broadcast's identifiers as a label value (a
    # `broadcast_id` label, say, which besides is no documented label name): by its shape,
    # and contract ids, which have none, by their value.
    for identifier in known - {*contract_ids}:
        assert identifiers_in(identifier, set()), identifier
    for identifier in contract_ids:
        assert identifiers_in(identifier, known), identifier
    assert identifiers_in("+1 (514) 555-0199", set())

    # Not vacuous: the series this broadcast created are there to be read.
    expected = {
        ("composer", "broadcast_composer_sms_segments_total"),
        ("dispatcher", "broadcast_dispatcher_failures_total"),
        ("dispatcher", "broadcast_dispatcher_deferrals_total"),
        ("dispatcher", "broadcast_dead_letters_total"),
        ("tracker", "broadcast_message_failures_total"),
        ("tracker", "broadcast_delivery_latency_seconds_bucket"),
    }
    async with asyncio.timeout(60):
        while True:
            scraped = await scrape()
            present = {(s, name) for s, samples in scraped.items() for _, name, _ in samples}
            if expected <= present:
                break
            await asyncio.sleep(0.5)

    leaks: list[str] = []
    for service, samples in scraped.items():
        for family, name, labels in samples:
            if family.startswith("faststream_"):
                allowed = FASTSTREAM_LABELS
            else:
                allowed = DOMAIN_LABELS.get(family, ANY_DOCUMENTED)
            for label, value in labels.items():
                if label in ("le", "quantile"):  # histogram bounds: numbers, by construction
                    float(value)
                    continue
                if label not in allowed:
                    leaks.append(f"{service} {name}: label {label}={value!r} is not documented")
                if found := identifiers_in(value, known):
                    leaks.append(f"{service} {name}: {label}={value!r} looks like {found}")
    assert leaks == []
