"""The ledger's pause: a message parked for a paused run waits with no due time, is released by
the resume, and never takes over a claim another dispatcher holds."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import asyncpg
import pytest

from services.dispatcher import ledger
from shared.db import create_pool
from shared.events import MessageRendered
from tests.stack import DATABASE_URL

pytestmark = pytest.mark.stack


@pytest.fixture
async def pool(stack: None) -> AsyncIterator[asyncpg.Pool]:
    opened = await create_pool(DATABASE_URL, size=2)
    yield opened
    await opened.close()


def message(run_id: object) -> MessageRendered:
    return MessageRendered(
        tenant_id=f"t{uuid4().hex[:10]}",
        broadcast_id=uuid4(),
        run_id=run_id,
        recipient_id=uuid4(),
        contract_id="C-1",
        channel="email",
        address="a@pause.example",
        sender="avis@deneigement.example",
        body="Subject: x\r\n\r\nBonjour\r\n",
    )


async def row(pool: asyncpg.Pool, m: MessageRendered) -> asyncpg.Record:
    found = await pool.fetchrow(
        "SELECT state, waiting_for, due_at, lease_until FROM dispatcher.deliveries "
        "WHERE recipient_id = $1",
        m.recipient_id,
    )
    assert found is not None
    return found


async def test_held_until_resumed_and_a_live_claim_is_left_alone(pool: asyncpg.Pool) -> None:
    run_id = uuid4()
    await ledger.pause_run(pool, run_id)
    held, claimed_elsewhere = message(run_id), message(run_id)
    lease = datetime.now(UTC) + timedelta(minutes=5)
    assert (await ledger.claim(pool, [claimed_elsewhere], lease)).claimed == {
        claimed_elsewhere.recipient_id
    }
    # Both came again from Kafka (a redelivery) after the pause: parked, not claimed by us.
    parked = await ledger.schedule(
        pool,
        [ledger.Wait(m, None, "paused", 0, ours=False) for m in (held, claimed_elsewhere)],
    )
    assert [w.due_at for w in parked] == [None, None]
    assert tuple(await row(pool, held))[:3] == ("scheduled", "paused", None)
    other = await row(pool, claimed_elsewhere)
    assert (other["state"], other["lease_until"]) == ("claimed", lease)  # not taken over

    soon = datetime.now(UTC) + timedelta(seconds=1)
    await ledger.resume_run(pool, run_id)
    released = await row(pool, held)
    assert released["state"] == "scheduled" and released["due_at"] <= soon

    # Parked after the resume committed: due at once, not held forever.
    late = message(run_id)
    (again,) = await ledger.schedule(pool, [ledger.Wait(late, None, "paused", 0, ours=False)])
    assert again.due_at is not None and (await row(pool, late))["due_at"] is not None
