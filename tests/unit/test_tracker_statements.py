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
    """Answers the batch's statement with `answer`; keeps every statement it was asked."""

    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = answer
        self.asked: list[str] = []

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
