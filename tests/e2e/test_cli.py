"""The operator's `broadcast` command against the running stack, from a client file to a
finished broadcast and its follow-up actions."""

import asyncio
import json
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
import yaml

from tests.e2e.audience import (
    OPEN_ALL_WEEK,
    bouncing,
    contract,
    create_and_start,
    french_only,
    load,
    new_tenant,
)
from tests.stack import EventLog, SmtpSink

pytestmark = pytest.mark.stack
REPO = Path(__file__).resolve().parents[2]


def broadcast(*words: str) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "deploy.cli", "--json", *words],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    lines = done.stdout.strip().splitlines()
    return done.returncode, json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}


async def wait_until(db: asyncpg.Pool, query: str, *args: Any, timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while not await db.fetchval(query, *args):
            await asyncio.sleep(0.2)


async def test_from_a_client_file_to_a_finished_broadcast(
    db: asyncpg.Pool, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    tenant, domain = new_tenant()
    refused_address = await bouncing(smtp_sink, domain)
    clients = tmp_path / "clients.csv"
    clients.write_text(
        "contract_id,client_name,status,building_type,language,emails\n"
        f"C-1,Émilie Côté,active,residential,fr,emilie@{domain}\n"
        f"C-2,John Smith,active,residential,en,john@{domain}\n"
        f"C-3,Ancien Client,active,residential,fr,{refused_address}\n"
        f"C-4,Commerce Inc,active,commercial,fr,commerce@{domain}\n",
        encoding="utf-8",
    )
    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump(OPEN_ALL_WEEK))
    code, configured = broadcast("configure", str(settings), "--tenant", tenant)
    assert (code, configured["type"]) == (0, "tenant.configured")
    code, _ = broadcast("import", str(clients), "--tenant", tenant)
    assert code == 0
    await wait_until(
        db, "SELECT count(*) = 4 FROM targeting.contract_versions_v1 WHERE tenant_id = $1", tenant
    )
    await wait_until(db, "SELECT 1 FROM dispatcher.tenant_settings_v1 WHERE tenant_id = $1", tenant)

    code, estimate = broadcast(
        "estimate", "--tenant", tenant, "--where", "building_type=residential"
    )
    assert (code, estimate["contracts"], estimate["messages"]) == (0, 3, {"email": 3})

    spec = tmp_path / "avis.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "tenant_id": tenant,
                "name": "Avis de déneigement",
                "criteria": [{"field": "building_type", "values": ["residential"]}],
                "channels": ["email"],
                "languages": ["fr", "en"],
                "content": {
                    "email": {
                        "fr": {
                            "subject": "Avis",
                            "html": "<p>Bonjour {{ contract.client_name }}</p>",
                        },
                        "en": {
                            "subject": "Notice",
                            "html": "<p>Hello {{ contract.client_name }}</p>",
                        },
                    }
                },
                "sender": {"address": f"avis@{domain}", "name": "Déneigement"},
            },
            allow_unicode=True,
        ),
        encoding="utf-8",
    )
    code, created = broadcast("create", str(spec))
    assert (code, created["type"]) == (0, "broadcast.accepted")
    broadcast_id = created["broadcast_id"]

    code, previewed = broadcast(
        "preview", broadcast_id, "--tenant", tenant, "--to", f"moi@{domain}"
    )
    assert (code, previewed["command"]) == (0, "preview_broadcast")
    code, _ = broadcast("start", broadcast_id, "--tenant", tenant)
    assert code == 0
    code, refused = broadcast("start", broadcast_id, "--tenant", tenant)
    assert (code, refused["reason"]) == (1, "already_started")

    code, status = broadcast("status", broadcast_id, "--tenant", tenant, "--watch")
    assert code == 0
    assert (status["state"], status["outcome"]) == ("completed", "partially_successful")
    assert (status["delivered"], status["failed"]) == (2, 1)
    # The seed's counters: the contract whose only address bounced is not reached.
    assert (
        status["contracts_targeted"],
        status["contracts_reached"],
        status["contracts_not_reached"],
    ) == (3, 2, 1)
    # The preview is a run of its own: its email may land after the broadcast completed.
    async with asyncio.timeout(30):
        while await smtp_sink.count(domain) < 3:
            await asyncio.sleep(0.1)
    received = sorted(m.rcpt_tos[0] for m in await smtp_sink.messages(domain))
    assert received == sorted([f"emilie@{domain}", f"john@{domain}", f"moi@{domain}"])

    code, _ = broadcast("rename", broadcast_id, "Avis — novembre", "--tenant", tenant)
    assert code == 0
    code, second = broadcast("create", str(spec))  # another draft, waiting to be sent
    code, sent = broadcast("list", "--tenant", tenant, "--state", "sent")
    assert [
        (b["broadcast_id"], b["name"], b["targeted"], b["delivered"], b["failed"])
        for b in sent["broadcasts"]
    ] == [(broadcast_id, "Avis — novembre", 3, 2, 1)]
    assert [
        (b["contracts_targeted"], b["contracts_reached"], b["contracts_not_reached"])
        for b in sent["broadcasts"]
    ] == [(3, 2, 1)]
    code, pending = broadcast("list", "--tenant", tenant, "--state", "pending")
    assert [b["broadcast_id"] for b in pending["broadcasts"]] == [second["broadcast_id"]]

    code, listed = broadcast("actions", "--tenant", tenant, "--broadcast", broadcast_id)
    (action,) = listed["actions"]
    assert (code, action["address"], action["reason"]) == (0, refused_address, "refused")
    code, ignored = broadcast("actions", "ignore", str(action["action_id"]), "--tenant", tenant)
    assert (code, ignored["state"]) == (0, "ignored")
    code, refused = broadcast("actions", "send", str(action["action_id"]), "--tenant", tenant)
    assert (code, refused["reason"]) == (1, "already_resolved")


