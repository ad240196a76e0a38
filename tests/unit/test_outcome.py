from services.tracker.outcome import is_complete, outcome


def test_outcome_follows_the_campaigns_seed() -> None:
    assert outcome(delivered=10, failed=0) == "fully_successful"
    assert outcome(delivered=9, failed=1) == "partially_successful"
    assert outcome(delivered=0, failed=3) == "failed"
    assert outcome(delivered=0, failed=0) == "failed"


def test_a_cancelled_run_is_cancelled_whatever_was_sent() -> None:
    assert outcome(delivered=10, failed=0, cancelled=True) == "cancelled"
    assert outcome(delivered=0, failed=0, cancelled=True) == "cancelled"


def test_complete_once_the_total_is_known_and_reached() -> None:
    assert not is_complete(None, 5)
    assert not is_complete(6, 5)
    assert is_complete(6, 6)
    assert is_complete(0, 0)
