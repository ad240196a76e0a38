"""Templates, variables, languages, links, SMS and previews through the real stack."""

import asyncio
import time
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import pytest

from shared import links
from shared.local_mode import DEVELOPMENT_LINK_SECRET
from tests.e2e.audience import (
    OPEN_ALL_WEEK,
    actions_of,
    ask,
    configure,
    contract,
    create_and_start,
    load,
    new_tenant,
)
from tests.stack import EventLog, SmsSink, SmtpSink, publish_json

pytestmark = pytest.mark.stack

SECRET = DEVELOPMENT_LINK_SECRET.encode()  # the master secret the local stack runs with
NBSP = "\u00a0"


def detailed(tenant: str, number: str, **fields: Any) -> dict[str, Any]:
    record = contract(tenant, number, status="active", building="residential", emails=[])
    record["contract"].update(fields)
    return record


SETTINGS = {
    **OPEN_ALL_WEEK,
    "time_zone": "America/Toronto",
    "links": {
        kind: f"https://portail.example/{kind}?lang=fr"
        for kind in (
            "statement",
            "payment",
            "visits_log",
            "contract_pdf",
            "statement_pdf",
            "survey",
            "email_confirmation",
            "service_opt_out",
            "service_opt_in",
        )
    },
    "link_validity_days": 30,
    "sms_max_segments": 2,
}

ALL_VARIABLES_FR = """<p>{{ contract.client_name }} — {{ contract.number }} — {{ contract.service_address }}</p>
<p>Solde {{ contract.balance }} ; payé {{ contract.amount_paid }}</p>
<p>Transaction {{ contract.transaction_id }} / {{ contract.auth_code }}</p>
<p>Visite {{ contract.visit_at }} par {{ contract.driver_name }}</p>
<p>{{ contract.spreading }} | {{ contract.transport_10_wheels }} | {{ contract.transport_12_wheels }} \
| {{ contract.transport_semi_2 }} | {{ contract.transport_semi_3 }} | {{ contract.spring_cleaning }}</p>
<p><a href="{{ contract.statement_url }}">État</a> <a href="{{ contract.payment_url }}">Payer</a>
<a href="{{ contract.visits_log_url }}">Visites</a> <a href="{{ contract.contract_pdf_url }}">PDF</a>
<a href="{{ contract.statement_pdf_url }}">PDF état</a> <a href="{{ contract.survey_url }}">Sondage</a>
<a href="{{ contract.email_confirmation_url }}">Confirmer</a>
<a href="{{ contract.service_opt_out_url }}">Désengagement</a>
<a href="{{ contract.service_opt_in_url }}">Inscription</a></p>
<p>{{ contract.attributes.secteur }} — {{ recipient.address }} — {{ sender.name }} — {{ today }}</p>
<p><a href="{{ unsubscribe_url }}">Se désabonner</a></p>"""

DETAILS = {
    "transaction_id": "TX-991",
    "auth_code": "A-77",
    "visit_at": "2026-11-23T19:30:00Z",
    "driver_name": "Gaétan",
    "spreading": "Inclus",
    "transport_10_wheels": "2 voyages",
    "transport_12_wheels": "1 voyage",
    "transport_semi_2": "aucun",
    "transport_semi_3": "aucun",
    "spring_cleaning": "Oui",
}


