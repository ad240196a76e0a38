"""The background loop every service uses: it survives a failing pass and stops when told."""

import asyncio
import logging

from shared.service import Periodic


async def test_a_failing_step_is_logged_and_the_loop_goes_on() -> None:
    calls = 0

    async def step() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("the database is away")

    loop = Periodic("test-loop", step, 0.01, logging.getLogger("test"))
    await loop.start()
    for _ in range(200):
        if calls >= 3:
            break
        await asyncio.sleep(0.01)
    await loop.stop()
    assert calls >= 3
    stopped_at = calls
    await asyncio.sleep(0.05)
    assert calls == stopped_at


async def test_a_busy_step_runs_again_without_waiting() -> None:
    passes = 0

    async def step() -> bool:
        nonlocal passes
        passes += 1
        return passes < 5

    loop = Periodic("busy-loop", step, 3600, logging.getLogger("test"))
    await loop.start()
    for _ in range(100):
        if passes >= 5:
            break
        await asyncio.sleep(0.01)
    await loop.stop()
    assert passes == 5


async def test_stop_before_start_is_harmless() -> None:
    async def step() -> None:
        return None

    await Periodic("idle", step, 1, logging.getLogger("test")).stop()
