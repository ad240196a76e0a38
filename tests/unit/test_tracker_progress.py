"""What the tracker announces about a run: progress at most once per interval without losing
the last change, completion once, a preview's result. The database is replaced by the rows it
would return."""

from collections.abc import Awaitable, Callable, Iterable
from contextlib import nullcontext
from dataclasses import replace
from uuid import UUID, uuid4

import pytest
from prometheus_client import CollectorRegistry

from services.tracker import store
from services.tracker.metrics import TrackerMetrics
from services.tracker.progress import Progress, Recounts, Throttle
from shared.events import BroadcastCompleted, BroadcastPreviewed, BroadcastProgressed, Counters
from tests.unit.tracker_fakes import FakeClock, FakePublisher, no_pool

INTERVAL = 1.0
RECOUNT = 5.0


def test_a_change_is_announced_at_once_then_held_back_for_the_interval() -> None:
    clock, run = FakeClock(), uuid4()
    throttle = Throttle(INTERVAL, clock)
    assert throttle.due([run]) == [run]
    throttle.announced(run)
    clock.advance(0.4)
    assert throttle.due([run]) == []
    clock.advance(0.5)
    assert throttle.due() == []  # 0.9 s after the last event
    clock.advance(0.1)
    assert throttle.due() == [run]  # the held-back change, without a new one
    throttle.announced(run)
    assert throttle.due() == []  # taken once: nothing changed since


def test_runs_are_throttled_apart_and_forgotten() -> None:
    clock, busy, quiet = FakeClock(), uuid4(), uuid4()
    throttle = Throttle(INTERVAL, clock)
    throttle.due([busy])
    throttle.announced(busy)
    assert throttle.due([busy, quiet]) == [quiet]
    throttle.forget(busy)  # completed: a run id is never announced again, its time can go
    assert set(throttle.due()) == {busy}


def test_a_clock_stepped_back_does_not_silence_a_run() -> None:
    clock, run = FakeClock(), uuid4()
    throttle = Throttle(INTERVAL, clock)
    throttle.announced(run)
    clock.advance(-600)
    assert throttle.due([run]) == [run]


def view(
    run_id: UUID, purpose: str = "broadcast", delivered: int = 0, created_by: str | None = None
) -> store.RunView:
    return store.RunView(
        run_id=run_id,
        broadcast_id=uuid4(),
        tenant_id="acme",
        requested_by="ops@acme",
        counters=Counters(messages_targeted=10, delivered=delivered),
        outcome="fully_successful",
        purpose=purpose,
        created_by=created_by,
    )


