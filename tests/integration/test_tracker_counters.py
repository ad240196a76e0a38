"""The tracker's counters against the real database: duplicated and reordered delivery events
leave them exact, and a late deferral never overwrites a final state."""

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest

from services.tracker import store
from shared.events import (
    DeliveryDeferred,
    DeliveryFailed,
    MessageDelivered,
    TargetingCompleted,
)
from tests.integration.test_tracker_actions import run_started

pytestmark = pytest.mark.stack


async def test_duplicates_and_reordering_leave_exact_counters(service_pool: asyncpg.Pool) -> None:
    db = service_pool
    tenant, broadcast_id, run_id = f"t{uuid4().hex[:10]}", uuid4(), uuid4()
    refs = [
        {
            "tenant_id": tenant,
            "broadcast_id": broadcast_id,
            "run_id": run_id,
            "recipient_id": uuid4(),
            "contract_id": f"C-{i}",
            "channel": "email",
            "address": f"c{i}@x.example",
        }
        for i in range(4)
    ]
    later = datetime.now(UTC) + timedelta(minutes=5)
    delivered = [MessageDelivered(**r) for r in refs[:2]]
    failed = DeliveryFailed(**refs[2], reason="refused", detail="550")
    waiting = DeliveryDeferred(**refs[3], waiting_for="retry", due_at=later, attempts=1)
    late_retry = DeliveryDeferred(**refs[0], waiting_for="retry", due_at=later, attempts=1)

    # Outcomes before the run's start, each twice, a deferral after a success.
    await store.record_deliveries(db, [*delivered, failed, delivered[0]])
    _, again = await store.record_deliveries(db, [*delivered, failed])
    assert again == []  # nothing new
    await store.record_deferrals(db, [waiting, late_retry])
    await store.record_run_started(db, [run_started(tenant, broadcast_id, run_id)])
    await store.record_targeting(db, [_targeted(tenant, broadcast_id, run_id, 4, 4, 0)])
    (view,) = await store.running(db, [run_id], [run_id])
    counters = view.counters
    assert (counters.delivered, counters.failed, counters.pending_retry) == (2, 1, 1)
    assert counters.failed_by_reason == {"refused": 1}

    # The waiting message ends; the run completes with exact counters, once.
    _, recorded = await store.record_deliveries(db, [MessageDelivered(**refs[3])])
    assert [e.recipient_id for e in recorded] == [refs[3]["recipient_id"]]
    await store.complete_finished(db, [run_id])
    (done,) = [v for v in await store.unpublished_completions(db) if v.run_id == run_id]
    assert done.outcome == "partially_successful"
    assert (done.counters.delivered, done.counters.failed, done.counters.pending_retry) == (
        3,
        1,
        0,
    )
    actions = await db.fetchval("SELECT count(*) FROM tracker.actions WHERE run_id = $1", run_id)
    assert actions == 1


async def test_contract_counters_stay_exact_under_copies_and_reordering(
    service_pool: asyncpg.Pool,
) -> None:
    db = service_pool
    tenant, broadcast_id, run_id = f"t{uuid4().hex[:10]}", uuid4(), uuid4()

    def ref(contract_id: str, address: str) -> dict[str, Any]:
        return {
            "tenant_id": tenant,
            "broadcast_id": broadcast_id,
            "run_id": run_id,
            "recipient_id": uuid4(),
            "contract_id": contract_id,
            "channel": "email",
            "address": address,
        }

    # C-1 has two addresses, one refused, one delivered; C-2 one, refused; C-3 none; C-4 one,
    # still waiting for a retry.
    c1_bad, c1_good, c2, c3, c4 = (
        ref("C-1", "bad@x.example"),
        ref("C-1", "good@x.example"),
        ref("C-2", "only@x.example"),
        ref("C-3", ""),
        ref("C-4", "later@x.example"),
    )
    later = datetime.now(UTC) + timedelta(minutes=5)
    refused = [DeliveryFailed(**r, reason="refused") for r in (c1_bad, c2)]
    no_contact = DeliveryFailed(**c3, reason="no_contact")
    good = MessageDelivered(**c1_good)
    waiting = DeliveryDeferred(**c4, waiting_for="retry", due_at=later, attempts=1)

    # The refusals first, each twice; then C-1's delivery, twice, and its refusal once more.
    await store.record_deliveries(db, [*refused, no_contact, *refused])
    await store.record_deferrals(db, [waiting])
    await store.record_deliveries(db, [good, good, refused[0]])
    await store.record_targeting(db, [_targeted(tenant, broadcast_id, run_id, 4, 5, 1)])
    await store.record_run_started(db, [run_started(tenant, broadcast_id, run_id)])
    (view,) = await store.running(db, [run_id], [run_id])
    counters = view.counters
    assert (counters.contracts_targeted, counters.messages_targeted) == (4, 5)
    # C-4 is on its way: neither reached nor not reached yet.
    assert (counters.contracts_reached, counters.contracts_not_reached) == (1, 2)
    # Not asked to count them (progress.Recounts keeps the last counts): not read at all.
    (uncounted,) = await store.running(db, [run_id], [])
    assert (uncounted.counters.contracts_reached, uncounted.counters.contracts_not_reached) == (
        0,
        0,
    )
    assert uncounted.counters.failed_by_reason == counters.failed_by_reason
    assert counters.failed_by_reason == {"refused": 2, "no_contact": 1}

    await store.record_deliveries(db, [DeliveryFailed(**c4, reason="refused")])
    await store.complete_finished(db, [run_id])
    (done,) = [v for v in await store.unpublished_completions(db) if v.run_id == run_id]
    assert done.outcome == "partially_successful"
    assert (done.counters.contracts_reached, done.counters.contracts_not_reached) == (1, 3)
    reached = await db.fetchval(
        "SELECT contracts_reached FROM tracker.run_counters_v1 WHERE run_id = $1", run_id
    )
    assert reached == 1


def _targeted(
    tenant: str, broadcast_id: UUID, run_id: UUID, contracts: int, messages: int, unreachable: int
) -> TargetingCompleted:
    return TargetingCompleted(
        tenant_id=tenant,
        broadcast_id=broadcast_id,
        run_id=run_id,
        contracts=contracts,
        messages=messages,
        unreachable_contracts=unreachable,
    )
