"""When a dispatcher may take over another's claims: only after beating without a miss for as
long as the takeover delay, so that a database outage makes nobody look dead."""

import asyncio
from datetime import timedelta
from typing import Any

import asyncpg

from services.dispatcher.instance import Heartbeat
from services.dispatcher.ledger import Claimant

DELAY = timedelta(seconds=0.05)


class Database:
    """Answers the heartbeat's UPDATE, or fails as a database that went away does."""

    def __init__(self) -> None:
        self.down = False

    async def execute(self, *args: Any) -> str:
        if self.down:
            raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")
        return "UPDATE 1"


async def test_no_takeover_until_steady_for_the_whole_delay() -> None:
    database = Database()
    heartbeat = Heartbeat(database, Claimant("d-1", 1), DELAY)  # type: ignore[arg-type]
    assert heartbeat.takeover() is None  # just started
    await asyncio.sleep(0.06)
    assert heartbeat.takeover() == DELAY

    database.down = True
    await heartbeat.beat()
    assert heartbeat.takeover() is None  # a missed beat: the others' may have missed too
    database.down = False
    await heartbeat.beat()
    assert heartbeat.takeover() is None  # back, but not for the whole delay yet
    await asyncio.sleep(0.06)
    await heartbeat.beat()
    assert heartbeat.takeover() == DELAY
