"""A request client acts for its tenants only: the stack's services know one client,
`test-client`, holding `tenant-bound` (deploy/local/stack/config.py REQUEST_CLIENTS). It speaks
on its own topic, broadcast.requests.test-client. For its tenant it is answered and obeyed; for
any other, whichever service owns the command answers `forbidden`, once, and nothing happens.
Every answer to it, whichever service gives it, is on broadcast.events.test-client, which only
it may read, and nothing of it on broadcast.events, which is the platform's."""

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
import pytest

from shared.client.commands import Commands, answers_to
from tests.e2e.audience import ask, contract, create_command, load, new_tenant
from tests.stack import KAFKA, EventLog

pytestmark = pytest.mark.stack
REPO = Path(__file__).resolve().parents[2]
CLIENT, ITS_TENANT = "test-client", "tenant-bound"
ONE_CONTRACT = [{"field": "contract_id", "values": ["C-1"]}]


@pytest.fixture
async def as_client(stack: None) -> AsyncIterator[Commands]:
    """Commands sent as the test client, on its topic."""
    async with Commands(KAFKA, requested_by="crm-user", client=CLIENT) as commands:
        yield commands


async def broadcasts_of(db: asyncpg.Pool, tenant: str) -> int:
    count: int = await db.fetchval(
        "SELECT count(*) FROM targeting.broadcasts_v1 WHERE tenant_id = $1", tenant
    )
    return count


def estimate(tenant: str) -> dict[str, Any]:
    return {
        "type": "estimate_broadcast",
        "tenant_id": tenant,
        "criteria": ONE_CONTRACT,
        "channels": ["email"],
    }


async def assert_answered_to_the_client_only(
    events: EventLog, as_client: Commands, answers: Iterable[dict[str, Any]]
) -> None:
    """Nothing of the client's `answers` reached broadcast.events (opened before they were
    asked): no record there carries their request ids or names a broadcast they are about.
    And the platform's answer still goes there, and not to the client's topic."""
    platform = await ask(events, ITS_TENANT, estimate(ITS_TENANT))
    assert platform["type"] == "broadcast.estimated", platform
    # A wrong copy on broadcast.events would come about when the right one did: given time.
    await events.drain(2)
    await as_client.answers.drain(0.5)
    request_ids = {a["request_id"] for a in answers}
    broadcast_ids = {a["broadcast_id"] for a in answers if a.get("broadcast_id")}
    leaked = [
        e
        for e in events.records
        if e.get("request_id") in request_ids or e.get("broadcast_id") in broadcast_ids
    ]
    assert leaked == []
    assert not answers_to(as_client.answers.records, platform["request_id"])


def assert_forbidden(answer: dict[str, Any], command: str, tenant: str) -> None:
    assert answer["type"] == "broadcast.rejected", answer
    assert (answer["reason"], answer["field"], answer["command"]) == (
        "forbidden",
        "tenant_id",
        command,
    )
    # The same words for every tenant, known or not: the answer reveals nothing of it.
    assert answer["message"] == "this client may not act for this tenant"