async def test_pause_resume_resend_and_a_campaign_of_chosen_customers(
    db: asyncpg.Pool, smtp_sink: SmtpSink, events: EventLog, tmp_path: Path
) -> None:
    tenant, domain = new_tenant()
    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump({**OPEN_ALL_WEEK, "email_per_second": 2}))
    assert broadcast("configure", str(settings), "--tenant", tenant)[0] == 0
    clients = tmp_path / "clients.csv"
    clients.write_text(
        "contract_id,client_name,status,building_type,emails\n"
        + "".join(f"C-{i},Client {i},active,residential,c{i}@{domain}\n" for i in range(60)),
        encoding="utf-8",
    )
    code, imported = broadcast("import", str(clients), "--tenant", tenant)
    assert (code, imported["imported"]) == (0, 60)
    await wait_until(db, "SELECT 1 FROM dispatcher.tenant_settings_v1 WHERE tenant_id = $1", tenant)
    spec = tmp_path / "campaign.yaml"
    definition: dict[str, Any] = {
        "tenant_id": tenant,
        "name": "Relance",
        "channels": ["email"],
        "languages": ["fr"],
        "content": {"email": {"fr": {"subject": "Relance", "html": "<p>Bonjour</p>"}}},
        "sender": {"address": f"ar@{domain}", "name": "Comptes clients"},
    }
    spec.write_text(yaml.safe_dump(definition), encoding="utf-8")
    chosen = ",".join(f"C-{i}" for i in range(0, 60, 2))  # the 30 selected customers
    code, created = broadcast("create", str(spec), "--contracts", chosen)
    broadcast_id = created["broadcast_id"]
    definition["content"]["email"]["fr"]["subject"] = "Relance de paiement"
    definition["criteria"] = [{"field": "contract_id", "values": chosen.split(",")}]
    spec.write_text(yaml.safe_dump(definition), encoding="utf-8")
    code, updated = broadcast("update", broadcast_id, str(spec))
    assert (code, updated["command"]) == (0, "update_broadcast")
    code, refused = broadcast("pause", broadcast_id, "--tenant", tenant)
    assert (code, refused["reason"]) == (1, "not_running")

    assert broadcast("start", broadcast_id, "--tenant", tenant)[0] == 0
    await wait_until(
        db,
        "SELECT count(*) >= 3 FROM dispatcher.deliveries_v1 WHERE tenant_id = $1 "
        "AND state = 'delivered'",
        tenant,
    )
    assert broadcast("pause", broadcast_id, "--tenant", tenant)[0] == 0
    code, status = broadcast("status", broadcast_id, "--tenant", tenant)
    assert (code, status["broadcast_state"]) == (0, "paused")
    # Once every message is delivered or held, none is in flight: the count at the sink is
    # final until the resume.
    quiet = await events.wait_for(
        lambda e: (
            e["type"] == "broadcast.progressed"
            and e["broadcast_id"] == broadcast_id
            and e["counters"]["delivered"] + e["counters"]["paused"] == 30
        )
    )
    assert await smtp_sink.count(domain) == quiet["counters"]["delivered"] < 30
    # The slow rate was for pausing mid-run; the rest and the resend need not crawl (a new
    # rate applies to a run already going: test_sms_delivery).
    settings.write_text(yaml.safe_dump({**OPEN_ALL_WEEK, "email_per_second": 200}))
    assert broadcast("configure", str(settings), "--tenant", tenant)[0] == 0
    assert broadcast("resume", broadcast_id, "--tenant", tenant)[0] == 0
    code, status = broadcast("status", broadcast_id, "--tenant", tenant, "--watch")
    assert (code, status["delivered"], status["run_number"]) == (0, 30, 1)
    received = Counter(r for m in await smtp_sink.messages(domain) for r in m.rcpt_tos)
    assert received == Counter({f"c{i}@{domain}": 1 for i in range(0, 60, 2)})
    assert {str(m.message["Subject"]) for m in await smtp_sink.messages(domain)} == {
        "Relance de paiement"
    }

    for unknown in ((), ("--include-unknown",)):
        code, refused = broadcast("resend", broadcast_id, "--failed", *unknown, "--tenant", tenant)
        assert (code, refused["reason"]) == (1, "nothing_to_resend")
    code, resent = broadcast("resend", broadcast_id, "--tenant", tenant)
    assert (code, resent["command"]) == (0, "resend_broadcast")
    code, status = broadcast("status", broadcast_id, "--tenant", tenant, "--watch")
    assert (code, status["run_id"], status["delivered"]) == (0, resent["run_id"], 30)
    assert status["run_number"] == 2
    code, refused = broadcast("cancel", broadcast_id, "--tenant", tenant)
    assert (code, refused["reason"]) == (1, "not_running")
    assert len(await smtp_sink.messages(domain)) == 60

    # One customer, a few seconds from now in the tenant's wall time (Toronto by default).
    del definition["criteria"]
    spec.write_text(yaml.safe_dump(definition), encoding="utf-8")
    code, later = broadcast("create", str(spec), "--contracts", "C-59")
    # Far enough ahead that the CLI, slow to start on a busy machine, still schedules it ahead.
    at = (datetime.now(ZoneInfo("America/Toronto")) + timedelta(seconds=15)).replace(tzinfo=None)
    code, scheduled = broadcast(
        "schedule", later["broadcast_id"], "--tenant", tenant, "--at", at.isoformat()
    )
    assert (code, scheduled["command"]) == (0, "schedule_broadcast")
    code, pending = broadcast("list", "--tenant", tenant, "--state", "pending")
    assert [b["broadcast_id"] for b in pending["broadcasts"]] == [later["broadcast_id"]]
    code, status = broadcast("status", later["broadcast_id"], "--tenant", tenant, "--watch")
    assert (code, status["delivered"]) == (0, 1)
    assert [m.rcpt_tos for m in await smtp_sink.messages(domain)].count([f"c59@{domain}"]) == 1


