"""The auto-pause path: which outcomes count as failures, when a run is asked to pause (once),
and the repair of pauses whose request was lost. The database is replaced by the rows it would
return."""

from collections.abc import Iterable, Mapping
from uuid import UUID, uuid4

import pytest

from services.tracker import store
from services.tracker.autopause import Attempts
from services.tracker.pauses import FailureWatch, Pauses, attempt_failed
from shared.events import AutoPause, PauseBroadcast
from tests.unit.tracker_fakes import (
    FakeClock,
    FakePublisher,
    cancelled,
    deferred,
    delivered,
    failed,
    no_pool,
)

POLICY = AutoPause(failure_ratio=0.5, window_seconds=60, min_messages=10)


def test_what_counts_as_a_failed_attempt() -> None:
    run = uuid4()
    assert attempt_failed(failed(run)) is True
    assert attempt_failed(deferred(run, "retry")) is True  # a relay down answers "try later"
    assert attempt_failed(delivered(run)) is False
    assert attempt_failed(cancelled(run)) is None
    for not_the_relay in ("send_window", "throttled", "paused"):
        assert attempt_failed(deferred(run, not_the_relay)) is None
    # A customer with no address was never tried: it says nothing of the relay.
    assert attempt_failed(failed(run).model_copy(update={"reason": "no_contact"})) is None


class Window:
    """The database's failure windows, shared by every tracker instance: per run and second,
    as `store.add_attempts` keeps them, summed over POLICY's window as `store.watched` does."""

    def __init__(self) -> None:
        self.seconds: dict[UUID, dict[int, Attempts]] = {}
        self.watched: set[UUID] = set()
        self.looked_up: list[set[UUID]] = []

    async def add_attempts(
        self, _pool: object, second: int, attempts: Mapping[UUID, Attempts]
    ) -> None:
        for run_id, added in attempts.items():
            at = self.seconds.setdefault(run_id, {}).setdefault(second, Attempts())
            at.tried += added.tried
            at.failed += added.failed

    async def watched_runs(
        self, _pool: object, run_ids: Iterable[UUID], now: int
    ) -> list[store.Watched]:
        self.looked_up.append(set(run_ids))
        found = []
        for run_id in self.looked_up[-1] & self.watched:
            recent = [
                a
                for at, a in self.seconds.get(run_id, {}).items()
                if at > now - POLICY.window_seconds
            ]
            tried, failed = sum(a.tried for a in recent), sum(a.failed for a in recent)
            found.append(store.Watched(run_id, uuid4(), "acme", 0, POLICY, tried, failed))
        return found


class Watching:
    """Tracker instances watching runs that pause themselves over POLICY, asking into `asked`;
    once asked in a stretch, the database leaves a run out (`store.watched`)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.clock = FakeClock()
        self.window = Window()
        self.asked: list[tuple[UUID, str]] = []

        async def ask(run: store.Watched, detail: str) -> None:
            self.asked.append((run.run_id, detail))
            self.window.watched.discard(run.run_id)

        monkeypatch.setattr(store, "add_attempts", self.window.add_attempts)
        monkeypatch.setattr(store, "watched", self.window.watched_runs)
        self.watch = FailureWatch(no_pool, ask, self.clock)
        self.other_instance = FailureWatch(no_pool, ask, self.clock)


@pytest.fixture
def given(monkeypatch: pytest.MonkeyPatch) -> Watching:
    return Watching(monkeypatch)


async def test_a_run_over_its_ratio_is_asked_to_pause_once(given: Watching) -> None:
    run = uuid4()
    given.window.watched.add(run)
    await given.watch.watch([deferred(run, "retry")] * 4, [failed(run)] * 4 + [delivered(run)])
    assert given.asked == []  # 9 tried: too few to judge
    await given.watch.watch([], [failed(run)])
    assert given.asked == [
        (run, "9 of the last 10 messages failed within 60 s (the tenant pauses over 50%)")
    ]
    await given.watch.watch([], [failed(run)])  # asked in this stretch: left out
    assert len(given.asked) == 1


async def test_the_window_is_one_for_every_instance(given: Watching) -> None:
    """Each instance sees the partitions it owns; the one that saw the first failures may
    die, and the other judges from all of them."""
    run = uuid4()
    given.window.watched.add(run)
    await given.watch.watch([], [failed(run)] * 6)
    del given.watch  # killed
    await given.other_instance.watch([], [failed(run)] * 3 + [delivered(run)])
    assert given.asked == [
        (run, "9 of the last 10 messages failed within 60 s (the tenant pauses over 50%)")
    ]


async def test_only_runs_that_watch_themselves_are_paused(given: Watching) -> None:
    unwatched = uuid4()  # paused already, no policy, a preview, ...
    await given.watch.watch([], [failed(unwatched)] * 20)
    assert given.window.looked_up == [{unwatched}]
    assert given.asked == []


async def test_successes_are_counted_but_look_nothing_up(given: Watching) -> None:
    run = uuid4()
    await given.watch.watch([deferred(run, "send_window")], [delivered(run), cancelled(run)])
    assert given.window.looked_up == []
    assert list(given.window.seconds[run].values()) == [Attempts(tried=1, failed=0)]


async def test_failures_leave_the_window_with_time(given: Watching) -> None:
    run = uuid4()
    given.window.watched.add(run)
    await given.watch.watch([], [failed(run)] * 5 + [delivered(run)] * 5)
    given.clock.advance(61)
    await given.watch.watch([], [failed(run)] * 5 + [delivered(run)] * 4)
    # 10 of 19 failed in all, over the ratio; within the last 60 s only 9 were tried.
    assert given.asked == []


async def test_late_pauses_are_published_a_page_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waiting = [store.AutoPauseAsked(uuid4(), 0, uuid4(), "acme", "failing") for _ in range(3)]
    asked_with: list[tuple[float, int]] = []

    async def unpublished(
        _pool: object, older_than: float, limit: int
    ) -> list[store.AutoPauseAsked]:
        asked_with.append((older_than, limit))
        return waiting[:limit]

    async def mark(_pool: object, pause: store.AutoPauseAsked) -> None:
        waiting.remove(pause)

    monkeypatch.setattr(store, "unpublished_auto_pauses", unpublished)
    monkeypatch.setattr(store, "mark_auto_pause_published", mark)
    requests = FakePublisher()
    pauses = Pauses(no_pool, requests, requested_by="tracker", late_seconds=5.0, page=2)
    assert await pauses.publish_late() is True  # a full page: more may wait
    assert await pauses.publish_late() is False
    assert asked_with == [(5.0, 2), (5.0, 2)]
    assert waiting == []
    assert all(isinstance(m, PauseBroadcast) for m in requests.messages)
    assert [m.request_id.split(":")[0] for m in requests.messages] == ["auto-pause"] * 3
    assert {key for _, key in requests.published} == {b"acme"}
