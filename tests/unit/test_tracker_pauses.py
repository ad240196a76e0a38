"""The auto-pause path: which outcomes count as failures, when a run is asked to pause (once),
and the repair of pauses whose request was lost. The database is replaced by the rows it would
return."""

from collections.abc import Iterable
from uuid import UUID, uuid4

import pytest

from services.tracker import store
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


class Watching:
    """A watch over runs that pause themselves over POLICY, asking into `asked`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.clock = FakeClock()
        self.watched: set[UUID] = set()
        self.looked_up: list[set[UUID]] = []
        self.asked: list[tuple[UUID, str]] = []

        async def watched(_pool: object, run_ids: Iterable[UUID]) -> list[store.Watched]:
            self.looked_up.append(set(run_ids))
            return [
                store.Watched(r, uuid4(), "acme", 0, POLICY)
                for r in self.looked_up[-1]
                if r in self.watched
            ]

        async def ask(run: store.Watched, detail: str) -> None:
            self.asked.append((run.run_id, detail))

        monkeypatch.setattr(store, "watched", watched)
        self.watch = FailureWatch(no_pool, ask, self.clock)


@pytest.fixture
def given(monkeypatch: pytest.MonkeyPatch) -> Watching:
    return Watching(monkeypatch)


async def test_a_run_over_its_ratio_is_asked_to_pause_once(given: Watching) -> None:
    run = uuid4()
    given.watched.add(run)
    await given.watch.watch([deferred(run, "retry")] * 4, [failed(run)] * 4 + [delivered(run)])
    assert given.asked == []  # 9 tried: too few to judge
    await given.watch.watch([], [failed(run)])
    assert given.asked == [
        (run, "9 of the last 10 messages failed within 60 s (the tenant pauses over 50%)")
    ]
    await given.watch.watch([], [failed(run)])  # asked: its window starts afresh
    assert len(given.asked) == 1


async def test_only_runs_that_watch_themselves_are_paused(given: Watching) -> None:
    unwatched = uuid4()  # paused already, no policy, a preview, ...
    await given.watch.watch([], [failed(unwatched)] * 20)
    assert given.looked_up == [{unwatched}]
    assert given.asked == []


async def test_successes_alone_look_nothing_up(given: Watching) -> None:
    run = uuid4()
    await given.watch.watch([deferred(run, "send_window")], [delivered(run), cancelled(run)])
    assert given.looked_up == []


async def test_failures_leave_the_window_with_time(given: Watching) -> None:
    run = uuid4()
    given.watched.add(run)
    await given.watch.watch([], [failed(run)] * 5 + [delivered(run)] * 5)
    given.clock.advance(61)
    await given.watch.watch([], [failed(run)] * 5 + [delivered(run)] * 4)
    # 10 of 19 failed in all, over the ratio; within the last 60 s only 9 were tried.
    assert given.asked == []


async def test_a_forgotten_run_starts_afresh(given: Watching) -> None:
    run = uuid4()
    given.watched.add(run)
    await given.watch.watch([], [failed(run)] * 9)
    given.watch.forget(run)  # resumed
    await given.watch.watch([], [failed(run)])
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
