"""Fixtures for tests that need the real stack: `make test` starts it before pytest runs.

Unit tests need none of this and run alone with `pytest tests/unit`.
"""

import os
import socket
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from shared.db import create_pool
from shared.local_mode import LOCAL_MODE_VARIABLE
from tests.stack import DATABASE_URL, SUITE_ENV, EventLog, SmsSink, SmtpSink, restart_service

# The suite runs on the development secrets, as the local stack does: every service factory a
# test calls (and every process it starts) is in local mode, unless the test says otherwise.
os.environ.setdefault(LOCAL_MODE_VARIABLE, "1")

_PORTS = {"kafka": 19092, "postgres": 15432, "smtp sink": 10025, "sms sink": 10080}


def _answers(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="session")
def stack() -> Iterator[None]:
    """The running stack, some services restarted with the suite's settings for the session."""
    down = [name for name, port in _PORTS.items() if not _answers(port)]
    if down:
        pytest.fail(f"not running: {', '.join(down)}; run the suite with `make test`")
    for name in SUITE_ENV:
        restart_service(name)
    yield
    for name in SUITE_ENV:
        restart_service(name, as_in_the_suite=False)


@pytest.fixture(scope="session")
async def db(stack: None) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(DATABASE_URL, min_size=1, max_size=4)
    assert pool is not None
    yield pool
    await pool.close()


@pytest.fixture
async def smtp_sink(stack: None) -> AsyncIterator[SmtpSink]:
    sink = SmtpSink()
    yield sink
    await sink.clear_rules()
    await sink.close()


@pytest.fixture
async def sms_sink(stack: None) -> AsyncIterator[SmsSink]:
    sink = SmsSink()
    yield sink
    await sink.clear_rules()
    await sink.close()


@pytest.fixture
async def events(stack: None) -> AsyncIterator[EventLog]:
    """Everything published on broadcast.events from the start of the test."""
    log = await EventLog("broadcast.events").open()
    yield log
    await log.close()


@pytest.fixture
async def service_pool(stack: None) -> AsyncIterator[asyncpg.Pool]:
    """A pool opened as the services open theirs (JSON columns decoded to Python values)."""
    pool = await create_pool(DATABASE_URL, size=2)
    yield pool
    await pool.close()
