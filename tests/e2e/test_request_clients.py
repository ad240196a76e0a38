"""A request client acts for its tenants only: the stack's services know one client,
`test-client`, holding `tenant-bound` (deploy/local/stack/config.py REQUEST_CLIENTS). It speaks
on its own topic, broadcast.requests.test-client. For its tenant it is answered and obeyed; for
any other, whichever service owns the command answers `forbidden`, once, and nothing happens."""

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from shared.client.commands import Commands, answers_to
from tests.e2e.audience import contract, create_command, load, new_tenant
from tests.stack import KAFKA

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


def assert_forbidden(answer: dict[str, Any], command: str, tenant: str) -> None:
    assert answer["type"] == "broadcast.rejected", answer
    assert (answer["reason"], answer["field"], answer["command"]) == (
        "forbidden",
        "tenant_id",
        command,
    )
    # The same words for every tenant, known or not: the answer reveals nothing of it.
    assert answer["message"] == "this client may not act for this tenant"


async def test_the_client_is_obeyed_for_its_tenant(db: asyncpg.Pool, as_client: Commands) -> None:
    # Contracts come from the platform, on its own topic, as always.
    await load(
        db,
        [contract(ITS_TENANT, "C-1", status="active", building="residential", emails=["a@b.ca"])],
    )
    accepted = await as_client.ask(create_command(ITS_TENANT, criteria=ONE_CONTRACT))
    assert accepted["type"] == "broadcast.accepted", accepted
    state = await db.fetchval(
        "SELECT state FROM targeting.broadcasts_v1 WHERE broadcast_id = $1::uuid AND "
        "tenant_id = $2",
        accepted["broadcast_id"],
        ITS_TENANT,
    )
    assert state == "draft"
    estimated = await as_client.ask(estimate(ITS_TENANT))
    assert estimated["type"] == "broadcast.estimated", estimated
    assert (estimated["tenant_id"], estimated["contracts"]) == (ITS_TENANT, 1)


async def test_the_client_speaking_for_another_tenant_is_forbidden_and_nothing_happens(
    db: asyncpg.Pool, as_client: Commands
) -> None:
    known, _ = new_tenant()  # a tenant with contracts: the answer must not differ
    await load(
        db, [contract(known, "C-1", status="active", building="residential", emails=["a@b.ca"])]
    )
    unknown, _ = new_tenant()
    for tenant in (known, unknown):
        created = await as_client.ask(create_command(tenant, criteria=ONE_CONTRACT))
        assert_forbidden(created, "create_broadcast", tenant)
        assert_forbidden(await as_client.ask(estimate(tenant)), "estimate_broadcast", tenant)
        assert await broadcasts_of(db, tenant) == 0


async def test_each_command_is_forbidden_once_by_the_service_that_owns_it(
    as_client: Commands,
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
    log = as_client.events
    await log.wait_until(lambda: all(answers_to(log.records, c["request_id"]) for c in sent), 60)
    answers = [answers_to(log.records, c["request_id"]) for c in sent]
    assert [len(a) for a in answers] == [1, 1, 1], answers
    for (answer,), command in zip(answers, sent, strict=True):
        assert_forbidden(answer, command["type"], other)


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
