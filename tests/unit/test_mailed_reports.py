"""Reading mail sent to return paths (services/dispatcher/mailed_reports.py), on real samples in
tests/unit/mail: Postfix's own DSN (captured by tests/integration/test_postfix_bounces.py),
Gmail's and Exim's, a delay warning, RFC 5965's example feedback report, an auto-reply."""

from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from services.dispatcher.mailed_reports import DIAGNOSTIC_CHARS, findings, read
from shared.ids import event_id_for

MAIL = Path(__file__).parent / "mail"
NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
OURS = UUID("0b9d2d1e-6f1c-4cbb-9a4b-0f6b2d3c9d11")


def sample(name: str) -> bytes:
    return (MAIL / name).read_bytes()


def test_postfixs_dsn_is_a_hard_bounce() -> None:
    mail = read(sample("postfix_dsn.eml"), NOW)
    assert mail.kind == "bounce"
    assert mail.report == {
        "type": "delivery.bounced",
        "kind": "hard",
        "status": "5.1.1",
        "diagnostic": 'X-Postfix; unknown user: "no-such-recipient"',
        "source": "dsn",
        "reported_at": NOW,
    }


def test_exims_dsn_is_a_hard_bounce_with_the_remote_servers_words() -> None:
    mail = read(sample("exim_dsn.eml"), NOW)
    assert mail.report is not None
    assert (mail.report["kind"], mail.report["status"]) == ("hard", "5.0.0")
    assert mail.report["diagnostic"].startswith("smtp; 550 5.1.1 <gone@isp.example>")


def test_gmails_over_quota_dsn_is_a_soft_bounce_on_one_line() -> None:
    mail = read(sample("gmail_dsn_soft.eml"), NOW)
    assert mail.report is not None
    assert (mail.report["kind"], mail.report["status"]) == ("soft", "4.2.2")
    diagnostic = mail.report["diagnostic"]
    assert "\n" not in diagnostic and "  " not in diagnostic
    assert diagnostic.startswith("smtp; 452-4.2.2 The recipient's inbox is out of storage space.")


def test_a_delay_warning_is_no_bounce() -> None:
    mail = read(sample("postfix_delayed.eml"), NOW)
    assert (mail.kind, mail.report) == ("delay", None)
    assert findings(mail, [uuid4()], b"") == []


def test_rfc5965s_example_is_a_complaint() -> None:
    mail = read(sample("rfc5965_arf.eml"), NOW)
    assert mail.kind == "complaint"
    assert mail.report == {
        "type": "delivery.complained",
        "feedback_type": "abuse",
        "source": "arf",
        "reported_at": NOW,
    }
    assert mail.quoted == []  # its original's Message-ID is not one of ours


def test_a_complaint_names_its_message_by_the_quoted_message_id() -> None:
    arf = sample("rfc5965_arf.eml").replace(
        b"Message-ID: 8787KJKJ3K4J3K4J3K4J3.mail@example.net",
        f"Message-ID: <{OURS}@neige.example>".encode(),
    )
    mail = read(arf, NOW)
    assert mail.quoted == [OURS]
    [finding] = findings(mail, [], arf)
    assert finding.recipient_id == OURS
    # Only the headers quoted, as text/rfc822-headers: the same.
    headers_only = arf.replace(
        b"Content-Type: message/rfc822", b"Content-Type: text/rfc822-headers"
    )
    assert read(headers_only, NOW).quoted == [OURS]


def test_an_unknown_or_hostile_feedback_type_is_read_as_abuse() -> None:
    for given in (b"Feedback-Type: fraud", b"Feedback-Type: <script>x", b"Feedback-Type:"):
        arf = sample("rfc5965_arf.eml").replace(b"Feedback-Type: abuse", given)
        report = read(arf, NOW).report
        assert report is not None
        expected = "fraud" if given.endswith(b"fraud") else "abuse"
        assert report["feedback_type"] == expected


@pytest.mark.parametrize("name", ["auto_reply.eml"])
def test_an_auto_reply_reports_nothing(name: str) -> None:
    mail = read(sample(name), NOW)
    assert (mail.kind, mail.report) == ("other", None)


def test_a_success_notice_reports_nothing() -> None:
    delivered = sample("postfix_dsn.eml").replace(b"Action: failed", b"Action: delivered")
    assert read(delivered, NOW).kind == "other"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\xff\xfe garbage \r\n\r\n\x80",
        b"Content-Type: multipart/report; report-type=delivery-status\r\n\r\nno boundary",
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: message/delivery-status\r\n\r\n--b--\r\n",
        b'Content-Type: multipart/report; report-type=feedback-report; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: message/feedback-report\r\n\r\n--b--\r\n",
        b"Content-Type: multipart/report; report-type*=utf-8''%ff%fe; boundary=b\r\n\r\n--b--",
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        + b'--b\r\nContent-Type: multipart/mixed; boundary="c"\r\n\r\n' * 200,
    ],
)
def test_malformed_mail_is_read_without_raising(data: bytes) -> None:
    mail = read(data, NOW)
    assert mail.kind in ("other", "unreadable", "delay", "complaint")
    assert mail.report is None or mail.kind == "complaint"


def test_a_failed_status_without_a_code_is_hard_and_a_long_diagnostic_is_cut() -> None:
    dsn = (
        sample("postfix_dsn.eml")
        .replace(b"Status: 5.1.1", b"Status: unknown")
        .replace(b'unknown user: "no-such-recipient"', b"x\x01" * 2000)
    )
    report = read(dsn, NOW).report
    assert report is not None
    assert (report["kind"], report["status"]) == ("hard", "")
    assert len(report["diagnostic"]) == DIAGNOSTIC_CHARS
    assert "\x01" not in report["diagnostic"]


def test_findings_name_the_return_paths_messages_with_stable_event_ids() -> None:
    data = sample("postfix_dsn.eml")
    mail = read(data, NOW)
    ids = [uuid4(), uuid4()]
    found = findings(mail, [*ids, ids[0]], data)
    assert [f.recipient_id for f in found] == ids
    again = findings(read(data, NOW), ids, data)
    assert [f.report["event_id"] for f in found] == [f.report["event_id"] for f in again]
    assert found[0].report["event_id"] != found[1].report["event_id"]
    assert found[0].report["event_id"] != event_id_for(ids[0], "mailed-report|")
    # A bounce mailed to no return path (the feedback address) names nothing.
    assert findings(mail, [], data) == []
