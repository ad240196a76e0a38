"""The creator's notice through the real stack: `broadcast.completed` names the creator and the
starter; a tenant that configured `completion_notices` also emails them, each in their
language, through the whole pipeline, counted in no broadcast and opening no action."""

import asyncio
from email.message import EmailMessage
from typing import Any

import asyncpg
import pytest

from tests.e2e.audience import (
    OPEN_ALL_WEEK,
    actions_of,
    ask,
    completed,
    configure,
    contract,
    create_command,
    load,
    new_tenant,
    until_completed,
)
from tests.stack import EventLog, SmtpSink

pytestmark = pytest.mark.stack


def notices(domain: str, users: dict[str, str]) -> dict[str, Any]:
    """Settings with notices from the tenant's domain to `users` ({user id: language}), every
    field given, as the settings applied read back."""
    return {
        **OPEN_ALL_WEEK,
        "completion_notices": {
            "sender": f"diffusions@{domain}",
            "sender_name": "Déneigement Québec",
            "users": {
                user: {"email": f"{user}@{domain}", "language": language}
                for user, language in users.items()
            },
        },
    }


async def audience(db: asyncpg.Pool, tenant: str, domain: str) -> None:
    """Three customers; `ancien` bounces (see `bouncing`)."""
    await load(
        db,
        [
            contract(tenant, f"C-{i}", status="active", building="residential", emails=[email])
            for i, email in enumerate(
                [f"emilie@{domain}", f"john@{domain}", f"ancien@{domain}"], start=1
            )
        ],
    )


async def bouncing(smtp_sink: SmtpSink, domain: str) -> None:
    await smtp_sink.set_rules(
        [
            {
                "address": f"ancien@{domain}",
                "stage": "rcpt",
                "code": 550,
                "message": "5.1.1 User unknown",
            }
        ]
    )


async def mail_to(smtp_sink: SmtpSink, domain: str, address: str) -> list[EmailMessage]:
    return [m.message for m in await smtp_sink.messages(domain) if m.rcpt_tos == [address]]


async def notice_for(
    smtp_sink: SmtpSink, domain: str, address: str, timeout: float = 60
) -> EmailMessage:
    """The one notice `address` gets, once it arrived."""
    async with asyncio.timeout(timeout):
        while not (received := await mail_to(smtp_sink, domain, address)):
            await asyncio.sleep(0.5)
    (notice,) = received
    return notice


def html_of(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return str(part.get_content())


async def start(
    events: EventLog, tenant: str, created_by: str, started_by: str
) -> tuple[str, dict[str, Any]]:
    """Create the broadcast as `created_by`, start it as `started_by`; its id and completion."""
    create = create_command(tenant, requested_by=created_by, criteria=[])
    created = await ask(events, tenant, create)
    assert created["type"] == "broadcast.accepted", created
    broadcast_id = created["broadcast_id"]
    started = await ask(
        events,
        tenant,
        {"type": "start_broadcast", "broadcast_id": broadcast_id, "requested_by": started_by},
    )
    assert started["type"] == "broadcast.accepted", started
    return broadcast_id, await completed(events, broadcast_id)


async def test_a_french_creator_gets_the_french_notice_with_the_outcome_and_counts(
    db: asyncpg.Pool, events: EventLog, smtp_sink: SmtpSink
) -> None:
    tenant, domain = new_tenant()
    await configure(events, tenant, notices(domain, {"createur": "fr"}))
    await audience(db, tenant, domain)
    await bouncing(smtp_sink, domain)
    broadcast_id, done = await start(events, tenant, "createur", "createur")
    assert (done["outcome"], done["created_by"], done["notify"]) == (
        "partially_successful",
        "createur",
        ["createur"],
    )

    notice = await notice_for(smtp_sink, domain, f"createur@{domain}")
    assert notice["Subject"] == (
        "Diffusion « Surcharge pour excédent de neige »\u00a0: partiellement réussie"
    )
    assert notice["From"].addresses[0].addr_spec == f"diffusions@{domain}"
    html = html_of(notice)
    assert "est terminée&nbsp;: partiellement réussie." in html
    for line in (
        "Contrats ciblés&nbsp;: 3",
        "Contrats joints&nbsp;: 2",
        "Contrats non joints&nbsp;: 1",
        "Messages ciblés&nbsp;: 3",
        "Messages envoyés&nbsp;: 2",
        "Messages en échec&nbsp;: 1",
    ):
        assert f"<li>{line}</li>" in html, line

    # The notice is a run of its own: the broadcast's counters and actions are as they were.
    await until_completed(db, broadcast_id)
    async with asyncio.timeout(30):  # the tracker records the notice's delivery
        while not await db.fetchval(
            "SELECT 1 FROM tracker.run_counters_v1 WHERE broadcast_id = $1::uuid "
            "AND purpose = 'notice' AND state = 'completed'",
            broadcast_id,
        ):
            await asyncio.sleep(0.2)
    runs = await db.fetch(
        "SELECT purpose, state, delivered, failed FROM tracker.run_counters_v1 "
        "WHERE broadcast_id = $1::uuid ORDER BY purpose",
        broadcast_id,
    )
    assert [(r["purpose"], r["delivered"], r["failed"]) for r in runs] == [
        ("broadcast", 2, 1),
        ("notice", 1, 0),
    ]
    assert len(await actions_of(events, tenant, broadcast_id)) == 1  # the bounce only


async def test_an_english_starter_gets_the_english_notice_and_the_creator_the_french_one(
    db: asyncpg.Pool, events: EventLog, smtp_sink: SmtpSink
) -> None:
    tenant, domain = new_tenant()
    await configure(events, tenant, notices(domain, {"createur": "fr", "starter": "en"}))
    await audience(db, tenant, domain)
    _, done = await start(events, tenant, "createur", "starter")
    assert (done["outcome"], done["requested_by"], done["notify"]) == (
        "fully_successful",
        "starter",
        ["createur", "starter"],
    )
    english = await notice_for(smtp_sink, domain, f"starter@{domain}")
    assert english["Subject"] == "Broadcast “Surcharge pour excédent de neige”: fully successful"
    assert "<li>Messages sent: 3</li>" in html_of(english)
    french = await notice_for(smtp_sink, domain, f"createur@{domain}")
    assert french["Subject"].endswith("\u00a0: entièrement réussie")


async def test_no_notice_is_emailed_when_the_tenant_configured_none(
    db: asyncpg.Pool, events: EventLog, smtp_sink: SmtpSink
) -> None:
    tenant, domain = new_tenant()
    await configure(events, tenant, OPEN_ALL_WEEK)
    await audience(db, tenant, domain)
    broadcast_id, done = await start(events, tenant, "createur", "createur")
    assert done["notify"] == ["createur"]  # the event still names the person to tell

    # Targeting decides the notices of a completion before it marks the broadcast completed:
    # from then on, the first run's notice (none) was decided with the settings it had.
    await until_completed(db, broadcast_id)
    # Then the tenant asks for notices, and a resend of the same broadcast completes: its
    # notice goes through the same stages a whole run later than a notice of the first run
    # would have, so once it arrived, that one would have arrived too.
    await configure(events, tenant, notices(domain, {"createur": "fr"}))
    resent = await ask(
        events,
        tenant,
        {"type": "resend_broadcast", "broadcast_id": broadcast_id, "requested_by": "createur"},
    )
    assert resent["type"] == "broadcast.accepted", resent
    await completed(events, broadcast_id, resent["run_id"])
    await notice_for(smtp_sink, domain, f"createur@{domain}")
    assert len(await mail_to(smtp_sink, domain, f"createur@{domain}")) == 1