async def test_every_variable_in_both_languages_with_a_pinned_template_version(
    db: asyncpg.Pool, smtp_sink: SmtpSink, events: EventLog
) -> None:
    tenant, domain = new_tenant()
    configured = await configure(events, tenant, SETTINGS)
    assert configured["type"] == "tenant.configured", configured
    fr = detailed(
        tenant,
        "C-1",
        client_name="Émilie <script>alert(1)</script>",
        emails=[{"address": f"fr@{domain}"}],
        balance="1234.56",
        amount_paid="99.5",
        details=DETAILS,
        attributes={"secteur": "Nord"},
    )
    en = detailed(
        tenant,
        "C-2",
        language="en",
        emails=[{"address": f"en@{domain}"}],
        balance="1234.56",
        details={"visit_at": "2026-07-01T13:05:00Z"},
    )
    # No transaction id: this contract fails with a clear reason, the others are sent.
    lacking = detailed(tenant, "C-3", emails=[{"address": f"lacking@{domain}"}])
    await load(db, [fr, en, lacking])

    v1 = {
        "email": {
            "fr": {"subject": "Avis d'été — {{ contract.number }}", "html": ALL_VARIABLES_FR},
            "en": {
                "subject": "Notice — {{ contract.number }}",
                "html": "<p>Balance {{ contract.balance }}, visit {{ contract.visit_at }}"
                "{% if contract.transaction_id %} tx {{ contract.transaction_id }}{% endif %}"
                "</p>",
            },
        }
    }
    saved = await ask(
        events,
        tenant,
        {"type": "save_template", "template_id": "avis", "name": "Avis", "content": v1},
    )
    assert (saved["type"], saved["version"]) == ("template.saved", 1), saved
    create = {
        "type": "create_broadcast",
        "tenant_id": tenant,
        "request_id": f"req-{uuid4()}",
        "requested_by": "user-7",
        "name": "Avis",
        "channels": ["email"],
        "languages": ["fr", "en"],
        "template_id": "avis",
        "sender": {
            "address": f"avis@{domain}",
            "name": "Déneigement Côté",
            "reply_to": f"service@{domain}",
        },
    }
    broadcast_id = await create_and_start(events, create)
    # A version saved after the start does not change the running broadcast.
    v2 = {"email": {lang: {"subject": "v2", "html": "v2"} for lang in ("fr", "en")}}
    resaved = await ask(
        events,
        tenant,
        {"type": "save_template", "template_id": "avis", "name": "Avis", "content": v2},
    )
    assert resaved["version"] == 2
    completed = await events.wait_for(
        lambda e: e["type"] == "broadcast.completed" and e["broadcast_id"] == broadcast_id
    )
    assert completed["counters"]["delivered"] == 2
    assert completed["counters"]["failed"] == 1
    (action,) = await actions_of(events, tenant, broadcast_id)
    assert (action["contract_id"], action["reason"]) == ("C-3", "missing_value")
    assert "contract.transaction_id" in action["detail"]

    received = {m.rcpt_tos[0]: m.message for m in await smtp_sink.messages(domain)}
    assert set(received) == {f"fr@{domain}", f"en@{domain}"}
    french = received[f"fr@{domain}"]
    assert french["Subject"] == "Avis d'été — C-1"
    assert french["From"].addresses[0].display_name == "Déneigement Côté"
    assert french["Reply-To"] == f"service@{domain}"
    assert french["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    html_part = french.get_body(("html",))
    assert html_part is not None
    html = html_part.get_content()
    assert "Émilie &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>" not in html
    assert f"Solde 1{NBSP}234,56{NBSP}$ ; payé 99,50{NBSP}$" in html
    assert "Transaction TX-991 / A-77" in html
    assert "Visite 23 novembre 2026 à 14 h 30 par Gaétan" in html
    assert "Inclus | 2 voyages | 1 voyage | aucun | aucun | Oui" in html
    assert f"Nord — fr@{domain} — Déneigement Côté — " in html
    text_part = french.get_body(("plain",))
    assert text_part is not None and "Solde 1" in text_part.get_content()

    # Every link is signed with the tenant's own key for this contract and its purpose, and
    # verifies; the tenant's links last its link_validity_days, the unsubscribe link the
    # composer's 60 days.
    hrefs = [part.split('"', 1)[0] for part in html.split('href="')[1:]]
    assert len(hrefs) == 10
    for href in hrefs:
        token = href.replace("&amp;", "&").split("token=", 1)[1]
        # Not `unscoped`: only a signature with the tenant's key derived from SECRET verifies.
        claims = links.verify(SECRET, token, time.time())
        assert (claims.tenant_id, claims.contract_id) == (tenant, "C-1")
        days = 60 if claims.purpose == "unsubscribe:email" else 30
        assert (days - 1) * 86_400 < claims.expires_at - time.time() <= days * 86_400
        if days == 30:
            assert href.startswith(f"https://portail.example/{claims.purpose}?lang=fr&amp;token=")

    english = received[f"en@{domain}"]
    assert english["Subject"] == "Notice — C-2"
    english_html = english.get_body(("html",))
    assert english_html is not None
    assert "Balance $1,234.56, visit July 1, 2026 at 9:05 AM</p>" in english_html.get_content()


async def test_unsubscribe_link_opts_the_address_out_for_good(
    db: asyncpg.Pool, smtp_sink: SmtpSink, events: EventLog
) -> None:
    tenant, domain = new_tenant()
    leaving, staying = f"leaving@{domain}", f"staying@{domain}"
    record = contract(tenant, "C-1", status="active", building="residential", emails=[leaving])
    other = contract(tenant, "C-2", status="active", building="residential", emails=[staying])
    await load(db, [record, other])
    create = {
        "type": "create_broadcast",
        "tenant_id": tenant,
        "request_id": f"req-{uuid4()}",
        "requested_by": "user-7",
        "name": "Avis",
        "channels": ["email"],
        "languages": ["fr"],
        "content": {"email": {"fr": {"subject": "Avis", "html": "<p>Bonjour</p>"}}},
        "sender": {"address": f"avis@{domain}"},
    }
    broadcast_id = await create_and_start(events, create)
    await events.wait_for(
        lambda e: e["type"] == "broadcast.completed" and e["broadcast_id"] == broadcast_id
    )
    mail = {m.rcpt_tos[0]: m.message for m in await smtp_sink.messages(domain)}[leaving]
    url = str(mail["List-Unsubscribe"]).strip("<>")
    async with httpx.AsyncClient(timeout=10) as http:
        tampered = url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB")
        assert (
            await http.post(tampered, data={"List-Unsubscribe": "One-Click"})
        ).status_code == 400
        page = await http.get(url)  # a mail scanner following the link changes nothing
        assert page.status_code == 200 and "<form" in page.text
        for _ in range(2):  # a second click is harmless
            clicked = await http.post(url, data={"List-Unsubscribe": "One-Click"})
            assert clicked.status_code == 200
    opted = await events.wait_for(lambda e: e["type"] == "contact.opted_out")
    assert (opted["tenant_id"], opted["contract_id"], opted["address"]) == (tenant, "C-1", leaving)

    # The platform sends the contract again without the opt-out: it stays opted out.
    again = {**record, "version": 2}
    await publish_json("audience.contracts", [(f"{tenant}:C-1", again)])
    async with asyncio.timeout(30):
        while (
            await db.fetchval(
                "SELECT version FROM targeting.contract_versions_v1 WHERE tenant_id = $1 AND contract_id = 'C-1'",
                tenant,
            )
            != 2
        ):
            await asyncio.sleep(0.2)
    estimate = await ask(events, tenant, {"type": "estimate_broadcast", "channels": ["email"]})
    assert estimate["messages"] == {"email": 1}
    assert estimate["opted_out_addresses"] == {"email": 1}


async def test_preview_goes_to_the_given_address_only(
    db: asyncpg.Pool, smtp_sink: SmtpSink, events: EventLog
) -> None:
    tenant, domain = new_tenant()
    await configure(events, tenant, OPEN_ALL_WEEK)  # started below: whatever the day
    await load(
        db,
        [
            contract(
                tenant, f"C-{i}", status="active", building="residential", emails=[f"c{i}@{domain}"]
            )
            for i in range(3)
        ],
    )
    create = {
        "type": "create_broadcast",
        "tenant_id": tenant,
        "request_id": f"req-{uuid4()}",
        "requested_by": "user-7",
        "name": "Avis",
        "channels": ["email"],
        "languages": ["fr"],
        "content": {
            "email": {"fr": {"subject": "Aperçu {{ contract.number }}", "html": "<p>Bonjour</p>"}}
        },
        "sender": {"address": f"avis@{domain}"},
    }
    created = await ask(events, tenant, create)
    broadcast_id = created["broadcast_id"]
    preview = {
        "type": "preview_broadcast",
        "broadcast_id": broadcast_id,
        "to": f"moi@{domain}",
        "contract_id": "C-2",
    }
    accepted = await ask(events, tenant, preview)
    assert accepted["type"] == "broadcast.accepted" and accepted["run_id"], accepted
    previewed = await events.wait_for(
        lambda e: e["type"] == "broadcast.previewed" and e["broadcast_id"] == broadcast_id
    )
    assert previewed["delivered"] is True and previewed["address"] == f"moi@{domain}"
    received = await smtp_sink.messages(domain)
    assert [(m.rcpt_tos, m.message["Subject"]) for m in received] == [
        ([f"moi@{domain}"], "Aperçu C-2")
    ]
    # The broadcast is still a draft: it can be started, and reaches its whole audience.
    bad_phone = await ask(
        events,
        tenant,
        {"type": "preview_broadcast", "broadcast_id": broadcast_id, "to": "514", "channel": "sms"},
    )
    assert (bad_phone["reason"], bad_phone["field"]) == ("invalid_field", "to")
    start = {"type": "start_broadcast", "broadcast_id": broadcast_id}
    assert (await ask(events, tenant, start))["type"] == "broadcast.accepted"
    completed = await events.wait_for(
        lambda e: e["type"] == "broadcast.completed" and e["broadcast_id"] == broadcast_id
    )
    assert completed["counters"]["delivered"] == 3
    assert await actions_of(events, tenant) == []


async def test_templates_are_validated_listed_and_deleted(events: EventLog) -> None:
    tenant, _ = new_tenant()
    content = {"email": {"fr": {"subject": "Avis", "html": "<p>{{ contract.number }}</p>"}}}
    bad = {"email": {"fr": {"subject": "Avis", "html": "<p>\n{{ contract.numero }}</p>"}}}
    rejected = await ask(
        events, tenant, {"type": "save_template", "template_id": "a", "name": "A", "content": bad}
    )
    assert rejected["reason"] == "invalid_template"
    assert rejected["field"] == "content.email.fr.html"
    assert "'contract.numero'" in rejected["message"] and "line 2" in rejected["message"]
    for template_id in ("a", "b"):
        saved = await ask(
            events,
            tenant,
            {"type": "save_template", "template_id": template_id, "name": "A", "content": content},
        )
        assert saved["version"] == 1
    replayed = {
        "type": "save_template",
        "request_id": f"req-{uuid4()}",
        "template_id": "a",
        "name": "A v2",
        "content": content,
    }
    assert (await ask(events, tenant, replayed))["version"] == 2
    assert (await ask(events, tenant, replayed))["version"] == 2  # a replay saves nothing
    listed = await ask(events, tenant, {"type": "list_templates"})
    assert [(t["template_id"], t["version"], t["name"]) for t in listed["templates"]] == [
        ("a", 2, "A v2"),
        ("b", 1, "A"),
    ]
    assert (await ask(events, tenant, {"type": "delete_template", "template_id": "a"}))[
        "type"
    ] == "template.deleted"
    create = {
        "type": "create_broadcast",
        "name": "x",
        "channels": ["email"],
        "languages": ["fr"],
        "template_id": "a",
        "sender": {"address": "a@b.example"},
    }
    refused = await ask(events, tenant, create)
    assert (refused["reason"], refused["field"]) == ("template_not_found", "template_id")
    other_tenant, _ = new_tenant()  # tenants never see each other's templates
    listed = await ask(events, other_tenant, {"type": "list_templates"})
    assert listed["templates"] == []


async def test_sms_segments_and_the_tenant_maximum(
    db: asyncpg.Pool, events: EventLog, sms_sink: SmsSink
) -> None:
    tenant, _ = new_tenant()
    await configure(events, tenant, {**OPEN_ALL_WEEK, "sms_max_segments": 1})
    base = 15_140_000_000 + uuid4().int % 9_000_000 * 100  # the sink keeps earlier runs' SMS
    short, long = f"+{base + 1}", f"+{base + 2}"
    await load(
        db,
        [
            detailed(tenant, "C-1", client_name="Gaétan", phones=[{"address": short}]),
            detailed(tenant, "C-2", client_name="Gaétan " + "x" * 60, phones=[{"address": long}]),
        ],
    )
    create = {
        "type": "create_broadcast",
        "tenant_id": tenant,
        "request_id": f"req-{uuid4()}",
        "requested_by": "user-7",
        "name": "SMS",
        "channels": ["sms"],
        "languages": ["fr"],
        # ê is outside GSM-7: UCS-2, 70 characters per single segment.
        "content": {"sms": {"fr": {"text": "Fenêtre de déneigement, {{ contract.client_name }}"}}},
        "sender": {"address": "avis@x.example"},
    }
    broadcast_id = await create_and_start(events, create)
    completed = await events.wait_for(
        lambda e: e["type"] == "broadcast.completed" and e["broadcast_id"] == broadcast_id
    )
    assert (completed["counters"]["delivered"], completed["counters"]["failed"]) == (1, 1)
    sent = await sms_sink.messages({short, long})
    assert [(m["to"], m["text"]) for m in sent] == [(short, "Fenêtre de déneigement, Gaétan")]
    (action,) = await actions_of(events, tenant, broadcast_id)
    assert (action["contract_id"], action["reason"]) == ("C-2", "sms_too_long")
    assert "at most 1" in action["detail"]
