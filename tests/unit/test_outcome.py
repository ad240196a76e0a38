from services.tracker.outcome import is_complete, outcome


def test_outcomes_as_the_campaigns_seed_names_them() -> None:
    assert outcome(delivered=10, failed=0) == "fully_successful"
    assert outcome(delivered=9, failed=1) == "partially_successful"
    assert outcome(delivered=0, failed=3) == "failed"
    assert outcome(delivered=0, failed=0) == "failed"


def test_complete_only_once_the_total_is_known_and_reached() -> None:
    assert not is_complete(None, 5, 0)
    assert not is_complete(6, 4, 1)
    assert is_complete(6, 5, 1)
    assert is_complete(0, 0, 0)
