"""The pure decisions behind delivery reports: STOP replies, soft-bounce streaks, what a report
suppresses, how the tracker names a report, and a late progress in targeting's read model."""

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from services.targeting.audience import Estimate, points_json, reachable
from services.targeting.counters import newest
from services.targeting.suppression import Sent, asks_to_stop, decided_by, in_streak, streak
from services.tracker.reports import detail_of, kind_of, once_each
from shared.events import (
    BroadcastCompleted,
    BroadcastProgressed,
    ContactPoint,
    Counters,
    DeliveryBounced,
    DeliveryComplained,
    DeliveryConfirmed,
    ReplyReceived,
)

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def ref(channel: str = "email", address: str = " Ann@Example.COM ") -> dict[str, Any]:
    return {
        "tenant_id": "t1",
        "broadcast_id": uuid4(),
        "run_id": uuid4(),
        "recipient_id": uuid4(),
        "contract_id": "c1",
        "channel": channel,
        "address": address,
    }


@pytest.mark.parametrize(
    "text",
    [
        "STOP",
        "stop",
        " Stop! ",
        "ARRET",
        "arrêt",
        "ARRÊT",
        "Arre\u0302t.",
        "\u00a0stop\n",
        "«STOP»",
    ],
)
def test_a_stop_word_alone_asks_to_stop(text: str) -> None:
    assert asks_to_stop(text)


@pytest.mark.parametrize("text", ["", "don't stop", "stopper", "arrête", "STOP STOP", "oui"])
def test_anything_else_does_not(text: str) -> None:
    assert not asks_to_stop(text)


def test_a_stop_reply_suppresses_a_number_never_an_email() -> None:
    sms = ReplyReceived(**ref("sms", "+15145550000"), text="Arrêt", reported_at=NOW)
    decided = decided_by(sms)
    assert decided is not None and decided.reason == "sms_stop"
    assert decided_by(ReplyReceived(**ref(), text="STOP", reported_at=NOW)) is None
    assert decided_by(ReplyReceived(**ref("sms"), text="merci", reported_at=NOW)) is None


def test_hard_bounces_and_complaints_decide_alone_soft_bounces_do_not() -> None:
    hard = DeliveryBounced(**ref(), kind="hard", source="dsn", reported_at=NOW)
    soft = DeliveryBounced(**ref(), kind="soft", source="dsn", reported_at=NOW)
    complaint = DeliveryComplained(**ref(), source="arf", reported_at=NOW)
    decided = decided_by(hard)
    assert decided is not None
    assert (decided.reason, decided.address) == ("hard_bounce", "ann@example.com")
    assert decided_by(soft) is None
    complained = decided_by(complaint)
    assert complained is not None and complained.reason == "complaint"


def test_an_sms_failure_suppresses_alone_only_for_a_permanent_status() -> None:
    def failed(status: str) -> DeliveryBounced:
        sms = ref("sms", "+15145550000")
        return DeliveryBounced(
            **sms, kind="hard", status=status, source="sms_gateway", reported_at=NOW
        )

    permanent, transient = failed("5.1.1"), failed("4.0.0")
    decided = decided_by(permanent)
    assert decided is not None and decided.reason == "hard_bounce"
    assert not in_streak(permanent)
    # A handset switched off: the message failed, the number counts in its streak instead.
    assert kind_of(transient) == "hard_bounce"
    assert decided_by(transient) is None and in_streak(transient)
    # An email's hard bounce, 5.x.x or without status, is never in a streak; a soft one always.
    email = [
        DeliveryBounced(**ref(), kind="hard", status=s, source="dsn", reported_at=NOW)
        for s in ("5.1.1", "")
    ]
    assert [in_streak(b) for b in email] == [False, False]
    soft = DeliveryBounced(**ref(), kind="soft", status="5.2.2", source="ses", reported_at=NOW)
    assert in_streak(soft)


def sent(minutes: int, bounced: bool) -> Sent:
    return Sent(UUID(int=minutes), NOW + timedelta(minutes=minutes), bounced)


def test_a_streak_counts_the_bounces_after_the_newest_clean_delivery() -> None:
    assert streak([]) == 0
    assert streak([sent(1, True), sent(2, True), sent(3, True)]) == 3
    # The second message was delivered and did not bounce: the streak starts again after it.
    assert streak([sent(1, True), sent(2, False), sent(3, True)]) == 1
    # Order is by sending, not by arrival.
    assert streak([sent(3, True), sent(1, False), sent(2, True)]) == 2
    # A delivery whose bounce has not come yet ends the streak until its bounce comes.
    assert streak([sent(1, True), sent(2, True), sent(3, False)]) == 0


def test_the_tracker_names_each_report_and_keeps_one_per_message_and_kind() -> None:
    base = ref()
    hard = DeliveryBounced(
        **base,
        kind="hard",
        status="5.1.1",
        diagnostic="no such user",
        source="dsn",
        reported_at=NOW,
    )
    again = hard.model_copy(update={"source": "ses"})
    soft = DeliveryBounced(**base, kind="soft", source="dsn", reported_at=NOW)
    complaint = DeliveryComplained(**base, source="arf", reported_at=NOW)
    confirmed = DeliveryConfirmed(**ref("sms"), source="sms_gateway", reported_at=NOW)
    assert [kind_of(r) for r in (hard, soft, complaint, confirmed)] == [
        "hard_bounce",
        "soft_bounce",
        "complaint",
        "confirmed",
    ]
    assert detail_of(hard) == "5.1.1 no such user"
    assert detail_of(complaint) == "abuse"
    assert once_each([hard, again, soft, complaint]) == [hard, soft, complaint]


def test_suppressed_points_are_left_out_and_counted_apart_from_opt_outs() -> None:
    points = [
        ContactPoint(address="Ann@example.com"),
        ContactPoint(address="bob@example.com", opted_out=True),
        ContactPoint(address="cy@example.com"),
    ]
    emails = json.loads(
        points_json("email", points, {("email", "ann@example.com"), ("email", "bob@example.com")})
    )
    assert [p.get("suppressed", False) for p in emails] == [True, True, False]
    row = {"emails": emails, "phones": []}
    assert reachable(row, ["email"]) == [("email", "cy@example.com")]
    estimate = Estimate()
    estimate.add(["email"], [row])
    assert estimate.messages == {"email": 1}
    # Bob opted out and is suppressed: counted once, as opted out.
    assert estimate.opted_out_addresses == {"email": 1}
    assert estimate.suppressed_addresses == {"email": 1}


def test_a_late_progress_with_an_outcome_replaces_the_completion() -> None:
    ids = {"tenant_id": "t1", "broadcast_id": uuid4(), "run_id": uuid4()}
    completed = BroadcastCompleted(
        **ids,
        requested_by="u",
        outcome="fully_successful",
        counters=Counters(messages_targeted=2, delivered=2),
    )
    late = BroadcastProgressed(
        **ids,
        counters=Counters(messages_targeted=2, delivered=1, failed=1, hard_bounced=1),
        outcome="partially_successful",
        occurred_at=completed.occurred_at + timedelta(seconds=1),
    )
    plain = BroadcastProgressed(
        **ids,
        counters=Counters(messages_targeted=2, delivered=1),
        occurred_at=completed.occurred_at + timedelta(seconds=2),
    )
    [kept] = newest([plain, completed, late])
    assert kept.outcome == "partially_successful"
    assert kept.counters.hard_bounced == 1
