"""The ledger's pause: a message parked for a paused run waits with no due time, is released by
the resume, and never takes over a claim another dispatcher holds."""

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import asyncpg
import pytest

from services.dispatcher import ledger
from shared.events import MessageRendered

pytestmark = pytest.mark.stack


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


async def row(service_pool: asyncpg.Pool, m: MessageRendered) -> asyncpg.Record:
    found = await service_pool.fetchrow(
        "SELECT state, waiting_for, due_at, claim_token FROM dispatcher.deliveries "
        "WHERE recipient_id = $1",
        m.recipient_id,
    )
    assert found is not None
    return found


async def test_held_until_resumed_and_a_live_claim_is_left_alone(
    service_pool: asyncpg.Pool,
) -> None:
    run_id = uuid4()
    await ledger.pause_run(service_pool, run_id)
    held, claimed_elsewhere = message(run_id), message(run_id)
    elsewhere = ledger.Claimant(f"elsewhere-{uuid4()}", 1)
    claims = await ledger.claim(service_pool, [claimed_elsewhere], elsewhere)
    assert list(claims.claimed) == [claimed_elsewhere.recipient_id]
    # Both came again from Kafka (a redelivery) after the pause: parked, not claimed by us.
    parked = await ledger.schedule(
        service_pool,
        [ledger.Wait(m, None, "paused", 0) for m in (held, claimed_elsewhere)],
    )
    assert [w.due_at for w in parked] == [None, None]
    assert tuple(await row(service_pool, held))[:3] == ("scheduled", "paused", None)
    other = await row(service_pool, claimed_elsewhere)
    token = claims.claimed[claimed_elsewhere.recipient_id]
    assert (other["state"], other["claim_token"]) == ("claimed", token)  # not taken over

    soon = datetime.now(UTC) + timedelta(seconds=1)
    await ledger.resume_run(service_pool, run_id)
    released = await row(service_pool, held)
    assert released["state"] == "scheduled" and released["due_at"] <= soon

    # Parked after the resume committed: due at once, not held forever.
    late = message(run_id)
    (again,) = await ledger.schedule(service_pool, [ledger.Wait(late, None, "paused", 0)])
    assert again.due_at is not None and (await row(service_pool, late))["due_at"] is not None
