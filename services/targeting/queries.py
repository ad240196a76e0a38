"""Targeting's queries: the broadcasts list page, a broadcast's page, the template variables
and the criteria, each one page with the labels of the language asked for.

Counters come from the read model the tracker's events feed (`counters.py`): targeting never
reads the tracker's tables.
"""

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import asyncpg

from shared.events import (
    BroadcastDescribed,
    BroadcastsListed,
    BroadcastSummary,
    CreateBroadcast,
    CriteriaDescribed,
    CriterionEntry,
    DescribeCriteria,
    GetBroadcast,
    Labelled,
    Language,
    ListBroadcasts,
    ListVariables,
    Query,
    RunSummary,
    VariableEntry,
    VariablesListed,
)
from shared.labels import Kind, label, labels
from shared.paging import InvalidCursor, decode_cursor, page
from shared.variables import CATALOGUE

from . import store
from .broadcasts import Rejection, no_broadcast
from .criteria import FIELDS

T = TypeVar("T")


def _position(query: Query, *types: type) -> list[Any] | None:
    """Where the page starts: None for the first; refused naming `cursor` when not one of ours."""
    if query.cursor is None:
        return None
    try:
        return decode_cursor(query.cursor, *types)
    except InvalidCursor:
        raise _not_ours() from None


def _not_ours() -> Rejection:
    return Rejection("invalid_field", InvalidCursor.field, "not a cursor this query gave")


def run_summary(row: asyncpg.Record, language: Language) -> RunSummary | None:
    """The run columns of `row` (store's `_RUN`); None for a broadcast never started."""
    if row["run_id"] is None:
        return None
    return RunSummary(
        run_id=row["run_id"],
        run_number=row["run_number"],
        state="completed" if row["run_completed"] else "running",
        outcome=row["outcome"],
        outcome_label=label("outcome", row["outcome"], language),
        started_at=row["run_started_at"],
        targeted_at=row["targeted_at"],
        completed_at=row["run_completed_at"],
        counters=row["counters"],
    )


def broadcast_summary(
    row: asyncpg.Record, latest: RunSummary | None, language: Language
) -> BroadcastSummary:
    return BroadcastSummary(
        broadcast_id=row["broadcast_id"],
        name=row["name"],
        state=row["state"],
        state_label=label("broadcast_state", row["state"], language) or row["state"],
        created_at=row["created_at"],
        scheduled_at=row["scheduled_at"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        latest_run=latest,
    )


async def list_broadcasts(pool: asyncpg.Pool, query: ListBroadcasts) -> BroadcastsListed:
    after = _position(query, str, str)
    position: tuple[datetime, UUID] | None = None
    if after is not None:
        try:
            position = datetime.fromisoformat(after[0]), UUID(after[1])
        except ValueError:
            raise _not_ours() from None
    rows = await store.broadcasts_page(
        pool, query.tenant_id, query.state, position, query.limit + 1
    )
    listed, next_cursor = page(
        rows, query.limit, lambda r: (r["created_at"].isoformat(), str(r["broadcast_id"]))
    )
    return BroadcastsListed(
        tenant_id=query.tenant_id,
        request_id=query.request_id,
        broadcasts=[
            broadcast_summary(r, run_summary(r, query.language), query.language) for r in listed
        ],
        next_cursor=next_cursor,
    )


async def get_broadcast(pool: asyncpg.Pool, query: GetBroadcast) -> BroadcastDescribed:
    position = _position(query, int)
    before: int | None = position[0] if position else None
    async with pool.acquire() as connection:
        found = await store.broadcast_with_definition(
            connection, query.tenant_id, query.broadcast_id
        )
        if found is None:
            raise no_broadcast(query.tenant_id, query.broadcast_id)
        rows = await store.runs_page(connection, query.broadcast_id, before, query.limit + 1)
        # The summary shows the latest run whichever page of runs this is.
        latest = (
            rows
            if before is None
            else await store.runs_page(connection, query.broadcast_id, None, 1)
        )
    runs, next_cursor = page(rows, query.limit, lambda r: (r["run_number"],))
    return BroadcastDescribed(
        tenant_id=query.tenant_id,
        request_id=query.request_id,
        broadcast=broadcast_summary(
            found, run_summary(latest[0], query.language) if latest else None, query.language
        ),
        created_by=found["requested_by"],
        definition=CreateBroadcast.model_validate(found["definition"]),
        runs=[s for r in runs if (s := run_summary(r, query.language))],
        next_cursor=next_cursor,
    )


def _labelled(kind: Kind, code: str, language: Language) -> dict[str, str]:
    french, english = labels(kind, code)
    return {
        "code": code,
        "label": french if language == "fr" else english,
        "label_fr": french,
        "label_en": english,
    }


def _offset_page(
    query: Query, items: list[T], build: Callable[[T], Any]
) -> tuple[list[Any], str | None]:
    """A page of a fixed catalogue, by position in it."""
    start = (_position(query, int) or [0])[0]
    if start < 0:  # a slice from the end: never a position we gave
        raise _not_ours()
    return page([build(i) for i in items[start:]], query.limit, lambda _: (start + query.limit,))


def list_variables(query: ListVariables) -> VariablesListed:
    language = query.language
    variables, next_cursor = _offset_page(
        query,
        list(CATALOGUE),
        lambda v: VariableEntry(
            code=v.name,
            label=v.label_fr if language == "fr" else v.label_en,
            label_fr=v.label_fr,
            label_en=v.label_en,
            kind=v.kind,
        ),
    )
    return VariablesListed(
        tenant_id=query.tenant_id,
        request_id=query.request_id,
        variables=variables,
        next_cursor=next_cursor,
    )


def describe_criteria(query: DescribeCriteria) -> CriteriaDescribed:
    language = query.language
    criteria, next_cursor = _offset_page(
        query,
        list(FIELDS.items()),
        lambda item: CriterionEntry(
            **_labelled("criterion", item[0], language),
            values=None
            if item[1].values is None
            else [
                Labelled(**_labelled("criterion_value", v, language))
                for v in sorted(item[1].values)
            ],
        ),
    )
    return CriteriaDescribed(
        tenant_id=query.tenant_id,
        request_id=query.request_id,
        criteria=criteria,
        next_cursor=next_cursor,
    )
