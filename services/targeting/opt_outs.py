"""Announcing opt-outs at least once: recorded, then published, then marked announced.

An unsubscribe click is an HTTP request, not a Kafka record that would be redelivered: if the
broker fails after the opt-out is recorded, nothing would publish `contact.opted_out` again.
`announce_late` does, for the opt-outs left unannounced, with the same event id as the first
attempt, so the platform can drop a copy. One instance at a time runs it (`Exclusive`), so
several instances do not publish each late opt-out several times.
"""

import logging
from collections.abc import Callable

import asyncpg

from shared.events import Channel, ContactOptedOut
from shared.exclusive import Exclusive
from shared.ids import opt_out_event_id_for
from shared.publishing import Publisher
from shared.service import Periodic

from . import store

log = logging.getLogger("targeting")


class OptOuts:
    """`loop` publishes again, every `tick` seconds, up to `per_tick` opt-outs recorded more
    than `late_after` seconds ago and still not announced."""

    def __init__(
        self,
        pool: Callable[[], asyncpg.Pool],
        events: Publisher,
        *,
        late_after: float,
        per_tick: int,
        tick: float,
    ) -> None:
        self._pool = pool
        self._events = events
        self._late_after = late_after
        self._per_tick = per_tick
        name = "targeting-late-opt-outs"
        self.loop = Periodic(name, Exclusive(pool, name).skipping(self.announce_late), tick, log)

    async def record(
        self, tenant_id: str, channel: Channel, address: str, contract_id: str
    ) -> None:
        """Record the opt-out and announce it; a second click changes nothing."""
        opt_out = await store.record_opt_out(self._pool(), tenant_id, channel, address, contract_id)
        if opt_out is None:
            return
        try:
            await self._announce(opt_out)
        except Exception:
            # The opt-out holds: the recipient is told so, and announce_late publishes it.
            log.exception("announcing an opt-out failed; it will be announced again")

    async def announce_late(self) -> None:
        """Publish the opt-outs recorded a while ago whose announcement was lost."""
        for opt_out in await store.unannounced_opt_outs(
            self._pool(), self._late_after, self._per_tick
        ):
            await self._announce(opt_out)

    async def _announce(self, opt_out: store.OptOut) -> None:
        await self._events.publish(
            ContactOptedOut(
                event_id=opt_out_event_id_for(opt_out.tenant_id, opt_out.channel, opt_out.address),
                tenant_id=opt_out.tenant_id,
                contract_id=opt_out.contract_id,
                channel=opt_out.channel,
                address=opt_out.address,
            ),
            key=opt_out.tenant_id.encode(),
        )
        await store.mark_opt_out_announced(self._pool(), opt_out)
