"""Whom a resend to the failures goes to, and opt-outs announced at least once, against the
real database."""

from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest
from aiokafka.errors import KafkaConnectionError

from services.targeting import store, transitions
from services.targeting.broadcasts import Rejection
from services.targeting.opt_outs import OptOuts
from shared.events import (
    ContactOptedOut,
    CreateBroadcast,
    DeliveryFailed,
    FailureReason,
)
from shared.ids import opt_out_event_id_for

pytestmark = pytest.mark.stack


async def completed_run(db: asyncpg.Pool, tenant: str, failed: int) -> tuple[UUID, UUID]:
    """A broadcast whose first run completed with `failed` failures: (broadcast, run)."""
    create = CreateBroadcast.model_validate(
        {
            "tenant_id": tenant,
            "request_id": "create",
            "requested_by": "u",
            "name": "n",
            "channels": ["email"],
            "languages": ["fr"],
            "content": {"email": {"fr": {"subject": "s", "html": "h"}}},
            "sender": {"address": "a@x.example"},
        }
    )
    broadcast_id = await store.create_broadcast(db, create)
    assert broadcast_id is not None
    run_id = await targeted(db, await transitions.start(db, tenant, broadcast_id, "start", "u"))
    await transitions.complete(db, [transitions.Completion(run_id, "partially_successful", failed)])
    return broadcast_id, run_id


async def targeted(db: asyncpg.Pool, run_id: UUID) -> UUID:
    """As if streamed: no targeting instance picks the run up (these runs are never sent)."""
    async with db.acquire() as connection:
        await store.mark_targeted(connection, run_id)
    return run_id


def failure(tenant: str, broadcast_id: UUID, run_id: UUID, n: int, reason: FailureReason) -> Any:
    return DeliveryFailed(
        tenant_id=tenant,
        broadcast_id=broadcast_id,
        run_id=run_id,
        recipient_id=uuid4(),
        contract_id=f"C-{n}",
        channel="email",
        address=f"c{n}@x.example",
        reason=reason,
    )


def closed(failed: DeliveryFailed) -> store.MessageKey:
    """The message whose action was resolved (or whose outcome was corrected)."""
    return (failed.run_id, failed.contract_id, failed.channel, failed.address)


async def resendable(db: asyncpg.Pool, run_id: UUID, include_unknown: bool) -> set[str]:
    async with db.acquire() as connection:
        found = await store.failed_recipients(connection, run_id, include_unknown)
    return {address for _, _, address in found}


async def test_a_resend_to_the_failures_leaves_out_unknown_outcomes_and_resolved_actions(
    service_pool: asyncpg.Pool,
) -> None:
    db, tenant = service_pool, f"t{uuid4().hex[:10]}"
    broadcast_id, run_id = await completed_run(db, tenant, failed=4)
    reasons: list[FailureReason] = ["refused", "unknown_outcome", "refused", "invalid_address"]
    refused, unknown, ignored, late = (
        failure(tenant, broadcast_id, run_id, n, reason) for n, reason in enumerate(reasons)
    )
    # The last action is closed before its failure reaches targeting (another topic).
    await store.close_failures(db, [closed(late), closed(late)])
    await store.record_failures(db, [refused, unknown, ignored, late, refused])
    await store.close_failures(db, [closed(ignored)])

    assert await resendable(db, run_id, include_unknown=False) == {"c0@x.example"}
    assert await resendable(db, run_id, True) == {"c0@x.example", "c1@x.example"}
    async with db.acquire() as connection:
        failures = await store.failures_of(connection, run_id, include_unknown=False)
    assert (failures.recorded, failures.resendable) == (4, 1)

    resent = await targeted(
        db, await transitions.resend(db, tenant, broadcast_id, "resend", "u", True, True)
    )
    async with db.acquire() as connection:
        run = await store.load_run(connection, resent)
    assert (run.only_failed_of, run.include_unknown) == (run_id, True)


async def test_nothing_is_resent_when_every_failure_was_taken_care_of(
    service_pool: asyncpg.Pool,
) -> None:
    db, tenant = service_pool, f"t{uuid4().hex[:10]}"
    broadcast_id, run_id = await completed_run(db, tenant, failed=2)
    unknown = failure(tenant, broadcast_id, run_id, 0, "unknown_outcome")
    ignored = failure(tenant, broadcast_id, run_id, 1, "refused")
    await store.record_failures(db, [unknown])
    with pytest.raises(Rejection) as early:
        await transitions.resend(db, tenant, broadcast_id, "r1", "u", True, False)
    assert early.value.code == "not_finished"  # one failure is not recorded yet
    await store.record_failures(db, [ignored])
    await store.close_failures(db, [closed(ignored)])
    with pytest.raises(Rejection) as nothing:
        await transitions.resend(db, tenant, broadcast_id, "r2", "u", True, False)
    assert nothing.value.code == "nothing_to_resend"
    assert "unknown outcome" in nothing.value.message
    resent = await targeted(
        db, await transitions.resend(db, tenant, broadcast_id, "r3", "u", True, True)
    )
    assert await resendable(db, run_id, include_unknown=True) == {"c0@x.example"}
    assert resent != run_id


class Events:
    """Stands for the broadcast.events publisher; fails while `down`."""

    def __init__(self) -> None:
        self.down = False
        self.published: list[ContactOptedOut] = []

    async def publish(
        self, message: ContactOptedOut, *, key: bytes | None = None, no_confirm: bool = False
    ) -> None:
        if self.down:
            raise KafkaConnectionError()
        self.published.append(message)


async def test_an_unsubscribe_click_holds_when_its_announcement_is_lost(
    service_pool: asyncpg.Pool,
) -> None:
    # Within a few seconds: after that, the running targeting would announce it itself
    # (tests/faults/test_lost_publishes.py checks that repair).
    db, tenant = service_pool, f"t{uuid4().hex[:10]}"
    events = Events()
    opt_outs = OptOuts(lambda: db, events, late_after=5.0, per_tick=1000, tick=1.0)
    events.down = True
    await opt_outs.record(tenant, "email", " Leaving@X.example", "C-1")  # the click still works
    events.down = False
    await opt_outs.record(tenant, "email", "leaving@x.example", "C-1")  # a second click
    await opt_outs.announce_late()  # too recent: its click may still be announcing it
    assert [e for e in events.published if e.tenant_id == tenant] == []
    (lost,) = [o for o in await store.unannounced_opt_outs(db, 0, 1000) if o.tenant_id == tenant]
    assert lost == store.OptOut(tenant, "email", "leaving@x.example", "C-1")

    await opt_outs.record(tenant, "sms", "+15145550000", "C-2")  # announced at once
    (announced,) = [e for e in events.published if e.tenant_id == tenant]
    assert (announced.contract_id, announced.channel, announced.address) == (
        "C-2",
        "sms",
        "+15145550000",
    )
    assert announced.event_id == opt_out_event_id_for(tenant, "sms", "+15145550000")
    left = [o for o in await store.unannounced_opt_outs(db, 0, 1000) if o.tenant_id == tenant]
    assert left == [lost]
    await store.mark_opt_out_announced(db, lost)  # nothing of this test for targeting to announce
