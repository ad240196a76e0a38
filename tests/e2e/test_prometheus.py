"""A real Prometheus (Debian's package) scrapes the four services around a broadcast: every query
of the dashboards and alert rules parses, and every metric they use moved as the broadcast
must have moved it (gauges that read 0 once it is over excepted, by name and with the reason)."""

import asyncio
import json
import re
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import pytest
import yaml

from deploy.postgres.credentials import READER_ROLE
from shared.settings import local_database_url
from tests.e2e.audience import (
    contract,
    create_and_start,
    french_only,
    load,
    new_tenant,
)
from tests.stack import EventLog, SmtpSink, publish_json

pytestmark = pytest.mark.stack

REPO = Path(__file__).resolve().parents[2]
PORT = 19090
# Grafana's variables, as Grafana would substitute them.
GRAFANA = {"$__rate_interval": "1m", "$__range": "10m", '"$service"': '".*"'}


@dataclass(frozen=True)
class Moves:
    """`expr`, a sum over some series of a metric, grows by at least `by` while the test's
    broadcast runs (compared with its value before: a series born during the test counts from
    0, which `increase()` would miss)."""

    expr: str
    by: float
    why: str


# Every metric the dashboards and alert rules use, and what the test's broadcast must add to
# it. The broadcast: 21 contracts with one email each (20 delivered, one of them after a 450
# and a retry; one refused for good with a 550), and one record on broadcast.messages that no
# handler can parse. The selectors are the dashboards' and alerts' own. Lower bounds only:
# other work (a lease expiring from an earlier test) may add to the same series meanwhile.
MOVED: dict[str, tuple[Moves, ...]] = {
    "broadcast_targeting_recipients_total": (
        Moves(
            'broadcast_targeting_recipients_total{job="targeting"}',
            21,
            "targeting streams one recipient per message (in pages of up to 32 a record)",
        ),
    ),
    "faststream_published_messages_total": (
        Moves(
            'faststream_published_messages_total{job="composer",destination="broadcast.messages",status="success"}',
            1,
            "the composer publishes every rendered message, in pages of one run's",
        ),
        Moves(
            'faststream_published_messages_total{job="dispatcher",destination="broadcast.deliveries",status="success"}',
            22,
            "20 delivered, 1 failed and the retry's deferral",
        ),
        Moves(
            'faststream_published_messages_total{job="dispatcher",destination="broadcast.dead-letters",status="success"}',
            1,
            "the unparseable record is quarantined",
        ),
        Moves(
            'faststream_published_messages_total{job="targeting",destination="broadcast.events",status="success"}',
            3,
            "accepted (create), accepted (start), started",
        ),
        Moves(
            'faststream_published_messages_total{job="tracker",destination="broadcast.events",status="success"}',
            1,
            "completed",
        ),
    ),
    "faststream_received_messages_total": (
        Moves(
            'faststream_received_messages_total{job="dispatcher",handler="broadcast.messages"}',
            2,
            "the dispatcher receives the rendered messages (in pages of one run's: at least "
            "one) and the unparseable record",
        ),
    ),
    "faststream_received_processed_messages_total": (
        Moves(
            'faststream_received_processed_messages_total{job="dispatcher",handler="broadcast.messages",status="acked"}',
            1,
            "and handles them",
        ),
        Moves(
            'faststream_received_processed_messages_total{job="tracker",handler="broadcast.deliveries",status="acked"}',
            22,
            "the tracker handles every outcome, the deferral included",
        ),
    ),
    "faststream_received_processed_messages_duration_seconds_bucket": (
        Moves(
            'faststream_received_processed_messages_duration_seconds_bucket{job="tracker",handler="broadcast.deliveries",le="+Inf"}',
            1,
            "at least one batch of outcomes was handled (the histogram counts batches)",
        ),
    ),
    "faststream_published_messages_duration_seconds_bucket": (
        Moves(
            'faststream_published_messages_duration_seconds_bucket{job="dispatcher",destination="broadcast.deliveries",le="+Inf"}',
            1,
            "outcomes were published",
        ),
    ),
    "broadcast_messages_final_total": (
        Moves('broadcast_messages_final_total{channel="email",state="delivered"}', 20, "delivered"),
        Moves('broadcast_messages_final_total{channel="email",state="failed"}', 1, "refused"),
    ),
    "broadcast_message_failures_total": (
        Moves(
            'broadcast_message_failures_total{channel="email",reason="refused"}',
            1,
            "the 550 is a permanent refusal",
        ),
    ),
    "broadcast_delivery_latency_seconds_bucket": (
        Moves(
            'broadcast_delivery_latency_seconds_bucket{channel="email",le="+Inf"}',
            20,
            "one latency per delivered message",
        ),
    ),
    "broadcast_completion_seconds_bucket": (
        Moves(
            'broadcast_completion_seconds_bucket{size="up_to_100k",le="+Inf"}',
            1,
            "the run completed",
        ),
    ),
    "broadcast_dispatcher_failures_total": (
        # The alert watches reason="unknown_outcome", which this broadcast must not produce.
        Moves(
            'broadcast_dispatcher_failures_total{channel="email",reason="refused"}',
            1,
            "the dispatcher counts the refusal",
        ),
    ),
    "broadcast_dispatcher_deferrals_total": (
        Moves(
            'broadcast_dispatcher_deferrals_total{channel="email",waiting_for="retry"}',
            1,
            "the 450 is retried",
        ),
    ),
    "broadcast_dispatcher_provider_call_seconds_bucket": (
        Moves(
            'broadcast_dispatcher_provider_call_seconds_bucket{channel="email",le="+Inf"}',
            22,
            "21 first attempts and the retry",
        ),
    ),
    "broadcast_composer_messages_total": (
        Moves(
            'broadcast_composer_messages_total{channel="email",outcome="rendered"}',
            21,
            "every recipient renders",
        ),
    ),
    "broadcast_dead_letters_total": (
        Moves(
            'broadcast_dead_letters_total{job="dispatcher",topic="broadcast.messages"}',
            1,
            "the unparseable record",
        ),
    ),
}
# Gauges that legitimately read 0 once the broadcast is over: their series must exist.
MAY_BE_ZERO: dict[str, str] = {
    "faststream_received_messages_in_process": "messages in a handler right now: 0 when idle",
    "broadcast_runs_running": "0 once the run completed; sampled every 2 s, a run of a few "
    "seconds may never be seen running",
    "broadcast_oldest_running_seconds": "0 with no run running (same sampling)",
    "broadcast_consumer_lag_messages": "0 once every group has caught up",
    "broadcast_tenant_report_rate_max": "0 with no bounce nor complaint reported",
    "broadcast_hard_bounce_alert_rate": "a setting, published at start",
}
# Only present once something went wrong: FastStream creates them on the first exception or
# failed publish, and the stack should have had none.
ONLY_AFTER_ERRORS = {"faststream_received_processed_messages_exceptions_total"}


