"""The judgement that makes a broadcast pause itself, from its window's sums."""

from services.tracker.autopause import Attempts, judge
from shared.events import AutoPause

POLICY = AutoPause(failure_ratio=0.5, window_seconds=60, min_messages=10)


def test_trips_only_over_the_ratio_with_enough_messages() -> None:
    assert judge(Attempts(tried=9, failed=9), POLICY) is None  # too few to judge
    tripped = judge(Attempts(tried=10, failed=9), POLICY)
    assert tripped is not None and (tripped.failed, tripped.tried) == (9, 10)
    assert "9 of the last 10 messages failed within 60 s" in tripped.describe(POLICY)
    assert "50%" in tripped.describe(POLICY)


def test_exactly_the_ratio_does_not_trip() -> None:
    assert judge(Attempts(tried=10, failed=5), POLICY) is None
