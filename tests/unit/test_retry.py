import pytest

from services.dispatcher.retry import RetryPolicy
from services.dispatcher.settings import Settings


@pytest.mark.parametrize(
    ("attempts", "delay"),
    [(1, 30.0), (2, 300.0), (3, 1800.0), (4, None), (10, None)],
)
def test_default_delays_then_give_up(attempts: int, delay: float | None) -> None:
    assert RetryPolicy().after_failure(attempts) == delay


@pytest.mark.parametrize("attempts", [0, -1])
def test_no_failure_yet_gives_no_delay(attempts: int) -> None:
    assert RetryPolicy().after_failure(attempts) is None


def test_custom_delays() -> None:
    policy = RetryPolicy(delays=(5.0, 60.0))
    assert [policy.after_failure(n) for n in range(1, 4)] == [5.0, 60.0, None]


def test_no_delays_means_the_first_failure_is_final() -> None:
    assert RetryPolicy(delays=()).after_failure(1) is None


def test_throttle_without_retry_after_uses_the_default_backoff() -> None:
    assert RetryPolicy().after_throttle(None) == 30.0
    assert RetryPolicy(throttle_backoff=45.0).after_throttle(None) == 45.0


def test_a_retry_after_within_bounds_is_honoured() -> None:
    assert RetryPolicy().after_throttle(120.0) == 120.0


def test_a_large_retry_after_is_capped_at_max_backoff() -> None:
    assert RetryPolicy().after_throttle(3600.0) == 600.0
    assert RetryPolicy(max_backoff=90.0).after_throttle(3600.0) == 90.0


@pytest.mark.parametrize("retry_after", [0.0, 0.2, 0.999])
def test_a_tiny_retry_after_is_raised_to_one_second(retry_after: float) -> None:
    assert RetryPolicy().after_throttle(retry_after) == 1.0


def test_the_default_backoff_is_capped_too() -> None:
    assert RetryPolicy(throttle_backoff=900.0, max_backoff=600.0).after_throttle(None) == 600.0


def test_the_dispatcher_retries_after_30_s_5_min_and_30_min_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The policy as the dispatcher builds it from its settings (services/dispatcher/app.py);
    # the suite's stack shortens these delays through the environment (tests/stack.py).
    monkeypatch.delenv("DISPATCHER_RETRY_DELAYS_SECONDS", raising=False)
    monkeypatch.delenv("DISPATCHER_THROTTLE_BACKOFF_SECONDS", raising=False)
    settings = Settings()
    policy = RetryPolicy(
        delays=settings.retry_delays_seconds, throttle_backoff=settings.throttle_backoff_seconds
    )
    assert [policy.after_failure(n) for n in range(1, 5)] == [30.0, 300.0, 1800.0, None]
    assert policy.after_throttle(None) == 30.0