class Database:
    """The rows the store would return, and what was marked published."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.running: dict[UUID, store.RunView] = {}
        self.completed: list[store.RunView] = []
        self.previews: dict[UUID, dict[str, str | None]] = {}
        self.marked: list[UUID] = []

        self.contracts: dict[UUID, tuple[int, int]] = {}
        self.counted: list[set[UUID]] = []

        async def running(
            _pool: object, run_ids: Iterable[UUID], count_contracts: Iterable[UUID]
        ) -> list[store.RunView]:
            counting = set(count_contracts)
            self.counted.append(counting)
            return [
                self._contracts(self.running[r], r in counting)
                for r in run_ids
                if r in self.running
            ]

        async def unpublished_completions(_pool: object) -> list[store.RunView]:
            return [r for r in self.completed if r.run_id not in self.marked]

        async def preview_result(_pool: object, run_id: UUID) -> dict[str, str | None] | None:
            return self.previews.get(run_id)

        async def mark_completion_published(_pool: object, run_id: UUID) -> None:
            self.marked.append(run_id)

        for name, fake in [
            ("running", running),
            ("unpublished_completions", unpublished_completions),
            ("preview_result", preview_result),
            ("mark_completion_published", mark_completion_published),
        ]:
            monkeypatch.setattr(store, name, fake)

    def _contracts(self, run: store.RunView, counted: bool) -> store.RunView:
        """The run as the store reads it: its contracts counted when asked, 0 otherwise."""
        reached, not_reached = self.contracts.get(run.run_id, (0, 0)) if counted else (0, 0)
        counters = run.counters.model_copy(
            update={"contracts_reached": reached, "contracts_not_reached": not_reached}
        )
        return replace(run, counters=counters)


class Seconds:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Announcing:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.db = Database(monkeypatch)
        self.clock = FakeClock()
        self.events = FakePublisher()
        self.seconds = Seconds()
        self.progress = Progress(
            no_pool,
            self.events,
            TrackerMetrics(CollectorRegistry()),
            Throttle(INTERVAL, self.clock),
            Recounts(RECOUNT, self.seconds),
            nullcontext,
        )


@pytest.fixture
def given(monkeypatch: pytest.MonkeyPatch) -> Announcing:
    return Announcing(monkeypatch)


async def test_progress_is_bounded_and_the_last_change_is_not_lost(given: Announcing) -> None:
    run = view(uuid4(), delivered=1)
    given.db.running[run.run_id] = run
    await given.progress.publish_progress([run.run_id])
    given.db.running[run.run_id] = later = view(run.run_id, delivered=7)
    given.clock.advance(0.5)
    await given.progress.publish_progress([run.run_id])
    await given.progress.publish_progress()
    assert [m.counters.delivered for m in given.events.messages] == [1]
    given.clock.advance(0.5)
    await given.progress.publish_progress()  # the tick
    assert [m.counters.delivered for m in given.events.messages] == [1, 7]
    message, key = given.events.published[-1]
    assert isinstance(message, BroadcastProgressed)
    assert (message.run_id, key) == (run.run_id, str(later.broadcast_id).encode())


async def test_only_running_broadcasts_are_announced(given: Announcing) -> None:
    await given.progress.publish_progress([uuid4()])  # completed, a preview, ...: not running
    assert given.events.published == []


async def test_a_completion_is_announced_once_and_its_run_forgotten(given: Announcing) -> None:
    run = view(uuid4(), delivered=10)
    given.db.running[run.run_id] = run
    await given.progress.publish_progress([run.run_id])
    del given.db.running[run.run_id]
    given.db.completed.append(run)
    await given.progress.publish_completions()
    await given.progress.publish_completions()  # marked: not announced again
    completed = [m for m in given.events.messages if isinstance(m, BroadcastCompleted)]
    assert [(m.run_id, m.outcome, m.counters.delivered) for m in completed] == [
        (run.run_id, "fully_successful", 10)
    ]
    assert given.db.marked == [run.run_id]


async def test_a_completion_is_addressed_to_the_creator_and_to_whoever_started_it(
    given: Announcing,
) -> None:
    by_another = view(uuid4(), delivered=10, created_by="creator@acme")
    by_the_creator = view(uuid4(), delivered=10, created_by="ops@acme")
    before_creators_were_carried = view(uuid4(), delivered=10)
    given.db.completed += [by_another, by_the_creator, before_creators_were_carried]
    await given.progress.publish_completions()
    completed = [m for m in given.events.messages if isinstance(m, BroadcastCompleted)]
    assert [(m.created_by, m.notify) for m in completed] == [
        ("creator@acme", ["creator@acme", "ops@acme"]),
        ("ops@acme", ["ops@acme"]),
        (None, ["ops@acme"]),
    ]


async def test_a_follow_up_or_a_notice_completes_silently_and_a_preview_tells_its_result(
    given: Announcing,
) -> None:
    follow_up, preview = view(uuid4(), "follow_up"), view(uuid4(), "preview")
    notice = view(uuid4(), "notice")
    given.db.completed += [follow_up, preview, notice]
    given.db.previews[preview.run_id] = {
        "address": "me@acme.example",
        "state": "failed",
        "reason": "refused",
        "detail": None,
    }
    await given.progress.publish_completions()
    (previewed,) = given.events.messages
    assert isinstance(previewed, BroadcastPreviewed)
    assert (previewed.run_id, previewed.address, previewed.delivered) == (
        preview.run_id,
        "me@acme.example",
        False,
    )
    assert (previewed.reason, previewed.detail) == ("refused", "")
    assert set(given.db.marked) == {follow_up.run_id, preview.run_id, notice.run_id}


async def test_a_run_s_contracts_are_counted_again_after_the_interval_or_ten_times_the_count() -> (
    None
):
    seconds, run = Seconds(), uuid4()
    recounts = Recounts(RECOUNT, seconds)

    def counted_in(took: float) -> Callable[[set[UUID]], Awaitable[list[store.RunView]]]:
        async def read(due: set[UUID]) -> list[store.RunView]:
            seconds.now += took  # what the count takes
            return [view(run)]

        return read

    assert recounts.due([run]) == {run}  # never counted
    await recounts.counting([run], counted_in(0.25))
    seconds.now += 4.5
    assert recounts.due([run]) == set()
    seconds.now += 0.25
    assert recounts.due([run]) == {run}  # 5 s after the count began
    # A count of 0.75 s (a run of most of a million messages): the next waits 7.5 s, not 5.
    await recounts.counting([run], counted_in(0.75))
    seconds.now += 6.5
    assert recounts.due([run]) == set()
    seconds.now += 0.25
    assert recounts.due([run]) == {run}
    recounts.forget(run)  # completed: a new count at once if it ever came back
    assert recounts.due([run]) == {run}


async def test_a_run_forgotten_while_it_is_read_keeps_the_counts_it_had() -> None:
    # The progress tick reads a run that is not due; meanwhile its completion is announced and
    # the run forgotten: the read still answers with the run as it was.
    seconds, run = Seconds(), uuid4()
    recounts = Recounts(RECOUNT, seconds)
    counted = view(run)
    counted = replace(
        counted, counters=counted.counters.model_copy(update={"contracts_reached": 3})
    )

    async def first(due: set[UUID]) -> list[store.RunView]:
        return [counted]

    async def completing_meanwhile(due: set[UUID]) -> list[store.RunView]:
        assert due == set()
        recounts.forget(run)
        return [view(run)]

    await recounts.counting([run], first)
    seconds.now += 1.0
    (read,) = await recounts.counting([run], completing_meanwhile)
    assert read.counters.contracts_reached == 3


async def test_between_counts_progress_carries_the_last_contract_counts(given: Announcing) -> None:
    run = view(uuid4(), delivered=1)
    given.db.running[run.run_id] = run
    given.db.contracts[run.run_id] = (1, 0)
    await given.progress.publish_progress([run.run_id])
    # A second later: the messages moved, the contracts are not read again.
    given.db.running[run.run_id] = view(run.run_id, delivered=4)
    given.db.contracts[run.run_id] = (3, 1)
    given.clock.advance(1.0)
    given.seconds.now += 1.0
    await given.progress.publish_progress([run.run_id])
    # Past the interval: counted again.
    given.clock.advance(RECOUNT)
    given.seconds.now += RECOUNT
    await given.progress.publish_progress([run.run_id])
    assert [
        (m.counters.delivered, m.counters.contracts_reached, m.counters.contracts_not_reached)
        for m in given.events.messages
    ] == [(1, 1, 0), (4, 1, 0), (4, 3, 1)]
    assert given.db.counted == [{run.run_id}, set(), {run.run_id}]
