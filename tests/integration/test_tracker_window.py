"""The auto-pause failure window in the database, as every tracker instance shares it: sums
over the run's own window, a fresh window after a resume, none once asked or completed."""

from uuid import UUID, uuid4

import asyncpg
import pytest

from services.tracker import store
from services.tracker.autopause import Attempts
from shared.events import AutoPause, RunPaused, RunResumed, TenantSettings
from tests.integration.test_tracker_actions import run_started

pytestmark = pytest.mark.stack

POLICY = AutoPause(failure_ratio=0.5, window_seconds=60, min_messages=10)
NOW = 1_900_000_000


async def _window(db: asyncpg.Pool, run_id: UUID, now: int = NOW) -> tuple[int, int] | None:
    found = await store.watched(db, [run_id], now)
    return (found[0].tried, found[0].failed) if found else None


async def test_instances_add_to_one_window_per_stretch(service_pool: asyncpg.Pool) -> None:
    db = service_pool
    tenant, broadcast_id, run_id = f"t{uuid4().hex[:10]}", uuid4(), uuid4()
    settings = TenantSettings(auto_pause=POLICY)
    await store.record_run_started(
        db, [run_started(tenant, broadcast_id, run_id, settings=settings)]
    )
    # Two instances, two partitions, the same second; then a second beyond the window.
    await store.add_attempts(db, NOW - 61, {run_id: Attempts(tried=50, failed=50)})
    await store.add_attempts(db, NOW, {run_id: Attempts(tried=4, failed=3)})
    await store.add_attempts(db, NOW, {run_id: Attempts(tried=6, failed=3)})
    assert await _window(db, run_id) == (10, 6)

    # Paused, then resumed: a new stretch and a fresh window.
    ids = {"tenant_id": tenant, "broadcast_id": broadcast_id, "run_id": run_id}
    await store.record_pauses(db, [RunPaused(**ids, reason="requested"), RunResumed(**ids)])
    assert await _window(db, run_id) == (0, 0)
    await store.add_attempts(db, NOW, {run_id: Attempts(tried=2, failed=2)})
    (run,) = await store.watched(db, [run_id], NOW)
    assert (run.resumes, run.tried, run.failed) == (1, 2, 2)

    # Asked to pause in this stretch: no instance judges it again.
    await store.record_auto_pause(db, run, "too many failures")
    assert await _window(db, run_id) is None
