"""The records that open and close a run's targeting, built one way for every kind of run.

Their event ids derive from the run, so a run announced again after a crash publishes the same
records and the stages downstream drop the copies. Pure: no I/O.
"""

from collections.abc import Sequence
from typing import Literal
from uuid import UUID

from shared.events import (
    Channel,
    Content,
    CreateBroadcast,
    RunStarted,
    TargetingCompleted,
    TemplateVersion,
    TenantSettings,
)
from shared.ids import event_id_for

Purpose = Literal["broadcast", "preview", "follow_up", "notice"]


def run_started(
    broadcast_id: UUID,
    run_id: UUID,
    definition: CreateBroadcast,
    *,
    requested_by: str,
    content: Content,
    template: TemplateVersion | None,
    settings: TenantSettings,
    channels: Sequence[Channel] | None = None,
    purpose: Purpose = "broadcast",
    resends_failures_of: UUID | None = None,
    include_unknown: bool = False,
    created_by: str | None = None,
) -> RunStarted:
    """The run's frozen definition: `definition`'s name, languages and sender, sent on
    `channels` (the definition's own when not given) with the content pinned for the run.
    `created_by`: the broadcast's creator, whom a broadcast run's completion is addressed to."""
    return RunStarted(
        event_id=event_id_for(run_id, "run_started"),
        tenant_id=definition.tenant_id,
        broadcast_id=broadcast_id,
        run_id=run_id,
        name=definition.name,
        requested_by=requested_by,
        channels=list(definition.channels if channels is None else channels),
        languages=definition.languages,
        content=content,
        sender=definition.sender,
        purpose=purpose,
        template=template,
        settings=settings,
        resends_failures_of=resends_failures_of,
        include_unknown=include_unknown,
        created_by=created_by,
    )


def targeting_completed(
    tenant_id: str,
    broadcast_id: UUID,
    run_id: UUID,
    *,
    contracts: int,
    messages: int,
    unreachable_contracts: int,
) -> TargetingCompleted:
    """Every recipient of the run was published: `messages` is the run's exact total."""
    return TargetingCompleted(
        event_id=event_id_for(run_id, "targeting_completed"),
        tenant_id=tenant_id,
        broadcast_id=broadcast_id,
        run_id=run_id,
        contracts=contracts,
        messages=messages,
        unreachable_contracts=unreachable_contracts,
    )
