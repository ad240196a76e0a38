"""The tracker's commands: listing and resolving manual actions, a contract's history, the
per-message log of a run.

Each command gets one answer on its sender's answers topic (`broadcast.events` for the
platform, `broadcast.events.<client>` for a client: the app publishes it), keyed by tenant; a
replay gets the same answer and changes nothing.
"""

from uuid import UUID

import asyncpg

from shared.events import (
    ActionClosed,
    ActionResolved,
    ActionsListed,
    BroadcastRejected,
    ContractHistory,
    ContractHistoryListed,
    FollowUpRequested,
    ListActions,
    ListMessages,
    MessageEntry,
    MessagesListed,
    RejectionReason,
    ResolveAction,
    TrackerCommand,
)
from shared.ids import follow_up_run_id_for, run_id_for
from shared.labels import label
from shared.paging import InvalidCursor, decode_cursor, page
from shared.publishing import Publisher

from . import store

# A message's detail in a listing: enough to tell the reason; the page must fit one record.
DETAIL_CUT = 200
Answer = ActionsListed | ActionResolved | ContractHistoryListed | MessagesListed | BroadcastRejected


async def answer(
    pool: asyncpg.Pool, runs: Publisher, command: TrackerCommand, *, history_limit: int
) -> Answer:
    """`history_limit`: the most messages a contract's history answers with (the newest)."""
    match command:
        case ListActions():
            return ActionsListed(
                tenant_id=command.tenant_id,
                request_id=command.request_id,
                actions=await store.list_actions(
                    pool, command.tenant_id, command.broadcast_id, command.state, command.limit
                ),
            )
        case ContractHistory():
            return ContractHistoryListed(
                tenant_id=command.tenant_id,
                request_id=command.request_id,
                contract_id=command.contract_id,
                messages=await store.contract_history(
                    pool, command.tenant_id, command.contract_id, history_limit
                ),
            )
        case ResolveAction():
            return await _resolve(pool, runs, command)
        case ListMessages():
            return await _messages(pool, command)


async def _messages(pool: asyncpg.Pool, command: ListMessages) -> Answer:
    asked = run_id_for(command.broadcast_id, command.run_number) if command.run_number else None
    run_id = await store.broadcast_run(pool, command.tenant_id, command.broadcast_id, asked)
    if run_id is None:
        if command.run_number:
            return _rejected(command, "run_not_found", f"no run {command.run_number}", "run_number")
        # A broadcast never started, or another tenant's: the same answer, nothing disclosed.
        return _rejected(
            command, "broadcast_not_found", "no run of this broadcast was tracked", "broadcast_id"
        )
    try:
        after = UUID(decode_cursor(command.cursor, str)[0]) if command.cursor else None
    except (InvalidCursor, ValueError):
        return _rejected(command, "invalid_field", "not a cursor this query gave", "cursor")
    rows = await store.messages_page(pool, run_id, command.state, after, command.limit + 1)
    messages, next_cursor = page(rows, command.limit, lambda r: (str(r["recipient_id"]),))
    return MessagesListed(
        tenant_id=command.tenant_id,
        request_id=command.request_id,
        broadcast_id=command.broadcast_id,
        run_id=run_id,
        messages=[
            MessageEntry(
                **dict(r) | {"detail": r["detail"] and r["detail"][:DETAIL_CUT]},
                state_label=label("message_state", r["state"], command.language),
            )
            for r in messages
        ],
        next_cursor=next_cursor,
    )


async def _resolve(pool: asyncpg.Pool, runs: Publisher, command: ResolveAction) -> Answer:
    follow_up_run = follow_up_run_id_for(command.action_id, command.request_id)
    try:
        resolved = await store.resolve_action(
            pool,
            command.tenant_id,
            command.action_id,
            command.resolution,
            command.requested_by,
            command.request_id,
            follow_up_run,
            command.address,
        )
    except store.AddressNeeded:
        return _rejected(
            command,
            "invalid_field",
            "the customer had no address: a send needs the address to send it to",
            field="address",
        )
    except store.AddressUnusable as unusable:
        return _rejected(command, "invalid_field", str(unusable), field="address")
    if resolved is None:
        return _rejected(command, "action_not_found", f"no action {command.action_id}")
    action = resolved.action
    if (resolved.request_id, resolved.resolution) != (command.request_id, command.resolution):
        return _rejected(
            command,
            "already_resolved",
            f"another request resolved this action: it is {action.state}",
        )
    # Published again on a replay, in case a crash lost them: the follow-up run's ids are
    # stable, so nothing is sent twice, and closing a failure twice changes nothing.
    key = str(action.broadcast_id).encode()
    if command.resolution == "send" and action.state == "sending" and resolved.follow_up_address:
        await runs.publish(
            FollowUpRequested(
                tenant_id=command.tenant_id,
                broadcast_id=action.broadcast_id,
                run_id=action.run_id,
                follow_up_run_id=follow_up_run,
                action_id=action.action_id,
                contract_id=action.contract_id,
                channel=action.channel,
                address=resolved.follow_up_address,
                requested_by=command.requested_by,
            ),
            key=key,
        )
    await runs.publish(
        ActionClosed(
            tenant_id=command.tenant_id,
            broadcast_id=action.broadcast_id,
            run_id=action.run_id,
            recipient_id=resolved.recipient_id,
            action_id=action.action_id,
            contract_id=action.contract_id,
            channel=action.channel,
            address=action.address,
            resolution=command.resolution,
        ),
        key=key,
    )
    return ActionResolved(
        tenant_id=command.tenant_id,
        request_id=command.request_id,
        action_id=action.action_id,
        resolution=command.resolution,
        state=action.state,
        run_id=follow_up_run if command.resolution == "send" else None,
    )


def _rejected(
    command: ResolveAction | ListMessages,
    reason: RejectionReason,
    message: str,
    field: str = "action_id",
) -> BroadcastRejected:
    return BroadcastRejected(
        tenant_id=command.tenant_id,
        request_id=command.request_id,
        broadcast_id=getattr(command, "broadcast_id", None),
        command=command.type,
        reason=reason,
        field=field,
        message=message,
    )