def test_every_command_has_help() -> None:
    commands = ["estimate", "create", "update", "preview", "start", "schedule", "pause", "resume"]
    commands += [
        "cancel",
        "resend",
        "rename",
        "list",
        "status",
        "messages",
        "variables",
        "criteria",
    ]
    for command in (*commands, "actions", "configure", "import"):
        done = subprocess.run(
            [sys.executable, "-m", "deploy.cli", command, "--help"],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        assert done.returncode == 0 and "usage: broadcast" in done.stdout
    for words in (
        ["launch"],
        ["create", "nowhere.yaml"],
        ["estimate", "--tenant", "t", "--where", "zone"],
        ["actions", "send", "--tenant", "t"],
        ["preview", "b", "--tenant", "t"],  # neither --to (send) nor --show
    ):
        bad = subprocess.run(
            [sys.executable, "-m", "deploy.cli", *words], capture_output=True, text=True, cwd=REPO
        )
        assert bad.returncode == 2, (words, bad.stderr)
        assert bad.stderr.strip() and "Traceback" not in bad.stderr


async def test_the_message_log_variables_and_criteria_in_both_languages(
    db: asyncpg.Pool, smtp_sink: SmtpSink, events: EventLog
) -> None:
    tenant, domain = new_tenant()
    refused_address = await bouncing(smtp_sink, domain)
    addresses = [f"a@{domain}", f"b@{domain}", refused_address]
    await load(
        db,
        [
            contract(tenant, f"C-{i}", status="active", building="residential", emails=[a])
            for i, a in enumerate(addresses)
        ],
    )
    broadcast_id = await create_and_start(events, french_only(tenant))
    code, status = broadcast("--lang", "en", "status", broadcast_id, "--tenant", tenant, "--watch")
    assert (code, status["delivered"], status["failed"]) == (0, 2, 1)
    assert (status["broadcast_state_label"], status["outcome_label"]) == (
        "finished",
        "partially successful",
    )
    code, listed = broadcast("list", "--tenant", tenant)
    (line,) = listed["broadcasts"]
    assert (line["state_label"], line["targeted"], line["delivered"], line["failed"]) == (
        "terminé",
        3,
        2,
        1,
    )

    code, failed = broadcast("messages", broadcast_id, "--tenant", tenant, "--state", "failed")
    (message,) = failed["messages"]
    assert (code, message["address"], message["reason"], message["state_label"]) == (
        0,
        refused_address,
        "refused",
        "échoué",
    )
    code, first = broadcast("messages", broadcast_id, "--tenant", tenant, "--limit", "2")
    assert (code, len(first["messages"])) == (0, 2)
    code, rest = broadcast(
        "messages",
        broadcast_id,
        "--tenant",
        tenant,
        "--limit",
        "2",
        "--cursor",
        first["next_cursor"],
    )
    assert (code, rest["next_cursor"]) == (0, None)
    assert sorted(m["address"] for m in first["messages"] + rest["messages"]) == sorted(addresses)
    code, refused = broadcast("messages", broadcast_id, "--tenant", tenant, "--run", "2")
    assert (code, refused["reason"], refused["field"]) == (1, "run_not_found", "run_number")
    code, refused = broadcast("messages", broadcast_id, "--tenant", tenant, "--limit", "1001")
    assert (code, refused["reason"], refused["field"]) == (1, "invalid_field", "limit")
    code, refused = broadcast("messages", broadcast_id, "--tenant", new_tenant()[0])
    assert (code, refused["reason"]) == (1, "broadcast_not_found")

    code, variables = broadcast("variables", "--tenant", tenant)
    assert (code, variables["variables"][1]["label"]) == (0, "Contrat (No)")
    code, variables = broadcast("--lang", "en", "variables", "--tenant", tenant)
    assert variables["variables"][1]["label"] == "Contract number"
    code, criteria = broadcast("criteria", "--tenant", tenant)
    status_field = next(c for c in criteria["criteria"] if c["code"] == "status")
    assert (code, status_field["label"]) == (0, "Statut")
    assert "À renouveler" in [v["label"] for v in status_field["values"]]
