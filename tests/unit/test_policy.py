import pytest

from services.dispatcher.policy import (
    connection_failure,
    http_reply,
    invalid_address,
    outcome_unknown,
    smtp_reply,
)


@pytest.mark.parametrize(
    ("code", "verdict", "reason"),
    [
        (250, "accepted", None),
        (421, "temporary", "temporary_failure"),
        (451, "temporary", "temporary_failure"),
        (452, "temporary", "temporary_failure"),
        (550, "permanent", "refused"),
        (554, "permanent", "refused"),
        (553, "permanent", "invalid_address"),
        (501, "permanent", "invalid_address"),
    ],
)
def test_smtp_replies(code: int, verdict: str, reason: str | None) -> None:
    attempt = smtp_reply(code, "text")
    assert (attempt.verdict, attempt.reason, attempt.code) == (verdict, reason, code)


@pytest.mark.parametrize(
    ("code", "verdict"),
    [
        (200, "accepted"),
        (299, "accepted"),
        (300, "permanent"),
        (399, "permanent"),
        (400, "temporary"),
        (499, "temporary"),
        (500, "permanent"),
        (599, "permanent"),
    ],
)
def test_smtp_reply_classes_are_whole_hundreds(code: int, verdict: str) -> None:
    assert smtp_reply(code, "text").verdict == verdict


@pytest.mark.parametrize("code", [250, 452, 550, 553])
def test_smtp_replies_keep_the_relay_text(code: int) -> None:
    assert smtp_reply(code, "what the relay said").detail == "what the relay said"


def test_bad_mailbox_syntax_enhanced_code_is_an_invalid_address() -> None:
    assert smtp_reply(550, "5.1.3 Bad recipient address syntax").reason == "invalid_address"


@pytest.mark.parametrize(
    ("code", "detail"),
    [
        (421, "4.7.0 Try again later, closing connection"),
        (451, "Rate limit exceeded"),
        (454, "Too many connections from your IP"),
        (451, "Please slow down"),
        (421, "Throttling in effect"),
        (421, "Try again later"),
        (451, "4.7.1 Service unavailable, please retry"),
    ],
)
def test_smtp_slow_down_replies_are_throttled(code: int, detail: str) -> None:
    attempt = smtp_reply(code, detail)
    assert (attempt.verdict, attempt.code, attempt.detail) == ("throttled", code, detail)
    assert attempt.reason == "temporary_failure"


@pytest.mark.parametrize(
    ("code", "detail"),
    [
        # A 421 without a slow-down text is a plain temporary failure.
        (421, "Service not available, closing transmission channel"),
        (450, "Requested mail action not taken: mailbox busy"),
        # A slow-down text with a code other than 421 / 451 / 454 is not a throttle.
        (452, "Too many recipients"),
    ],
)
def test_other_smtp_4xx_replies_are_temporary(code: int, detail: str) -> None:
    attempt = smtp_reply(code, detail)
    assert (attempt.verdict, attempt.reason, attempt.code) == (
        "temporary",
        "temporary_failure",
        code,
    )


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, "accepted"),
        (202, "accepted"),
        (429, "throttled"),
        (500, "temporary"),
        (503, "temporary"),
        (400, "permanent"),
        (401, "permanent"),
        (404, "permanent"),
    ],
)
def test_http_replies(status: int, verdict: str) -> None:
    assert http_reply(status, "").verdict == verdict


@pytest.mark.parametrize(
    ("status", "verdict"),
    [(299, "accepted"), (300, "permanent"), (499, "permanent"), (599, "temporary")],
)
def test_http_reply_classes_are_whole_hundreds(status: int, verdict: str) -> None:
    assert http_reply(status, "").verdict == verdict


@pytest.mark.parametrize("status", [202, 429, 503, 400, 404])
def test_http_replies_keep_the_status_and_the_gateway_text(status: int) -> None:
    attempt = http_reply(status, "what the gateway said")
    assert (attempt.code, attempt.detail) == (status, "what the gateway said")


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (429, "temporary_failure"),
        (503, "temporary_failure"),
        (400, "invalid_address"),
        (422, "invalid_address"),
        (401, "provider_error"),
        (200, None),
    ],
)
def test_http_reasons(status: int, reason: str | None) -> None:
    assert http_reply(status, "").reason == reason


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        ("1.5", 1.5),
        ("0", 0.0),
        ("abc", None),
        ("", None),
        ("Wed, 21 Oct 2026 07:28:00 GMT", None),
        ("-5", 0.0),
        (None, None),
    ],
)
@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_read_in_seconds(
    status: int, header: str | None, seconds: float | None
) -> None:
    assert http_reply(status, "", header).retry_after == seconds


def test_retry_after_is_not_kept_on_a_permanent_reply() -> None:
    assert http_reply(404, "", "120").retry_after is None


def test_a_connection_failure_is_temporary_and_keeps_its_text() -> None:
    attempt = connection_failure("ConnectionResetError: reset by peer")
    assert (attempt.verdict, attempt.reason, attempt.code, attempt.detail) == (
        "temporary",
        "temporary_failure",
        None,
        "ConnectionResetError: reset by peer",
    )


def test_an_invalid_address_is_permanent_and_keeps_its_text() -> None:
    attempt = invalid_address("not an email address: 'nobody'")
    assert (attempt.verdict, attempt.reason, attempt.code, attempt.detail) == (
        "permanent",
        "invalid_address",
        None,
        "not an email address: 'nobody'",
    )


def test_an_unknown_outcome_is_never_retried_and_keeps_its_text() -> None:
    attempt = outcome_unknown("connection lost after end of DATA")
    assert (attempt.verdict, attempt.reason, attempt.code, attempt.detail) == (
        "unknown",
        "unknown_outcome",
        None,
        "connection lost after end of DATA",
    )


def test_a_word_containing_rate_is_not_a_slow_down() -> None:
    attempt = smtp_reply(451, "4.3.0 Temporary local problem, unable to generate message")
    assert attempt.verdict == "temporary"
