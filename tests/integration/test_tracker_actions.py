"""Manual actions against the real database: each is resolved once, a replay changes nothing,
a resend to the failures closes the ones it sends again, and an auto-pause is kept until it is
published."""

from functools import partial
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest

from services.tracker import commands, store
from services.tracker.settings import Settings
from shared.events import (
    ActionClosed,
    ActionResolved,
    ActionView,
    AutoPause,
    BroadcastRejected,
    DeliveryFailed,
    FailureReason,
    FollowUpRequested,
    ResolveAction,
    RunStarted,
    TargetingCompleted,
)

pytestmark = pytest.mark.stack

# The limits the tracker runs with.
SETTINGS = Settings()
answer = partial(commands.answer, history_limit=SETTINGS.history_limit)


class Runs:
    """Stands for the broadcast.runs publisher: keeps what is published."""

    def __init__(self) -> None:
        self.published: list[Any] = []

    async def publish(
        self, message: Any, *, key: bytes | None = None, no_confirm: bool = False
    ) -> None:
        self.published.append(message)


def run_started(tenant: str, broadcast_id: UUID, run_id: UUID, **extra: Any) -> RunStarted:
    return RunStarted.model_validate(
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
            **extra,
        }
    )


async def finish(db: asyncpg.Pool, tenant: str, broadcast_id: UUID, run_id: UUID, n: int) -> None:
    """Targeting counted `n` messages and each has its outcome: the run is completed (and
    announced, so that the running tracker has nothing of this test to publish or count)."""
    await store.record_targeting(
        db,
        [
            TargetingCompleted(
                tenant_id=tenant,
                broadcast_id=broadcast_id,
                run_id=run_id,
                contracts=n,
                messages=n,
                unreachable_contracts=0,
            )
        ],
    )
    await store.complete_finished(db, [run_id])
    await store.mark_completion_published(db, run_id)


async def failed_run(
    db: asyncpg.Pool, tenant: str, reasons: list[FailureReason]
) -> tuple[UUID, UUID, dict[str, int]]:
    """A run whose messages failed for these reasons: (broadcast, run, action id by address)."""
    broadcast_id, run_id = uuid4(), uuid4()
    await store.record_run_started(db, [run_started(tenant, broadcast_id, run_id)])
    await store.record_deliveries(
        db,
        [
            DeliveryFailed(
                tenant_id=tenant,
                broadcast_id=broadcast_id,
                run_id=run_id,
                recipient_id=uuid4(),
                contract_id=f"C-{i}",
                channel="email",
                address=f"c{i}@x.example",
                reason=reason,
            )
            for i, reason in enumerate(reasons)
        ],
    )
    await finish(db, tenant, broadcast_id, run_id, len(reasons))
    actions = await store.list_actions(db, tenant, broadcast_id, None, 100)
    return broadcast_id, run_id, {a.address: a.action_id for a in actions}


async def fail_follow_up(
    db: asyncpg.Pool, tenant: str, broadcast_id: UUID, follow_up_run: UUID, address: str
) -> None:
    """The follow-up run's one message fails: its action is open again."""
    await store.record_run_started(
        db, [run_started(tenant, broadcast_id, follow_up_run, purpose="follow_up")]
    )
    await store.record_deliveries(
        db,
        [
            DeliveryFailed(
                tenant_id=tenant,
                broadcast_id=broadcast_id,
                run_id=follow_up_run,
                recipient_id=uuid4(),
                contract_id="C-0",
                channel="email",
                address=address,
                reason="refused",
            )
        ],
    )
    await store.settle_follow_ups(db, [follow_up_run])
    await finish(db, tenant, broadcast_id, follow_up_run, 1)


def resolve(tenant: str, action_id: int, request_id: str, **fields: Any) -> ResolveAction:
    return ResolveAction(
        tenant_id=tenant,
        request_id=request_id,
        requested_by="user-42",
        action_id=action_id,
        **{"resolution": "send", **fields},
    )


