"""The tracker's per-batch statements read back (no database: a connection that answers as
PostgreSQL would). The SQL itself is exercised by tests/integration/test_tracker_counters.py
and test_tracker_actions.py (resends to the failures)."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import uuid4

import pytest

from services.tracker import store
from tests.unit.tracker_fakes import delivered


class _Connection:
    """Answers a row with `answer`, rows with `rows`; keeps every statement it was asked."""

    def __init__(self, answer: dict[str, Any], rows: list[dict[str, Any]] | None = None) -> None:
        self.answer = answer
        self.rows = rows or []
        self.asked: list[str] = []

    async def fetch(self, query: str, *args: Any) -> list[dict[str, Any]]:
        self.asked.append(query)
        return self.rows

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        yield

    async def fetchrow(self, query: str, *args: Any) -> dict[str, Any]:
        self.asked.append(query)
        return self.answer

    async def execute(self, query: str, *args: Any) -> str:
        self.asked.append(query)
        return "UPDATE 0"


class _Pool:
    def __init__(self, connection: _Connection) -> None:
        self.connection = connection

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[_Connection]:
        yield self.connection

    async def fetch(self, query: str, *args: Any) -> list[dict[str, Any]]:
        return await self.connection.fetch(query, *args)


@pytest.mark.parametrize("resend", [False, True])
async def test_a_batch_is_one_statement_unless_it_concerns_a_resend(resend: bool) -> None:
    run_id = uuid4()
    new, copy = delivered(run_id), delivered(run_id)
    connection = _Connection({"recorded": [new.recipient_id], "resend": resend})
    runs, recorded = await store.record_deliveries(
        _Pool(connection),  # type: ignore[arg-type]
        [new, copy],
    )
    assert (runs, recorded) == ({run_id}, [new])
    assert connection.asked[1:] == ([store._RESENT_NO_CONTACT] if resend else [])


@pytest.mark.parametrize(("delivered", "statements"), [(9, 1), (10, 2)])
async def test_a_batch_that_completes_no_run_reads_the_runs_and_writes_nothing(
    delivered: int, statements: int
) -> None:
    run_id = uuid4()
    # Both statements are answered with this row: the run's counters, then its completion.
    run = {"run_id": run_id, "messages_targeted": 10, "delivered": delivered, "failed": 0}
    row = {**run, "cancelled": 0, "cancel_requested": False, "purpose": "broadcast", "seconds": 1.0}
    connection = _Connection({}, [row])
    completed = await store.complete_finished(_Pool(connection), [run_id])  # type: ignore[arg-type]
    assert completed == ([store.Completed(1.0, 10)] if statements == 2 else [])
    assert len(connection.asked) == statements


async def test_no_completion_to_publish_costs_one_statement() -> None:
    connection = _Connection({})
    assert await store.unpublished_completions(_Pool(connection)) == []  # type: ignore[arg-type]
    assert len(connection.asked) == 1
