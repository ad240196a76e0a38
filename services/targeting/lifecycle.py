"""A broadcast's lifecycle: which command may move it from which state. Pure: no I/O.

    draft ──schedule──> scheduled ──(its time)──┐
      │ <──update──┘      │                       v
      └──────────start────┴─────────────────> running <──resume── paused
                                                 │  └───pause────────^ │
                                                 v                     v
                                             completed  <──────────────┘
    cancel: draft | scheduled | running | paused -> cancelled
    resend: completed | cancelled (after a run) -> running, as a new run

The diagram with every rule is in docs/ARCHITECTURE.md.
"""

from typing import Literal, get_args

from .broadcasts import Rejection

State = Literal["draft", "scheduled", "running", "paused", "completed", "cancelled"]
Action = Literal["update", "schedule", "start", "pause", "resume", "cancel", "resend", "complete"]
STATES: tuple[State, ...] = get_args(State)

_NOT_STARTED: frozenset[State] = frozenset({"draft", "scheduled"})
_LIVE: frozenset[State] = frozenset({"running", "paused"})
_FINISHED: frozenset[State] = frozenset({"completed", "cancelled"})

# action -> (states it applies to, the state it leads to; None: stays where it is)
_MOVES: dict[Action, tuple[frozenset[State], State | None]] = {
    "update": (_NOT_STARTED, None),
    "schedule": (_NOT_STARTED, "scheduled"),
    "start": (_NOT_STARTED, "running"),
    "pause": (frozenset({"running"}), "paused"),
    "resume": (frozenset({"paused"}), "running"),
    "cancel": (_NOT_STARTED | _LIVE, "cancelled"),
    "resend": (_FINISHED, "running"),
    "complete": (_LIVE, "completed"),
}

# Asking again for the state a broadcast is already in changes nothing and is not an error:
# a double click, or the tracker pausing a broadcast an operator paused first.
_ALREADY: dict[Action, State] = {
    "pause": "paused",
    "resume": "running",
    "cancel": "cancelled",
}


def _refusal(state: State, action: Action) -> Rejection:
    field = "broadcast_id"
    match action:
        case "update" | "schedule" | "start":
            if state == "cancelled":
                return Rejection("already_started", field, "this broadcast was cancelled")
            hint = "; use resend to send it again" if action == "start" else ""
            return Rejection(
                "already_started", field, f"this broadcast is {state}: it was already sent{hint}"
            )
        case "pause":
            return Rejection("not_running", field, f"this broadcast is {state}, not running")
        case "resume":
            return Rejection("not_paused", field, f"this broadcast is {state}, not paused")
        case "cancel":
            return Rejection("not_running", field, f"this broadcast is {state}: nothing to stop")
        case "resend":
            if state in _NOT_STARTED:
                return Rejection("not_started", field, f"this broadcast is {state}: start it")
            return Rejection(
                "not_finished",
                field,
                f"this broadcast is {state}: resend once it is completed or cancelled",
            )
        case "complete":
            return Rejection("not_running", field, f"this broadcast is {state}")


def after(state: State, action: Action) -> State | None:
    """The state `action` leads to; None when it changes nothing. Raises Rejection."""
    if _ALREADY.get(action) == state:
        return None
    allowed, target = _MOVES[action]
    if state not in allowed:
        raise _refusal(state, action)
    return target
