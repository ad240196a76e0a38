"""Fenced claims in the ledger: only a claim's holder records its outcome; a claim settled as
unknown while its holder was silent takes the holder's real outcome as a correction, once."""

from datetime import timedelta
from uuid import UUID, uuid4

import asyncpg
import pytest

from services.dispatcher import instance, ledger
from services.dispatcher.policy import Attempt, outcome_unknown
from shared.events import MessageRendered

pytestmark = pytest.mark.stack

DELIVERED = Attempt("accepted", 250, "2.0.0 queued")
# Only instances silent this long are taken over here: no other test's live claim is touched.
LONG_AGO = timedelta(days=9)


def message() -> MessageRendered:
    return MessageRendered(
        tenant_id=f"t{uuid4().hex[:10]}",
        broadcast_id=uuid4(),
        run_id=uuid4(),
        recipient_id=uuid4(),
        contract_id="C-1",
        channel="email",
        address="a@claims.example",
        sender="avis@deneigement.example",
        body="Subject: x\r\n\r\nBonjour\r\n",
    )


async def state(pool: asyncpg.Pool, m: MessageRendered) -> str:
    found: str = await pool.fetchval(
        "SELECT state FROM dispatcher.deliveries WHERE recipient_id = $1", m.recipient_id
    )
    return found


async def claimed_by(pool: asyncpg.Pool, who: ledger.Claimant, m: MessageRendered) -> int:
    claims = await ledger.claim(pool, [m], who)
    return claims.claimed[m.recipient_id]


async def silence(pool: asyncpg.Pool, who: ledger.Claimant) -> None:
    await pool.execute(
        "UPDATE dispatcher.instances SET heartbeat_at = now() - interval '10 days' "
        "WHERE instance_id = $1",
        who.instance_id,
    )


def ids(refs: list[ledger.Ref]) -> set[UUID]:
    return {r.recipient_id for r in refs}


async def test_a_silent_holders_late_outcome_corrects_the_unknown_once(
    service_pool: asyncpg.Pool,
) -> None:
    slow = await instance.register(service_pool, f"slow-{uuid4()}")
    other = await instance.register(service_pool, f"other-{uuid4()}")
    m = message()
    token = await claimed_by(service_pool, slow, m)

    # While the holder beats, nobody takes its claim.
    assert m.recipient_id not in ids(await ledger.settle_abandoned(service_pool, other, LONG_AGO))
    await silence(service_pool, slow)
    # Not before the other instance is itself steady (None: it just came back).
    assert m.recipient_id not in ids(await ledger.settle_abandoned(service_pool, other, None))
    settled = await ledger.settle_abandoned(service_pool, other, LONG_AGO)
    assert m.recipient_id in ids(settled)
    assert await state(service_pool, m) == "unknown"

    late = await ledger.record(service_pool, {m.recipient_id: DELIVERED}, {m.recipient_id: token})
    assert (late.applied, late.corrected) == (set(), {m.recipient_id})
    assert await state(service_pool, m) == "delivered"
    again = await ledger.record(service_pool, {m.recipient_id: DELIVERED}, {m.recipient_id: token})
    assert (again.applied, again.corrected) == (set(), set())


async def test_only_the_claims_holder_records_and_unknown_stays_unknown(
    service_pool: asyncpg.Pool,
) -> None:
    holder = await instance.register(service_pool, f"holder-{uuid4()}")
    m = message()
    token = await claimed_by(service_pool, holder, m)
    stranger = await ledger.record(
        service_pool, {m.recipient_id: DELIVERED}, {m.recipient_id: token + 1}
    )
    assert (stranger.applied, stranger.corrected) == (set(), set())
    assert await state(service_pool, m) == "claimed"

    # Settled as unknown, then the holder's own answer is unknown too: nothing to correct.
    await silence(service_pool, holder)
    other = await instance.register(service_pool, f"other-{uuid4()}")
    await ledger.settle_abandoned(service_pool, other, LONG_AGO)
    lost = {m.recipient_id: outcome_unknown("connection lost during DATA")}
    unchanged = await ledger.record(service_pool, lost, {m.recipient_id: token})
    assert (unchanged.applied, unchanged.corrected) == (set(), set())
    assert await state(service_pool, m) == "unknown"


async def test_a_restarted_instance_settles_its_earlier_lifes_claims_at_once(
    service_pool: asyncpg.Pool,
) -> None:
    name = f"restarted-{uuid4()}"
    first = await instance.register(service_pool, name)
    m, taken_now = message(), message()
    await claimed_by(service_pool, first, m)
    second = await instance.register(service_pool, name)
    assert second == ledger.Claimant(name, first.life + 1)
    await claimed_by(service_pool, second, taken_now)

    # No takeover delay and no steadiness needed for one's own earlier life.
    settled = ids(await ledger.settle_abandoned(service_pool, second, None))
    assert m.recipient_id in settled and taken_now.recipient_id not in settled
    assert (await state(service_pool, m), await state(service_pool, taken_now)) == (
        "unknown",
        "claimed",
    )


async def test_an_outcome_whose_commit_answer_was_lost_is_still_published_once_tried_again(
    service_pool: asyncpg.Pool,
) -> None:
    """The database died after committing an outcome but before answering: the holder tries
    again (`again=True`) and must still learn the outcome is recorded, so that its event is
    published; a plain record would find nothing to apply and the message would go unannounced
    (found by the database-kill fault test: 16 deliveries the tracker never heard of)."""
    holder = await instance.register(service_pool, f"holder-{uuid4()}")
    m, corrected = message(), message()
    token = await claimed_by(service_pool, holder, m)
    first = await ledger.record(service_pool, {m.recipient_id: DELIVERED}, {m.recipient_id: token})
    assert first.applied == {m.recipient_id}

    lost = await ledger.record(service_pool, {m.recipient_id: DELIVERED}, {m.recipient_id: token})
    assert (lost.applied, lost.corrected) == (set(), set())  # what a plain retry concluded
    again = await ledger.record(
        service_pool, {m.recipient_id: DELIVERED}, {m.recipient_id: token}, again=True
    )
    assert (again.applied, again.corrected) == ({m.recipient_id}, set())
    assert await state(service_pool, m) == "delivered"

    # A correction whose answer was lost is still a correction when tried again.
    slow = await instance.register(service_pool, f"slow-{uuid4()}")
    other = await instance.register(service_pool, f"other-{uuid4()}")
    late_token = await claimed_by(service_pool, slow, corrected)
    await silence(service_pool, slow)
    assert corrected.recipient_id in ids(
        await ledger.settle_abandoned(service_pool, other, LONG_AGO)
    )
    outcome, tokens = {corrected.recipient_id: DELIVERED}, {corrected.recipient_id: late_token}
    assert (await ledger.record(service_pool, outcome, tokens)).corrected == {
        corrected.recipient_id
    }
    again = await ledger.record(service_pool, outcome, tokens, again=True)
    assert (again.applied, again.corrected) == (set(), {corrected.recipient_id})

    # Another outcome than the one recorded is not ours to claim.
    other_outcome = {m.recipient_id: outcome_unknown("x")}
    refused = await ledger.record(service_pool, other_outcome, {m.recipient_id: token}, again=True)
    assert (refused.applied, refused.corrected) == (set(), set())
