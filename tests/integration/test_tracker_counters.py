"""The tracker's counters against the real database: duplicated and reordered delivery events
leave them exact, and a late deferral never overwrites a final state."""

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import asyncpg
import pytest

from services.tracker import store
from shared.events import (
    DeliveryDeferred,
    DeliveryFailed,
    MessageDelivered,
    RunStarted,
    TargetingCompleted,
)

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
    await store.record_run_started(
        db,
        [
            RunStarted.model_validate(
                {
                    "tenant_id": tenant,
                    "broadcast_id": broadcast_id,
                    "run_id": run_id,
                    "name": "n",
                    "requested_by": "u",
                    "channels": ["email"],
                    "languages": ["fr"],
                    "content": {"email": {"fr": {"subject": "s", "html": "h"}}},
                    "sender": {"address": "a@x.example"},
                }
            )
        ],
    )
    await store.record_targeting(
        db,
        [
            TargetingCompleted(
                tenant_id=tenant,
                broadcast_id=broadcast_id,
                run_id=run_id,
                contracts=4,
                messages=4,
                unreachable_contracts=0,
            )
        ],
    )
    (view,) = await store.running(db, [run_id])
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