def dashboard_queries() -> list[str]:
    queries: list[str] = []
    for path in sorted((REPO / "deploy" / "grafana" / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            queries.extend(t["expr"] for t in panel.get("targets", []) if "expr" in t)
    return queries


def alert_queries() -> list[str]:
    rules = yaml.safe_load((REPO / "deploy" / "prometheus" / "alerts.yml").read_text())
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


def grafana(query: str) -> str:
    for variable, value in GRAFANA.items():
        query = query.replace(variable, value)
    return query


_METRIC = re.compile(r"\b((?:faststream|broadcast)_[a-z_]+)\b")


@pytest.fixture(scope="module")
def prometheus(stack: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("prometheus")
    assert binary, "Debian's prometheus package is not installed (make test installs it)"
    base = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.local.yml").read_text())
    base["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    for job in base["scrape_configs"]:
        job["scrape_interval"] = "1s"
    base["rule_files"] = [str(REPO / "deploy" / "prometheus" / "alerts.yml")]
    work = tmp_path_factory.mktemp("prometheus")
    config = work / "prometheus.yml"
    config.write_text(yaml.safe_dump(base))
    checked = subprocess.run(
        ["promtool", "check", "config", str(config)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{PORT}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(work / "prometheus.log").open("wb"),
    )
    try:
        deadline = time.monotonic() + 30
        while socket.socket().connect_ex(("127.0.0.1", PORT)) != 0:
            assert process.poll() is None, (work / "prometheus.log").read_text()
            assert time.monotonic() < deadline, "prometheus did not start"
            time.sleep(0.2)
        yield f"http://127.0.0.1:{PORT}"
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture
async def api(prometheus: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=prometheus, timeout=10) as client:
        yield client


async def query(api: httpx.AsyncClient, expr: str) -> dict[str, Any]:
    response = await api.get("/api/v1/query", params={"query": expr})
    body: dict[str, Any] = response.json()
    assert body.get("status") == "success", f"{expr}: {body.get('error')}"
    return body


async def a_broadcast_with_a_failure_a_retry_and_a_dead_letter(
    db: asyncpg.Pool, sink: SmtpSink
) -> tuple[str, str]:
    """The broadcast's tenant and id, once it completed."""
    tenant, domain = new_tenant()
    gone, busy = f"gone@{domain}", f"c0@{domain}"
    await sink.set_rules(
        [
            {"address": gone, "stage": "rcpt", "code": 550, "message": "5.1.1 User unknown"},
            {"address": busy, "stage": "rcpt", "code": 450, "message": "4.2.1 busy", "times": 1},
        ]
    )
    await load(
        db,
        [
            contract(tenant, f"C-{i}", status="active", building="residential", emails=[a])
            for i, a in enumerate([gone, *(f"c{n}@{domain}" for n in range(20))])
        ],
    )
    await publish_json("broadcast.messages", [(f"poison-{uuid4()}", {"type": "nonsense"})])
    log = await EventLog("broadcast.events").open()
    try:
        create = french_only(tenant)
        broadcast_id = await create_and_start(log, create)
        await log.wait_for(
            lambda e: e["type"] == "broadcast.completed" and e["broadcast_id"] == broadcast_id
        )
    finally:
        await log.close()
    return tenant, broadcast_id


async def value(api: httpx.AsyncClient, expr: str) -> float:
    """The sum of `expr`'s series now; 0 when it has none."""
    result = (await query(api, f"sum({expr})"))["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


async def scraped_once(api: httpx.AsyncClient, timeout: float = 60) -> None:
    """Until Prometheus has scraped the four services: a value read before the broadcast is
    the services' own, not the absence of a scrape."""
    async with asyncio.timeout(timeout):
        while await value(api, 'up{job=~"targeting|composer|dispatcher|tracker"} == 1') < 4:
            await asyncio.sleep(0.5)


async def test_every_dashboard_and_alert_query_parses_and_has_data(
    db: asyncpg.Pool, smtp_sink: SmtpSink, api: httpx.AsyncClient
) -> None:
    rules = (await api.get("/api/v1/rules")).json()["data"]["groups"]
    assert sum(len(g["rules"]) for g in rules) == len(alert_queries())  # all loaded
    names = {n for q in dashboard_queries() + alert_queries() for n in _METRIC.findall(q)}
    # Every metric a query uses is classified here, and nothing else: a new panel or a renamed
    # metric has to say what data it expects.
    assert names == MOVED.keys() | MAY_BE_ZERO.keys() | ONLY_AFTER_ERRORS
    await scraped_once(api)
    moves = [m for ms in MOVED.values() for m in ms]
    before = {m.expr: await value(api, m.expr) for m in moves}
    await a_broadcast_with_a_failure_a_retry_and_a_dead_letter(db, smtp_sink)

    behind: dict[str, str] = {}
    absent: set[str] = set()
    deadline = time.monotonic() + 60  # the last scrape and the tracker's 2 s gauges
    while True:
        behind = {}
        for m in moves:
            grown = await value(api, m.expr) - before[m.expr]
            if grown < m.by:
                behind[m.expr] = f"grew by {grown:g}, expected at least {m.by:g}: {m.why}"
        absent = {
            name
            for name in MAY_BE_ZERO
            if not (await query(api, f"count({name})"))["data"]["result"]
        }
        if not (behind or absent) or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    assert behind == {}, "metrics the broadcast should have moved"
    assert absent == set(), "no series at all"

    for expr in dashboard_queries() + alert_queries():
        await query(api, grafana(expr))
    # The dashboard's own expressions select this broadcast's series (a label typo in a panel
    # selects nothing). Existence only: rate() and increase() read 0 for a series born during
    # the test at its final value, which the comparison above already covers.
    shown = [
        'sum by (reason) (increase(broadcast_message_failures_total{reason="refused"}[5m]))',
        "histogram_quantile(0.99, sum by (le) (rate(broadcast_delivery_latency_seconds_bucket[5m])))",
        'max by (group) (broadcast_consumer_lag_messages{group="dispatcher.messages"})',
        "sum(increase(broadcast_dead_letters_total[5m]))",
    ]
    for expr in shown:
        assert (await query(api, expr))["data"]["result"], expr


def broadcast_dashboard_queries(broadcast_id: str) -> dict[str, str]:
    dashboard = json.loads((REPO / "deploy/grafana/dashboards/broadcast.json").read_text())
    grafana_sql = {
        "$broadcast": broadcast_id,
        "$__timeFilter(m.updated_at)": "m.updated_at > now() - interval '6 hours'",
    }
    queries = {}
    for panel in dashboard["panels"]:
        (target,) = panel["targets"]
        sql = target["rawSql"]
        for variable, value in grafana_sql.items():
            sql = sql.replace(variable, value)
        queries[panel["title"]] = sql
    (variable,) = dashboard["templating"]["list"]
    queries["variable"] = variable["query"]
    return queries


def operations_sql(title: str) -> str:
    dashboard = json.loads((REPO / "deploy/grafana/dashboards/operations.json").read_text())
    (panel,) = [p for p in dashboard["panels"] if p["title"] == title]
    (target,) = panel["targets"]
    sql: str = target["rawSql"]
    return sql


async def test_the_broadcast_dashboard_shows_one_broadcast_from_the_tracker(
    db: asyncpg.Pool, smtp_sink: SmtpSink
) -> None:
    tenant, broadcast_id = await a_broadcast_with_a_failure_a_retry_and_a_dead_letter(db, smtp_sink)
    queries = broadcast_dashboard_queries(broadcast_id)
    # As Grafana's datasource connects: the read-only role (deploy/postgres/roles.py).
    reader = await asyncpg.connect(local_database_url(READER_ROLE).get_secret_value())
    try:
        (counters,) = await reader.fetch(queries["Counters"])
        assert dict(counters) == {
            "contracts": 21,
            "reached": 20,
            "not_reached": 1,  # the one whose only address is refused
            "messages": 21,
            "delivered": 20,
            "failed": 1,
            "cancelled": 0,
            "waiting": 0,
        }
        (run,) = await reader.fetch(queries["Run"])
        assert (run["state"], run["outcome"]) == ("completed", "partially_successful")
        assert [tuple(r) for r in await reader.fetch(queries["Failures by reason"])] == [
            ("refused", 1)
        ]
        assert await reader.fetch(queries["Waiting"]) == []
        (action,) = await reader.fetch(queries["Manual actions"])
        assert (action["reason"], action["state"]) == ("refused", "open")
        assert sum(r["value"] for r in await reader.fetch(queries["Outcomes over time"])) == 21
        (today,) = await reader.fetch(queries["Delivery reports of its tenant"])
        assert (today["accepted"], today["hard_bounced"], today["complained"]) == (20, 0, 0)
        assert (today["hard_bounce_pct"], today["complaint_pct"]) == (0, 0)
        choices = {r["__value"] for r in await reader.fetch(queries["variable"])}
        assert broadcast_id in choices
        # The operations dashboard names the tenants the worst-tenant gauges cannot.
        tenants = await reader.fetch(operations_sql("Tenants by report rate, today and yesterday"))
        (row,) = [r for r in tenants if r["tenant_id"] == tenant]
        assert (row["accepted"], row["hard_bounced"], row["complained"]) == (20, 0, 0)
        assert (row["hard_bounce_pct"], row["complaint_pct"]) == (0, 0)
    finally:
        await reader.close()
