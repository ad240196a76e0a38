"""The one answer every command gets, on its sender's answers topic (`CommandHandler.handle`).
Pure: no I/O."""

from uuid import UUID

from shared.events import (
    AnyCommand,
    BroadcastAccepted,
    BroadcastDescribed,
    BroadcastEstimated,
    BroadcastRejected,
    BroadcastsListed,
    ContactReenabled,
    CriteriaDescribed,
    TemplateDeleted,
    TemplateSaved,
    TemplatesListed,
    TenantConfigured,
    VariablesListed,
)

from .broadcasts import Rejection

Answer = (
    BroadcastAccepted
    | BroadcastEstimated
    | BroadcastRejected
    | TenantConfigured
    | TemplateSaved
    | TemplateDeleted
    | TemplatesListed
    | BroadcastsListed
    | BroadcastDescribed
    | VariablesListed
    | CriteriaDescribed
    | ContactReenabled
)


def accepted(command: AnyCommand, broadcast_id: UUID, run_id: UUID | None = None) -> Answer:
    return BroadcastAccepted(
        tenant_id=command.tenant_id,
        request_id=command.request_id,
        broadcast_id=broadcast_id,
        command=command.type,
        run_id=run_id,
    )


def rejected(command: AnyCommand, rejection: Rejection) -> BroadcastRejected:
    return BroadcastRejected(
        tenant_id=command.tenant_id,
        request_id=command.request_id,
        broadcast_id=getattr(command, "broadcast_id", None),
        command=command.type,
        reason=rejection.code,
        field=rejection.field,
        message=rejection.message,
    )
