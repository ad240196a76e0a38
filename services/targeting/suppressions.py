"""Suppressing addresses from delivery reports, announced at least once.

A report batch is a Kafka batch: redelivered after a crash, it records nothing twice
(`store.record_suppressions` keeps the first decision) and announces again, with the same event
id, the suppressions whose `contact.suppressed` was not acknowledged.
"""

import logging
from collections.abc import Callable, Sequence

import asyncpg

from shared.events import (
    ContactReenabled,
    ContactSuppressed,
    DeliveryBounced,
    DeliveryComplained,
    MessageDelivered,
    ReenableContact,
    ReplyReceived,
)
from shared.ids import event_id_for
from shared.publishing import Publisher

from . import store
from .suppression import Suppression, decided_by, in_streak, normalised, streak, suppression

log = logging.getLogger("targeting")

Report = MessageDelivered | DeliveryBounced | DeliveryComplained | ReplyReceived


class Suppressions:
    """`soft_bounces` soft bounces in a row suppress an address."""

    def __init__(
        self, pool: Callable[[], asyncpg.Pool], events: Publisher, *, soft_bounces: int
    ) -> None:
        self._pool = pool
        self._events = events
        self._soft_bounces = soft_bounces

    async def apply(self, reports: Sequence[Report]) -> None:
        """Note deliveries and the bounces of streaks, suppress what the reports decide,
        announce."""
        await store.note_deliveries(
            self._pool(), [r for r in reports if isinstance(r, MessageDelivered)]
        )
        decided = [
            s
            for r in reports
            if not isinstance(r, MessageDelivered) and (s := decided_by(r)) is not None
        ]
        streaked = [r for r in reports if isinstance(r, DeliveryBounced) and in_streak(r)]
        streaks = await store.note_soft_bounces(self._pool(), streaked)
        for bounce in streaked:  # the last bounce of a streak that reached the threshold decides
            key = (bounce.tenant_id, bounce.channel, normalised(bounce.address))
            if streak(streaks.get(key, [])) >= self._soft_bounces:
                decided.append(suppression(bounce, "soft_bounces"))
        for s in await store.record_suppressions(self._pool(), decided):
            await self._announce(s)

    async def reenable(self, command: ReenableContact) -> ContactReenabled:
        was_suppressed = await store.reenable(self._pool(), command)
        # Who and why, never the address (it is personal data; the history table keeps it).
        log.info(
            "contact re-enabled: tenant %s, channel %s, by %s, was suppressed: %s",
            command.tenant_id,
            command.channel,
            command.requested_by,
            was_suppressed,
        )
        return ContactReenabled(
            tenant_id=command.tenant_id,
            request_id=command.request_id,
            requested_by=command.requested_by,
            channel=command.channel,
            address=command.address,
            was_suppressed=was_suppressed,
        )

    async def _announce(self, s: Suppression) -> None:
        await self._events.publish(
            ContactSuppressed(
                event_id=event_id_for(s.recipient_id, f"contact_suppressed|{s.reason}"),
                tenant_id=s.tenant_id,
                contract_id=s.contract_id,
                channel=s.channel,
                address=s.address,
                reason=s.reason,
                recipient_id=s.recipient_id,
            ),
            key=s.tenant_id.encode(),
        )
        await store.mark_suppression_announced(self._pool(), s)