async def test_an_action_is_resolved_once_and_a_replay_sends_nothing_new(
    service_pool: asyncpg.Pool,
) -> None:
    db, tenant = service_pool, f"t{uuid4().hex[:10]}"
    broadcast_id, run_id, actions = await failed_run(db, tenant, ["refused"])
    action_id = actions["c0@x.example"]
    runs = Runs()

    first = await answer(db, runs, resolve(tenant, action_id, "r1", address="fixed@x.example"))
    assert isinstance(first, ActionResolved) and first.state == "sending"
    follow_up, closed = runs.published
    assert isinstance(follow_up, FollowUpRequested) and follow_up.address == "fixed@x.example"
    assert follow_up.follow_up_run_id == first.run_id
    assert isinstance(closed, ActionClosed)
    assert (closed.run_id, closed.address, closed.resolution) == (run_id, "c0@x.example", "send")

    # The same request again: the same answer and the same follow-up run, nothing new.
    replay = await answer(db, runs, resolve(tenant, action_id, "r1", address="fixed@x.example"))
    assert replay.model_dump(exclude={"event_id", "occurred_at"}) == first.model_dump(
        exclude={"event_id", "occurred_at"}
    )
    assert runs.published[2].follow_up_run_id == follow_up.follow_up_run_id
    # Another request, another corrected address: refused, naming the state.
    other = await answer(db, runs, resolve(tenant, action_id, "r2", address="other@x.example"))
    assert isinstance(other, BroadcastRejected) and other.reason == "already_resolved"
    assert "sending" in other.message
    assert len(runs.published) == 4  # the replay's two, nothing for the refusal

    follow_up_run = follow_up.follow_up_run_id
    await fail_follow_up(db, tenant, broadcast_id, follow_up_run, "fixed@x.example")
    (reopened,) = await store.list_actions(db, tenant, broadcast_id, "open", 10)
    assert reopened.action_id == action_id

    # The first request replayed does not send again; a new send is a new follow-up run.
    runs.published.clear()
    late_replay = await answer(
        db, runs, resolve(tenant, action_id, "r1", address="fixed@x.example")
    )
    assert isinstance(late_replay, ActionResolved) and late_replay.state == "open"
    assert not any(isinstance(p, FollowUpRequested) for p in runs.published)
    again = await answer(db, runs, resolve(tenant, action_id, "r3"))
    assert isinstance(again, ActionResolved) and again.state == "sending"
    assert again.run_id not in (None, follow_up_run)
    assert runs.published[-2].follow_up_run_id == again.run_id


async def test_ignore_on_a_reopened_action_is_applied_and_answered(
    service_pool: asyncpg.Pool,
) -> None:
    db, tenant = service_pool, f"t{uuid4().hex[:10]}"
    broadcast_id, _, actions = await failed_run(db, tenant, ["refused"])
    action_id = actions["c0@x.example"]
    runs = Runs()
    sent = await answer(db, runs, resolve(tenant, action_id, "r1"))
    assert isinstance(sent, ActionResolved) and sent.run_id is not None
    await fail_follow_up(db, tenant, broadcast_id, sent.run_id, "c0@x.example")
    ignored = await answer(db, runs, resolve(tenant, action_id, "r2", resolution="ignore"))
    assert isinstance(ignored, ActionResolved) and ignored.state == "ignored"
    assert ignored.run_id is None
    assert isinstance(runs.published[-1], ActionClosed)
    assert runs.published[-1].resolution == "ignore"
    late_send = await answer(db, runs, resolve(tenant, action_id, "r3"))
    assert isinstance(late_send, BroadcastRejected) and late_send.reason == "already_resolved"


async def test_a_resend_to_the_failures_closes_the_actions_it_sends_again(
    service_pool: asyncpg.Pool,
) -> None:
    db, tenant = service_pool, f"t{uuid4().hex[:10]}"
    broadcast_id, run_id, actions = await failed_run(
        db, tenant, ["refused", "unknown_outcome", "refused"]
    )
    taken_care_of = actions["c2@x.example"]
    await answer(db, Runs(), resolve(tenant, taken_care_of, "r1", resolution="ignore"))

    async def states() -> list[ActionView]:
        return await store.list_actions(db, tenant, broadcast_id, None, 10)

    resend = run_started(tenant, broadcast_id, uuid4(), resends_failures_of=run_id)
    await store.record_run_started(db, [resend])
    await store.record_run_started(db, [resend])  # a copy changes nothing
    await finish(db, tenant, broadcast_id, resend.run_id, 0)
    by_address = {a.address: a for a in await states()}
    assert {a: v.state for a, v in by_address.items()} == {
        "c0@x.example": "resent",
        "c1@x.example": "open",  # unknown outcome: left to a person
        "c2@x.example": "ignored",
    }
    assert by_address["c0@x.example"].resolved_by == "u"

    with_unknown = run_started(
        tenant, broadcast_id, uuid4(), resends_failures_of=run_id, include_unknown=True
    )
    await store.record_run_started(db, [with_unknown])
    await finish(db, tenant, broadcast_id, with_unknown.run_id, 0)
    assert {a.address: a.state for a in await states()}["c1@x.example"] == "resent"
    refused = await answer(db, Runs(), resolve(tenant, actions["c0@x.example"], "r2"))
    assert isinstance(refused, BroadcastRejected) and "resent" in refused.message


async def test_an_auto_pause_is_kept_until_it_is_published(service_pool: asyncpg.Pool) -> None:
    db = service_pool
    run = store.Watched(uuid4(), uuid4(), f"t{uuid4().hex[:10]}", 0, AutoPause(), 100, 60)
    await store.record_auto_pause(db, run, "60 of the last 100 messages failed")
    await store.record_auto_pause(db, run, "asked again in the same stretch")
    too_recent = await store.unpublished_auto_pauses(db, 60, SETTINGS.pause_repair_page)
    assert run.run_id not in {p.run_id for p in too_recent}
    (late,) = [
        p
        for p in await store.unpublished_auto_pauses(db, 0, SETTINGS.pause_repair_page)
        if p.run_id == run.run_id
    ]
    assert (late.resumes, late.detail) == (0, "60 of the last 100 messages failed")
    await store.mark_auto_pause_published(db, late)
    assert run.run_id not in {
        p.run_id for p in await store.unpublished_auto_pauses(db, 0, SETTINGS.pause_repair_page)
    }
