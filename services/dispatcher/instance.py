"""This dispatcher's place in the ledger: whose claims are its own, and whether it is alive.

A claim is not timed: it belongs to an instance and to one life of it. At start an instance
takes its next life, and the claims of the earlier ones, left by a crash, are settled at once.
While it runs it beats every few seconds; the other instances settle the claims of one that
stayed silent for `takeover` seconds. A live instance whose sends queue behind slow ones keeps
its claims however long that takes.
"""

import logging
import time
from datetime import timedelta

import asyncpg

from shared.isolation import in_a_few_words, is_transient

from .ledger import Claimant

log = logging.getLogger("dispatcher")


async def register(pool: asyncpg.Pool, instance_id: str) -> Claimant:
    """Start the next life of `instance_id`."""
    life = await pool.fetchval(
        """INSERT INTO dispatcher.instances AS i (instance_id, life, heartbeat_at)
           VALUES ($1, 1, now())
           ON CONFLICT (instance_id) DO UPDATE SET life = i.life + 1, heartbeat_at = now()
           RETURNING life""",
        instance_id,
    )
    return Claimant(instance_id, life)


class Heartbeat:
    """Proves this instance alive (`beat`, run every few seconds by a `Periodic`), and tells
    when it may judge others dead."""

    def __init__(self, pool: asyncpg.Pool, me: Claimant, takeover: timedelta) -> None:
        self._pool = pool
        self._me = me
        self._takeover = takeover
        # Since when every beat has reached the database (monotonic), None after a failure.
        self._since: float | None = time.monotonic()

    async def beat(self) -> None:
        try:
            await self._pool.execute(
                "UPDATE dispatcher.instances SET heartbeat_at = now() "
                "WHERE instance_id = $1 AND life = $2",
                self._me.instance_id,
                self._me.life,
            )
        except Exception as error:
            # A missed beat, whatever the cause: the others may have missed theirs too.
            self._since = None
            if not is_transient(error):
                raise
            log.warning("heartbeat failed: %s", in_a_few_words(error))
            return
        if self._since is None:
            self._since = time.monotonic()

    def takeover(self) -> timedelta | None:
        """How long another instance must have been silent for its claims to be settled; None
        until this one has itself beaten without a miss for that long. After a database
        outage every heartbeat looks old: nobody takes over before the others could beat."""
        steady = self._since is not None and (
            time.monotonic() - self._since >= self._takeover.total_seconds()
        )
        return self._takeover if steady else None
