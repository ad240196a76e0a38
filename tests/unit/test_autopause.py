"""The failure window that makes a broadcast pause itself."""

from uuid import uuid4

from services.tracker.autopause import FailureWindow
from shared.events import AutoPause

POLICY = AutoPause(failure_ratio=0.5, window_seconds=60, min_messages=10)


def test_trips_only_over_the_ratio_with_enough_messages() -> None:
    window, run = FailureWindow(), uuid4()
    for i in range(9):
        window.add(run, 1000.0 + i, failed=True)
    assert window.check(run, 1009.0, POLICY) is None  # 9 tried: too few to judge
    window.add(run, 1009.0, failed=False)
    tripped = window.check(run, 1009.0, POLICY)
    assert tripped is not None and (tripped.failed, tripped.tried) == (9, 10)
    assert "9 of the last 10 messages failed within 60 s" in tripped.describe(POLICY)
    assert "50%" in tripped.describe(POLICY)


def test_exactly_the_ratio_does_not_trip() -> None:
    window, run = FailureWindow(), uuid4()
    for i in range(10):
        window.add(run, 1000.0, failed=i % 2 == 0)
    assert window.check(run, 1000.0, POLICY) is None


def test_old_failures_leave_the_window() -> None:
    window, run = FailureWindow(), uuid4()
    for _ in range(20):
        window.add(run, 1000.0, failed=True)
    for _ in range(20):
        window.add(run, 1070.0, failed=False)
    assert window.check(run, 1070.0, POLICY) is None


def test_runs_are_judged_apart_and_forgotten() -> None:
    window, bad, good = FailureWindow(), uuid4(), uuid4()
    for _ in range(20):
        window.add(bad, 5.0, failed=True)
        window.add(good, 5.0, failed=False)
    assert window.check(bad, 5.0, POLICY) is not None
    assert window.check(good, 5.0, POLICY) is None
    window.forget(bad)
    assert window.check(bad, 5.0, POLICY) is None


def test_a_batch_added_at_once_counts_as_its_messages_one_by_one() -> None:
    together, one_by_one, run = FailureWindow(), FailureWindow(), uuid4()
    together.add(run, 1000.0, failed=6, tried=10)
    for i in range(10):
        one_by_one.add(run, 1000.0, failed=i < 6)
    tripped = together.check(run, 1000.0, POLICY)
    assert tripped is not None and (tripped.failed, tripped.tried) == (6, 10)
    assert tripped == one_by_one.check(run, 1000.0, POLICY)
