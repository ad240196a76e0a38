import pytest

from services.dispatcher.policy import connection_failure, http_reply, smtp_reply


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


def test_bad_mailbox_syntax_enhanced_code_is_an_invalid_address() -> None:
    assert smtp_reply(550, "5.1.3 Bad recipient address syntax").reason == "invalid_address"


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, "accepted"),
        (202, "accepted"),
        (429, "temporary"),
        (500, "temporary"),
        (503, "temporary"),
        (400, "permanent"),
        (401, "permanent"),
        (404, "permanent"),
    ],
)
def test_http_replies(status: int, verdict: str) -> None:
    assert http_reply(status, "").verdict == verdict


def test_a_connection_failure_is_temporary_and_keeps_its_text() -> None:
    attempt = connection_failure("ConnectionResetError: reset by peer")
    assert (attempt.verdict, attempt.code, attempt.detail) == (
        "temporary",
        None,
        "ConnectionResetError: reset by peer",
    )
