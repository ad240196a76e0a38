"""One instance at a time runs an exclusive job; the others wait their turn or skip a pass."""

import asyncio
from typing import cast

import asyncpg
import pytest

from shared.exclusive import Exclusive, PoolTooSmall
from tests.unit.lock_fakes import LockPool, Locks


def _instances(locks: Locks, name: str = "job", size: int = 5) -> tuple[Exclusive, Exclusive]:
    def one() -> Exclusive:
        pool = cast(asyncpg.Pool, LockPool(locks, size))
        return Exclusive(lambda: pool, name)

    return one(), one()


async def test_a_pass_is_skipped_while_another_instance_runs_it() -> None:
    first, second = _instances(Locks())
    running, release = asyncio.Event(), asyncio.Event()
    ran: list[str] = []

    async def slow() -> bool:
        running.set()
        await release.wait()
        ran.append("first")
        return True

    async def quick() -> bool:
        ran.append("second")
        return True

    step = first.skipping(slow)

    async def run_first() -> bool | None:
        return await step()

    holder = asyncio.create_task(run_first())
    await running.wait()
    assert await second.skipping(quick)() is None  # skipped: its next pass does the work
    release.set()
    assert await holder is True  # "more": the Periodic runs again at once
    assert await second.skipping(quick)() is True  # the lock went with the first's pass
    assert ran == ["first", "second"]


async def test_held_waits_its_turn_and_skips_nothing() -> None:
    first, second = _instances(Locks())
    order: list[str] = []
    inside = asyncio.Event()

    async def hold(exclusive: Exclusive, name: str, signal: asyncio.Event | None) -> None:
        async with exclusive.held():
            order.append(f"{name} in")
            if signal:
                signal.set()
            await asyncio.sleep(0.01)
            order.append(f"{name} out")

    one = asyncio.create_task(hold(first, "a", inside))
    await inside.wait()
    await asyncio.gather(hold(second, "b", None), hold(first, "c", None), one)
    # Never two at once, in this process or across instances.
    assert [o.split()[1] for o in order] == ["in", "out"] * 3


async def test_other_jobs_do_not_wait_for_this_one() -> None:
    locks = Locks()
    (mine, _), (other, _) = _instances(locks, "a"), _instances(locks, "b")
    async with mine.held(), other.held():
        pass


async def test_a_pool_of_one_is_refused_with_the_setting_named() -> None:
    exclusive, _ = _instances(Locks(), size=1)
    with pytest.raises(PoolTooSmall, match="DATABASE_POOL_SIZE"):
        async with exclusive.held():
            pass
