"""A manual follow-up action: a failed message somebody has to look at, as the tracker
shows it."""

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from shared.events.base import Channel

# `resent`: a resend to its run's failures sent the message again.
ActionState = Literal["open", "sending", "sent", "ignored", "resent"]


class ActionView(BaseModel):
    model_config = ConfigDict(frozen=True)

    action_id: int
    broadcast_id: UUID
    run_id: UUID
    contract_id: str
    channel: Channel
    address: str
    reason: str | None
    detail: str | None
    state: ActionState
    created_at: datetime
    resolved_by: str | None = None
    resolved_at: datetime | None = None
