"""A run another instance was streaming is tried again every few seconds by every instance, so
it is taken over when its streamer dies, not only when that instance starts again."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any, cast
from uuid import UUID, uuid4

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from services.targeting import store
from services.targeting.metrics import TargetingMetrics
from services.targeting.publishers import Publishers
from services.targeting.streaming import RunStreamer


class _Pool:
    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[object]:
        yield object()


async def test_a_run_streamed_elsewhere_is_tried_again_each_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run = uuid4()
    tried: list[UUID] = []
    twice = asyncio.Event()

    async def streaming_runs(_pool: Any) -> list[UUID]:
        return [run]

    async def try_lock_run(_connection: Any, run_id: UUID) -> bool:
        tried.append(run_id)
        if len(tried) == 2:
            twice.set()
        return False  # another instance streams it, alive

    monkeypatch.setattr(store, "streaming_runs", streaming_runs)
    monkeypatch.setattr(store, "try_lock_run", try_lock_run)
    pool = cast(asyncpg.Pool, _Pool())
    streamer = RunStreamer(
        lambda: pool,
        cast(Publishers, SimpleNamespace(events=None, runs=None, recipients=None, deliveries=None)),
        lambda: None,  # type: ignore[arg-type,return-value]
        TargetingMetrics(CollectorRegistry()),
        page_size=10,
        retry_after=0.01,
        orphans_every=0.01,
    )
    await streamer.adopting.start()
    await asyncio.wait_for(twice.wait(), 5)
    await streamer.adopting.stop()
    await streamer.stop()
    assert tried[:2] == [run, run]
