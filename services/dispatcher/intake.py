"""Reports learnt after the hand-over, turned into events about their message.

A report comes from outside the engine: a delivery status notification or a feedback report
mailed to a message's return path, a sending provider's webhook, the SMS gateway's receipt or
an SMS reply. Each intake adapter names the message by its recipient id (from a signed return
path, a Message-ID, or the gateway's reference) and says what it learnt (a `Finding`); the
intake finds the message's identity in the ledger and publishes the report on
broadcast.deliveries, keyed by recipient, awaiting the broker's acknowledgement. An adapter
answers its sender only after that, so a report it acknowledged is never lost; a sender that
gets no answer sends again, and the consumers apply a report once (they are idempotent).

A report about a message this dispatcher never handed over (a guessed, stale or foreign id) is
left out: it names no message of ours.
"""

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
from pydantic import TypeAdapter

from shared.events import DeliveryReport

_REPORT: TypeAdapter[DeliveryReport] = TypeAdapter(DeliveryReport)


@dataclass(frozen=True)
class Finding:
    """What an adapter learnt of one message: the report's `type` and its own fields (not the
    message's identity, which the ledger gives)."""

    recipient_id: UUID
    report: Mapping[str, Any]


async def identities(pool: asyncpg.Pool, ids: Sequence[UUID]) -> dict[UUID, dict[str, Any]]:
    """The MessageRef fields of the messages the ledger knows among `ids`."""
    rows = await pool.fetch(
        """SELECT recipient_id, run_id, tenant_id, broadcast_id, contract_id, channel, address
           FROM dispatcher.deliveries
           WHERE recipient_id = ANY($1::uuid[]) AND broadcast_id IS NOT NULL""",
        list(set(ids)),
    )
    return {row["recipient_id"]: dict(row) for row in rows}


class Intake:
    """Turns findings into published reports (`publish` awaits the broker's ack)."""

    def __init__(
        self,
        pool: Callable[[], asyncpg.Pool],
        publish: Callable[[Sequence[DeliveryReport]], Awaitable[None]],
    ) -> None:
        self._pool = pool
        self._publish = publish

    async def take(self, findings: Sequence[Finding]) -> list[DeliveryReport]:
        """Publish a report for each finding about a message of ours; returns them."""
        if not findings:
            return []
        known = await identities(self._pool(), [f.recipient_id for f in findings])
        reports = [
            _REPORT.validate_python({**known[f.recipient_id], **f.report})
            for f in findings
            if f.recipient_id in known
        ]
        if reports:
            await self._publish(reports)
        return reports
