"""Which command moves a broadcast from which state, and the reasons given when it cannot."""

import pytest

from services.targeting.broadcasts import Rejection
from services.targeting.lifecycle import STATES, Action, State, after


@pytest.mark.parametrize(
    ("state", "action", "expected"),
    [
        ("draft", "update", None),
        ("scheduled", "update", None),
        ("draft", "schedule", "scheduled"),
        ("scheduled", "schedule", "scheduled"),
        ("draft", "start", "running"),
        ("scheduled", "start", "running"),
        ("running", "pause", "paused"),
        ("paused", "resume", "running"),
        ("running", "complete", "completed"),
        ("paused", "complete", "completed"),
        ("completed", "resend", "running"),
        ("cancelled", "resend", "running"),
        *[(s, "cancel", "cancelled") for s in ("draft", "scheduled", "running", "paused")],
    ],
)
def test_allowed_moves(state: State, action: Action, expected: State | None) -> None:
    assert after(state, action) == expected


@pytest.mark.parametrize(
    ("state", "action"), [("paused", "pause"), ("running", "resume"), ("cancelled", "cancel")]
)
def test_asking_for_the_state_it_is_in_changes_nothing(state: State, action: Action) -> None:
    assert after(state, action) is None


@pytest.mark.parametrize(
    ("state", "action", "reason", "words"),
    [
        ("running", "start", "already_started", "use resend"),
        ("completed", "start", "already_started", "already sent"),
        ("cancelled", "start", "already_started", "cancelled"),
        ("running", "update", "already_started", "running"),
        ("completed", "schedule", "already_started", "completed"),
        ("draft", "pause", "not_running", "draft, not running"),
        ("completed", "pause", "not_running", "completed"),
        ("draft", "resume", "not_paused", "not paused"),
        ("completed", "cancel", "not_running", "nothing to stop"),
        ("running", "resend", "not_finished", "once it is completed"),
        ("paused", "resend", "not_finished", "paused"),
        ("draft", "resend", "not_started", "start it"),
        ("draft", "complete", "not_running", "draft"),
    ],
)
def test_refusals_name_the_state_and_the_way_out(
    state: State, action: Action, reason: str, words: str
) -> None:
    with pytest.raises(Rejection) as refused:
        after(state, action)
    assert (refused.value.code, refused.value.field) == (reason, "broadcast_id")
    assert words in refused.value.message


@pytest.mark.parametrize(
    ("state", "action", "message"),
    [
        (
            "running",
            "start",
            "this broadcast is running: it was already sent; use resend to send it again",
        ),
        ("running", "update", "this broadcast is running: it was already sent"),
        ("completed", "schedule", "this broadcast is completed: it was already sent"),
        # Cancelled is not "already sent": it may have stopped before its first message.
        ("cancelled", "start", "this broadcast was cancelled"),
        ("cancelled", "update", "this broadcast was cancelled"),
    ],
)
def test_only_start_points_to_resend_and_a_cancelled_broadcast_was_not_sent(
    state: State, action: Action, message: str
) -> None:
    with pytest.raises(Rejection) as refused:
        after(state, action)
    assert refused.value.message == message


def test_nothing_leaves_a_finished_broadcast_but_resend() -> None:
    for state in ("completed", "cancelled"):
        movable = set()
        for action in ("update", "schedule", "start", "pause", "resume", "resend", "complete"):
            try:
                if after(state, action) is not None:
                    movable.add(action)
            except Rejection:
                pass
        assert movable == {"resend"}, state
    assert set(STATES) == {"draft", "scheduled", "running", "paused", "completed", "cancelled"}
