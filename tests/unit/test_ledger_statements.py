"""The ledger's per-wave statements read back (no database: a pool that answers as PostgreSQL
would). The SQL itself is exercised by tests/integration/test_ledger_claims.py."""

import os
from typing import Any
from uuid import UUID, uuid4

from bench import database
from services.dispatcher import ledger
from services.dispatcher.policy import Attempt
from shared.db import STATEMENT_LIFETIME_SECONDS
from shared.events import MessageRendered
from tests.unit.rendered import rendered

DELIVERED = Attempt("accepted", 250, "2.0.0 queued")


class _Pool:
    """Answers every fetch with the next of `answers`; keeps what it was asked."""

    def __init__(self, *answers: list[dict[str, Any]]) -> None:
        self.answers = list(answers)
        self.asked: list[tuple[str, tuple[Any, ...]]] = []

    async def fetch(self, query: str, *args: Any) -> list[dict[str, Any]]:
        self.asked.append((query, args))
        return self.answers.pop(0)


def _message() -> MessageRendered:
    return rendered("email", "a@example.com")


def _final(recipient_id: UUID, state: str) -> dict[str, Any]:
    return {
        "recipient_id": recipient_id,
        "claim_token": None,
        "state": state,
        "reason": "unknown_outcome" if state == "unknown" else None,
        "provider_code": 250,
        "provider_message": None,
    }


async def test_one_statement_claims_a_wave_and_reports_what_was_final_before() -> None:
    new, delivered, unknown, elsewhere = (_message() for _ in range(4))
    pool = _Pool(
        [
            {**_final(new.recipient_id, "x"), "claim_token": 7, "state": None},
            _final(delivered.recipient_id, "delivered"),
            _final(unknown.recipient_id, "unknown"),
        ]
    )
    claims = await ledger.claim(
        pool,  # type: ignore[arg-type]
        [new, delivered, unknown, elsewhere],
        ledger.Claimant("d-1", 3),
    )
    assert claims.claimed == {new.recipient_id: 7}
    assert claims.finished == {
        delivered.recipient_id: ledger.Finished("delivered", Attempt("accepted", 250, "")),
        unknown.recipient_id: ledger.Finished(
            "unknown", Attempt("unknown", 250, "", "unknown_outcome")
        ),
    }
    [(query, args)] = pool.asked
    assert "ON CONFLICT (recipient_id) DO NOTHING" in query
    assert args[7:] == ("d-1", 3, ["delivered", "failed", "unknown", "cancelled"])


async def test_an_outcome_is_applied_or_a_correction_as_the_row_was() -> None:
    mine, settled, lost = uuid4(), uuid4(), uuid4()
    pool = _Pool(
        [
            {"recipient_id": mine, "corrected": False},
            {"recipient_id": settled, "corrected": True},
        ]
    )
    outcomes = dict.fromkeys((mine, settled, lost), DELIVERED)
    recorded = await ledger.record(pool, outcomes, {mine: 1, settled: 2, lost: 3})  # type: ignore[arg-type]
    assert recorded == ledger.Recorded({mine}, {settled})
    assert len(pool.asked) == 1  # not `again`: the claim lost meanwhile is not looked for


async def test_tried_again_an_outcome_already_committed_under_its_token_counts() -> None:
    committed, corrected = uuid4(), uuid4()
    pool = _Pool(
        [],
        [
            {"recipient_id": committed, "corrected": False},
            {"recipient_id": corrected, "corrected": True},
        ],
    )
    outcomes = dict.fromkeys((committed, corrected), DELIVERED)
    recorded = await ledger.record(
        pool,  # type: ignore[arg-type]
        outcomes,
        {committed: 1, corrected: 2},
        again=True,
    )
    assert recorded == ledger.Recorded({committed}, {corrected})
    assert pool.asked[1][1] == ([committed, corrected], [1, 2], ["delivered", "delivered"])


def test_statements_are_planned_again_within_seconds() -> None:
    # A plan made on a nearly empty table must not outlive the table's first seconds.
    assert 0 < STATEMENT_LIFETIME_SECONDS <= 5


def test_the_database_bench_reads_cpu_time_from_proc() -> None:
    spent = database._ticks(os.getpid())
    sum(i * i for i in range(2_000_000))
    assert database._ticks(os.getpid()) > spent
    assert database._ticks(os.getpid(), children=True) >= database._ticks(os.getpid())