async def test_the_client_is_obeyed_for_its_tenant_and_answered_on_its_topic_only(
    db: asyncpg.Pool, events: EventLog, as_client: Commands
) -> None:
    # Contracts come from the platform, on its own topic, as always.
    await load(
        db,
        [contract(ITS_TENANT, "C-1", status="active", building="residential", emails=["a@b.ca"])],
    )
    create = create_command(ITS_TENANT, criteria=ONE_CONTRACT)
    accepted = await as_client.ask(create)
    assert accepted["type"] == "broadcast.accepted", accepted
    broadcast_id = accepted["broadcast_id"]
    state = await db.fetchval(
        "SELECT state FROM targeting.broadcasts_v1 WHERE broadcast_id = $1::uuid AND "
        "tenant_id = $2",
        broadcast_id,
        ITS_TENANT,
    )
    assert state == "draft"
    estimated = await as_client.ask(estimate(ITS_TENANT))
    assert estimated["type"] == "broadcast.estimated", estimated
    assert (estimated["tenant_id"], estimated["contracts"]) == (ITS_TENANT, 1)
    # Replays, by construction (create) and remembered (rename): answered again, same topic.
    replayed = await as_client.ask(create)
    assert (replayed["type"], replayed["broadcast_id"]) == ("broadcast.accepted", broadcast_id)
    rename = {
        "type": "rename_broadcast",
        "tenant_id": ITS_TENANT,
        "request_id": f"req-{uuid4()}",
        "broadcast_id": broadcast_id,
        "name": "Renommée",
    }
    renamed = [await as_client.ask(rename) for _ in range(2)]
    assert [a["type"] for a in renamed] == ["broadcast.accepted"] * 2, renamed
    # The composer's answer to a render preview, a query, the tracker's answer, one with an
    # address, and the decoder's own rejection of an invalid command.
    rendered = await as_client.ask(
        {
            "type": "render_preview",
            "tenant_id": ITS_TENANT,
            "broadcast_id": broadcast_id,
            "contract_id": "C-1",
        }
    )
    assert rendered["type"] == "broadcast.rendered", rendered
    assert "Client C-1" in rendered["email"]["html"]
    described = await as_client.ask(
        {"type": "get_broadcast", "tenant_id": ITS_TENANT, "broadcast_id": broadcast_id}
    )
    assert described["type"] == "broadcast.described", described
    listed = await as_client.ask({"type": "list_actions", "tenant_id": ITS_TENANT})
    assert listed["type"] == "actions.listed", listed
    reenabled = await as_client.ask(
        {
            "type": "reenable_contact",
            "tenant_id": ITS_TENANT,
            "channel": "email",
            "address": "a@b.ca",
        }
    )
    assert reenabled["type"] == "contact.reenabled", reenabled
    invalid = await as_client.ask({**estimate(ITS_TENANT), "channels": ["fax"]})
    assert (invalid["reason"], invalid["field"]) == ("invalid_field", "channels[0]"), invalid
    await assert_answered_to_the_client_only(
        events,
        as_client,
        [accepted, estimated, replayed, *renamed, rendered, described, listed, reenabled, invalid],
    )


async def test_the_client_speaking_for_another_tenant_is_forbidden_and_nothing_happens(
    db: asyncpg.Pool, events: EventLog, as_client: Commands
) -> None:
    known, _ = new_tenant()  # a tenant with contracts: the answer must not differ
    await load(
        db, [contract(known, "C-1", status="active", building="residential", emails=["a@b.ca"])]
    )
    unknown, _ = new_tenant()
    answers = []
    for tenant in (known, unknown):
        created = await as_client.ask(create_command(tenant, criteria=ONE_CONTRACT))
        assert_forbidden(created, "create_broadcast", tenant)
        estimated = await as_client.ask(estimate(tenant))
        assert_forbidden(estimated, "estimate_broadcast", tenant)
        assert await broadcasts_of(db, tenant) == 0
        answers += [created, estimated]
    await assert_answered_to_the_client_only(events, as_client, answers)


async def test_each_command_is_forbidden_once_by_the_service_that_owns_it(
    events: EventLog, as_client: Commands
) -> None:
    other, _ = new_tenant()
    # Tracker's, targeting's, tracker's, on one partition (keyed by tenant) and read in order
    # by both services: once the third is answered the tracker has passed the first two, and
    # once the second is answered targeting has passed the first; a second answer to any
    # would already be in the log.
    sent = [
        await as_client.send(
            {"type": "resolve_action", "tenant_id": other, "action_id": 1, "resolution": "send"}
        ),
        await as_client.send(estimate(other)),
        await as_client.send({"type": "list_actions", "tenant_id": other}),
    ]
    log = as_client.answers
    await log.wait_until(lambda: all(answers_to(log.records, c["request_id"]) for c in sent), 60)
    answers = [answers_to(log.records, c["request_id"]) for c in sent]
    assert [len(a) for a in answers] == [1, 1, 1], answers
    for (answer,), command in zip(answers, sent, strict=True):
        assert_forbidden(answer, command["type"], other)
    await assert_answered_to_the_client_only(events, as_client, [a for (a,) in answers])


def test_the_cli_speaks_as_the_client_of_its_option(stack: None) -> None:
    other, _ = new_tenant()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "deploy.cli",
            "--json",
            "--client",
            CLIENT,
            "actions",
            "--tenant",
            other,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert done.returncode == 1, done.stderr
    assert_forbidden(json.loads(done.stdout), "list_actions", other)
