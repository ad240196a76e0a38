"""A real Prometheus (Debian's package) scrapes the four services after a broadcast: every query
of the dashboards and alert rules parses, and every metric they use has data."""

import asyncio
import json
import re
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import pytest
import yaml

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
# Only present once something went wrong: FastStream creates them on the first exception or
# failed publish, and the stack should have had none.
ONLY_AFTER_ERRORS = {"faststream_received_processed_messages_exceptions_total"}


def dashboard_queries() -> list[str]:
    queries = []
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
) -> str:
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
    return broadcast_id


async def test_every_dashboard_and_alert_query_parses_and_has_data(
    db: asyncpg.Pool, smtp_sink: SmtpSink, api: httpx.AsyncClient
) -> None:
    rules = (await api.get("/api/v1/rules")).json()["data"]["groups"]
    assert sum(len(g["rules"]) for g in rules) == len(alert_queries())  # all loaded
    await a_broadcast_with_a_failure_a_retry_and_a_dead_letter(db, smtp_sink)
    names = {n for q in dashboard_queries() + alert_queries() for n in _METRIC.findall(q)}
    missing = set(names - ONLY_AFTER_ERRORS)
    deadline = time.monotonic() + 60
    while missing and time.monotonic() < deadline:
        for name in sorted(missing):
            if (await query(api, f'count({{__name__=~"{name}"}})'))["data"]["result"]:
                missing.discard(name)
        await asyncio.sleep(1)
    assert missing == set(), "no data for these metrics"
    for expr in dashboard_queries() + alert_queries():
        await query(api, grafana(expr))
    # The dashboard shows this broadcast: throughput, the failure by reason, the latency.
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


async def test_the_broadcast_dashboard_shows_one_broadcast_from_the_tracker(
    db: asyncpg.Pool, smtp_sink: SmtpSink
) -> None:
    broadcast_id = await a_broadcast_with_a_failure_a_retry_and_a_dead_letter(db, smtp_sink)
    queries = broadcast_dashboard_queries(broadcast_id)
    (counters,) = await db.fetch(queries["Counters"])
    assert dict(counters) == {
        "contracts": 21,
        "messages": 21,
        "delivered": 20,
        "failed": 1,
        "cancelled": 0,
        "waiting": 0,
    }
    (run,) = await db.fetch(queries["Run"])
    assert (run["state"], run["outcome"]) == ("completed", "partially_successful")
    assert [tuple(r) for r in await db.fetch(queries["Failures by reason"])] == [("refused", 1)]
    assert await db.fetch(queries["Waiting"]) == []
    (action,) = await db.fetch(queries["Manual actions"])
    assert (action["reason"], action["state"]) == ("refused", "open")
    assert sum(r["value"] for r in await db.fetch(queries["Outcomes over time"])) == 21
    choices = {r["__value"] for r in await db.fetch(queries["variable"])}
    assert broadcast_id in choices
