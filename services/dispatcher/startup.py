"""The dispatcher's start: the relays' rates from the settings, its next life in the ledger, and
the parts that exist only from then on (heartbeat, hand-over, sweeper) with their loops."""

import logging
from dataclasses import dataclass
from datetime import timedelta

from shared.clock import Clock
from shared.service import Periodic, Runtime

from . import instance, ratelimit, tenants
from .handover import Ask, Handover, Limits
from .metrics import DispatcherMetrics
from .providers import Provider
from .refresh import Freshness
from .retry import RetryPolicy
from .settings import Settings
from .sweeper import Publish, Sweeper

log = logging.getLogger("dispatcher")


@dataclass(frozen=True)
class _Parts:
    handover: Handover
    heartbeat: instance.Heartbeat
    sweeper: Sweeper


class Startup:
    """`start` fits `service_app`'s on_startup (the pool is open, no message consumed yet);
    `sweeping` and `beating` are the background loops to start after it."""

    def __init__(
        self,
        runtime: Runtime,
        settings: Settings,
        provider: Provider,
        publish: Publish,
        ask: Ask,
        metrics: DispatcherMetrics,
        clock: Clock,
    ) -> None:
        self._runtime = runtime
        self._settings = settings
        self._provider = provider
        self._publish = publish
        self._ask = ask
        self._metrics = metrics
        self._clock = clock
        self._parts: _Parts | None = None
        self.sweeping = Periodic(
            "dispatcher-sweeper", self._sweep, settings.sweep_interval_seconds, log
        )
        self.beating = Periodic("dispatcher-heartbeat", self._beat, settings.heartbeat_seconds, log)

    async def start(self) -> None:
        settings, pool = self._settings, self._runtime.pool
        # Set from the environment at start; changed at run time in dispatcher.rate_limits.
        await ratelimit.set_limits(
            pool,
            [
                (ratelimit.relay_key(channel), rate)
                for channel, rate in (
                    ("email", settings.smtp_per_second),
                    ("sms", settings.sms_per_second),
                )
                if rate is not None
            ],
        )
        me = await instance.register(pool, settings.instance_id)
        log.info("dispatcher %s, life %d", me.instance_id, me.life)
        heartbeat = instance.Heartbeat(pool, me, timedelta(seconds=settings.takeover_seconds))
        handover = Handover(
            pool,
            self._provider,
            tenants.Directory(pool),
            RetryPolicy(
                delays=settings.retry_delays_seconds,
                throttle_backoff=settings.throttle_backoff_seconds,
            ),
            Limits.from_settings(settings),
            me,
            self._clock,
            Freshness(
                after=timedelta(seconds=settings.refresh_after_seconds),
                ask_again=timedelta(seconds=settings.refresh_ask_again_seconds),
                give_up=timedelta(seconds=settings.refresh_give_up_seconds),
            ),
            self._ask,
        )
        sweeper = Sweeper(
            pool,
            handover,
            heartbeat,
            self._publish,
            self._metrics.sweeps,
            repair_after=timedelta(seconds=settings.repair_after_seconds),
            batch=settings.sweep_batch,
        )
        self._parts = _Parts(handover, heartbeat, sweeper)

    @property
    def handover(self) -> Handover:
        return self._started().handover

    def _started(self) -> _Parts:
        if self._parts is None:
            raise RuntimeError("dispatcher: used before start-up")
        return self._parts

    async def _sweep(self) -> bool:
        return await self._started().sweeper.once()

    async def _beat(self) -> None:
        await self._started().heartbeat.beat()
