"""Assembling a service: one FastStream app with health and Prometheus routes over HTTP.

Started by `faststream run --factory services.<name>.app:create_app --host H --port P`. Nothing
connects at import time: the factory reads settings, the lifespan opens the pool and migrates
before the broker starts consuming, and closes the pool only after the consumers stopped.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import asyncpg
from faststream.asgi import AsgiFastStream, make_ping_asgi
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from prometheus_client import CollectorRegistry, make_asgi_app

from shared import redaction
from shared.admin import ensure_topics
from shared.db import create_pool, migrate
from shared.fastlane import FastLane
from shared.kafka import DeadLetters, Quarantine, dead_letter_publisher, make_broker
from shared.readiness import Readiness
from shared.settings import ServiceSettings


@dataclass
class Runtime:
    """What a service's handlers need at run time; the pool exists once the app has started."""

    service: str
    settings: ServiceSettings
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    # False: the service's code leaves no session state on its connections (`create_pool`).
    reset_sessions: bool = True
    broker: KafkaBroker = field(init=False)
    # Records no handler can parse, or that a handler fails on by themselves, counted.
    dead_letters: DeadLetters = field(init=False)
    # Dead-letters a record no handler can parse.
    quarantine: Quarantine = field(init=False)
    _pool: asyncpg.Pool | None = None

    def __post_init__(self) -> None:
        # First, before anything is built or connects: every service's factory comes here.
        self.settings.refuse_development_secrets()
        self.broker = make_broker(self.settings, service=self.service, registry=self.registry)
        self.dead_letters = DeadLetters(
            dead_letter_publisher(self.broker), self.service, self.registry
        )
        self.quarantine = self.dead_letters.quarantine

    def lane(self, topic: str, **declared: Any) -> FastLane:
        """A publisher for a hot loop's topic, declared on the broker like any other (`declared`
        are `broker.publisher`'s options: the AsyncAPI document still shows it)."""
        publisher = self.broker.publisher(topic, **declared)
        return FastLane(self.broker, topic, publisher, registry=self.registry, service=self.service)

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError(f"{self.service}: the database pool is used before start-up")
        return self._pool

    async def open_database(self, migrations: Path) -> None:
        self._pool = await create_pool(
            self.settings.database_url.get_secret_value(),
            size=self.settings.database_pool_size,
            reset_sessions=self.reset_sessions,
        )
        await migrate(self._pool, self.service, migrations)

    async def close_database(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


def service_app(
    runtime: Runtime,
    *,
    description: str,
    migrations: Path,
    on_startup: Sequence[Callable[[], Awaitable[None]]] = (),
    after_startup: Sequence[Callable[[], Awaitable[None]]] = (),
    on_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
    after_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
    routes: Sequence[tuple[str, Any]] = (),
) -> AsgiFastStream:
    """`routes` are extra (path, ASGI app) pairs served next to /health and /metrics."""
    logging.getLogger(runtime.service).setLevel(logging.INFO)
    redaction.install(runtime.service)

    security = runtime.settings.kafka_security()

    async def prepare() -> None:
        # On an authenticated cluster the topics are the operator's to create, with the ACLs
        # (deploy/kafka_acls.py): a service's principal may not create topics.
        if not security.authenticated:
            await ensure_topics(runtime.settings.kafka_bootstrap_servers, runtime.settings.topics())
        await runtime.open_database(migrations)

    return AsgiFastStream(
        runtime.broker,
        asgi_routes=[
            ("/health", make_ping_asgi(runtime.broker, timeout=5.0)),
            (
                "/ready",
                Readiness(
                    runtime.service,
                    runtime.settings.kafka_bootstrap_servers,
                    lambda: runtime.pool,
                    runtime.settings.stalled_after_seconds,
                    security,
                ),
            ),
            ("/metrics", make_asgi_app(registry=runtime.registry)),
            *routes,
        ],
        on_startup=[prepare, *on_startup],
        after_startup=list(after_startup),
        on_shutdown=list(on_shutdown),
        after_shutdown=[*after_shutdown, runtime.close_database],
        specification=AsyncAPI(
            title=f"broadcast-engine {runtime.service}",
            version=version("broadcast-engine"),
            description=description,
        ),
        asyncapi_path="/docs/asyncapi",
    )


class Periodic:
    """A background loop of a service: `step` runs every `interval` seconds until stopped.

    A failing step is logged and tried again after the interval, so one bad pass never ends the
    loop. A step that returns True had more work than one pass could take and runs again at once.
    `start` and `stop` fit `service_app`'s after_startup and on_shutdown hooks.
    """

    def __init__(
        self,
        name: str,
        step: Callable[[], Awaitable[bool | None]],
        interval: float,
        log: logging.Logger,
    ) -> None:
        self.name = name
        self._step = step
        self._interval = interval
        self._log = log
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._forever(), name=self.name)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _forever(self) -> None:
        while True:
            try:
                more = await self._step()
            except asyncio.CancelledError:
                raise
            except Exception:
                self._log.exception("%s failed; trying again", self.name)
                more = False
            if not more:
                await asyncio.sleep(self._interval)
