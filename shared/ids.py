"""Stable identifiers: the same inputs always give the same id, so a replay is recognisable."""

from uuid import UUID, uuid5

_NAMESPACE = UUID("6f1c2b1e-8f3a-4c52-9a57-2f0d8c3e4b10")


def broadcast_id_for(tenant_id: str, request_id: str) -> UUID:
    """The id of a broadcast created without one: a replayed create lands on the same broadcast."""
    return uuid5(_NAMESPACE, f"broadcast|{tenant_id}|{request_id}")


def run_id_for(broadcast_id: UUID, run_number: int) -> UUID:
    return uuid5(_NAMESPACE, f"run|{broadcast_id}|{run_number}")


def recipient_id_for(run_id: UUID, contract_id: str, channel: str, address: str) -> UUID:
    """One message of one run. Addresses compare case-insensitively, as mailboxes do in practice."""
    return uuid5(_NAMESPACE, f"recipient|{run_id}|{contract_id}|{channel}|{address.lower()}")


def event_id_for(subject: UUID, what: str) -> UUID:
    """The id of an event that must be recognisable when it is published again after a crash."""
    return uuid5(_NAMESPACE, f"event|{subject}|{what}")


def preview_run_id_for(broadcast_id: UUID, request_id: str) -> UUID:
    """A preview is a run of its own: a replayed preview command lands on the same run."""
    return uuid5(_NAMESPACE, f"preview|{broadcast_id}|{request_id}")


def follow_up_run_id_for(action_id: int, request_id: str) -> UUID:
    """The run that sends an action's message again: a replayed command lands on the same run,
    another command (after the follow-up failed) on a new one."""
    return uuid5(_NAMESPACE, f"follow-up|{action_id}|{request_id}")


def notice_run_id_for(run_id: UUID, user_id: str) -> UUID:
    """The notice telling `user_id` that run `run_id` completed: the completion announced
    again lands on the same run, so the person gets one email."""
    return uuid5(_NAMESPACE, f"notice|{run_id}|{user_id}")


def opt_out_event_id_for(tenant_id: str, channel: str, address: str) -> UUID:
    """The `contact.opted_out` of one address: published again after a lost publish, it keeps
    its id, so readers can drop the copy."""
    return uuid5(_NAMESPACE, f"opted-out|{tenant_id}|{channel}|{address.lower()}")
