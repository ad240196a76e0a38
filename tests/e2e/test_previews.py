"""Render-only previews (`render_preview`) through the real stack: the message as a given or
the sample contract would get it, per channel and language; nothing is sent, nothing counted."""

import json
from typing import Any
from uuid import uuid4

import asyncpg
import pytest

from tests.e2e.audience import (
    OPEN_ALL_WEEK,
    ask,
    configure,
    contract,
    create_command,
    load,
    new_tenant,
)
from tests.e2e.test_cli import broadcast
from tests.stack import EventLog, SmsSink, SmtpSink

pytestmark = pytest.mark.stack


def with_phone(record: dict[str, Any], phone: str) -> dict[str, Any]:
    record["contract"]["phones"] = [{"address": phone}]
    return record


def email_and_sms(tenant: str, sender: str, html_fr: str | None = None) -> dict[str, Any]:
    """The seed's broadcast on both channels, in French and English."""
    create = create_command(tenant, channels=["email", "sms"], criteria=[])
    create["sender"] = {"address": sender, "name": "Déneigement Québec"}
    if html_fr is not None:
        create["content"]["email"]["fr"]["html"] = html_fr
    create["content"]["sms"] = {
        "fr": {"text": "Bonjour {{ contract.client_name }}, solde : {{ contract.balance }}"},
        "en": {"text": "Hello {{ contract.client_name }}, balance: {{ contract.balance }}"},
    }
    return create


async def draft(events: EventLog, db: asyncpg.Pool, html_fr: str | None = None) -> dict[str, str]:
    """A tenant with two contracts (C-1 in French, C-2 in English, each with an email and a
    phone) and a draft broadcast to them; its tenant, domain and broadcast id."""
    tenant, domain = new_tenant()
    await configure(events, tenant, OPEN_ALL_WEEK)
    await load(
        db,
        [
            with_phone(
                contract(
                    tenant, "C-1", status="active", building="residential", emails=[f"c1@{domain}"]
                ),
                "+15145550101",
            ),
            with_phone(
                contract(
                    tenant,
                    "C-2",
                    status="active",
                    building="residential",
                    emails=[f"c2@{domain}"],
                    language="en",
                ),
                "+15145550102",
            ),
        ],
    )
    created = await ask(events, tenant, email_and_sms(tenant, f"avis@{domain}", html_fr))
    assert created["type"] == "broadcast.accepted", created
    return {"tenant": tenant, "domain": domain, "broadcast_id": created["broadcast_id"]}


async def render(events: EventLog, tenant: str, broadcast_id: str, **options: Any) -> Any:
    return await ask(
        events, tenant, {"type": "render_preview", "broadcast_id": broadcast_id, **options}
    )


async def test_a_render_only_preview_shows_the_message_and_sends_nothing(
    db: asyncpg.Pool, events: EventLog, smtp_sink: SmtpSink, sms_sink: SmsSink
) -> None:
    found = await draft(events, db)
    tenant, domain, broadcast_id = found["tenant"], found["domain"], found["broadcast_id"]

    # A given contract, in its own language by default.
    french = await render(events, tenant, broadcast_id, contract_id="C-1")
    assert french["type"] == "broadcast.rendered", french
    assert (french["contract_id"], french["channel"], french["language"]) == ("C-1", "email", "fr")
    assert french["email"]["subject"] == "Surcharge pour excédent de neige — C-1"
    assert "<p>Bonjour Client C-1,</p>" in french["email"]["html"]
    assert "Bonjour Client C-1," in french["email"]["text"]
    assert french["sms"] is None
    english = await render(events, tenant, broadcast_id, contract_id="C-2")
    assert (english["language"], english["email"]["subject"]) == (
        "en",
        "Excess snow surcharge — C-2",
    )
    # The same contract in the other language, when asked.
    asked = await render(events, tenant, broadcast_id, contract_id="C-1", language="en")
    assert asked["email"]["subject"] == "Excess snow surcharge — C-1"

    # The sample contract: no contract named.
    sample = await render(events, tenant, broadcast_id)
    assert (sample["type"], sample["contract_id"], sample["language"]) == (
        "broadcast.rendered",
        None,
        "fr",
    )
    assert sample["email"]["subject"] == "Surcharge pour excédent de neige — SAMPLE-0001"

    # SMS: the text as sent, its segments and encoding.
    sms = await render(events, tenant, broadcast_id, contract_id="C-1", channel="sms")
    assert sms["type"] == "broadcast.rendered" and sms["email"] is None, sms
    assert sms["sms"]["text"] == "Bonjour Client C-1, solde : 125,50 $"
    assert (sms["sms"]["encoding"], sms["sms"]["segments"]) == ("gsm7", 1)
    assert sms["sms"]["max_segments"] == 3
    sample_sms = await render(events, tenant, broadcast_id, channel="sms", language="en")
    assert sample_sms["sms"]["text"] == "Hello Camille Tremblay, balance: $1,234.56"

    # The CLI answers through the same query.
    code, shown = broadcast(
        "preview", broadcast_id, "--tenant", tenant, "--show", "--contract", "C-2"
    )
    assert (code, shown["type"], shown["email"]["subject"]) == (
        0,
        "broadcast.rendered",
        "Excess snow surcharge — C-2",
    )

    # A preview that is sent, after all the renders: once it arrived, it is the only message
    # the tenant's domain and phones got, and the only run anybody counted.
    sent = await ask(
        events,
        tenant,
        {"type": "preview_broadcast", "broadcast_id": broadcast_id, "to": f"moi@{domain}"},
    )
    assert sent["type"] == "broadcast.accepted", sent
    previewed = await events.wait_for(
        lambda e: e["type"] == "broadcast.previewed" and e["run_id"] == sent["run_id"]
    )
    assert previewed["delivered"] is True
    assert [m.rcpt_tos for m in await smtp_sink.messages(domain)] == [[f"moi@{domain}"]]
    phones = {"+15145550101", "+15145550102", "+15145550100"}
    assert await sms_sink.messages(phones) == []
    runs = await db.fetch(
        "SELECT run_id, purpose FROM tracker.run_counters_v1 WHERE broadcast_id = $1::uuid",
        broadcast_id,
    )
    assert [(str(r["run_id"]), r["purpose"]) for r in runs] == [(sent["run_id"], "preview")]
    state = await db.fetchval(
        "SELECT state FROM targeting.broadcasts_v1 WHERE broadcast_id = $1::uuid", broadcast_id
    )
    assert state == "draft"


async def test_a_template_that_fails_is_rejected_with_render_failed(
    db: asyncpg.Pool, events: EventLog
) -> None:
    found = await draft(events, db, html_fr="<p>{{ 1 // 0 }}</p>")
    tenant, broadcast_id = found["tenant"], found["broadcast_id"]
    failed = await render(events, tenant, broadcast_id, contract_id="C-1")
    assert failed["type"] == "broadcast.rejected", failed
    assert (failed["reason"], failed["field"], failed["command"]) == (
        "render_failed",
        "content.email.fr",
        "render_preview",
    )
    assert failed["message"] == "ZeroDivisionError: integer division or modulo by zero"
    # The English version has no error: it renders.
    english = await render(events, tenant, broadcast_id, contract_id="C-1", language="en")
    assert english["type"] == "broadcast.rendered", english

    # A value the contract lacks is named.
    missing = await draft(events, db, html_fr="<p>Visite : {{ contract.visit_at }}</p>")
    lacking = await render(events, missing["tenant"], missing["broadcast_id"], contract_id="C-1")
    assert (lacking["reason"], lacking["field"]) == ("render_failed", "content.email.fr")
    assert "contract.visit_at" in lacking["message"]


async def test_another_tenants_broadcast_or_contract_is_refused(
    db: asyncpg.Pool, events: EventLog
) -> None:
    theirs = await draft(events, db)
    ours = await draft(events, db)
    other_broadcast = await render(events, ours["tenant"], theirs["broadcast_id"])
    assert (other_broadcast["type"], other_broadcast["reason"], other_broadcast["field"]) == (
        "broadcast.rejected",
        "broadcast_not_found",
        "broadcast_id",
    )
    assert "Client" not in json.dumps(other_broadcast)  # nothing of theirs is shown
    unknown = await render(events, ours["tenant"], str(uuid4()))
    assert (unknown["reason"], unknown["field"]) == ("broadcast_not_found", "broadcast_id")
    # Their contracts are C-1 and C-2 too, but C-9 exists for nobody.
    no_contract = await render(events, ours["tenant"], ours["broadcast_id"], contract_id="C-9")
    assert (no_contract["reason"], no_contract["field"]) == ("contract_not_found", "contract_id")

    french_only = create_command(ours["tenant"], languages=["fr"])
    del french_only["content"]["email"]["en"]
    created = await ask(events, ours["tenant"], french_only)
    not_written = await render(
        events, ours["tenant"], created["broadcast_id"], language="en", contract_id="C-2"
    )
    assert (not_written["reason"], not_written["field"]) == ("invalid_field", "language")
    no_sms = await render(events, ours["tenant"], created["broadcast_id"], channel="sms")
    assert (no_sms["reason"], no_sms["field"]) == ("invalid_field", "channel")
    misspelt = await render(events, ours["tenant"], ours["broadcast_id"], langage="fr")
    assert (misspelt["reason"], misspelt["field"]) == ("invalid_field", "langage")
