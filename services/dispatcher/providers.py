"""Providers: what hands one rendered message to the outside world, whatever its channel.

Every provider answers `send(message)` with an `Attempt` (policy.py says what it means), so the
hand-over never asks which channel a message is on: it asks `Providers`, the channel -> provider
map built from the settings. A second provider for a channel is one new module with the same
two methods and one entry in `_SMS` (or a new channel's entry in `from_settings`).
"""

from collections.abc import Callable, Mapping
from typing import Protocol

from prometheus_client import Histogram

from shared.events import Channel, MessageRendered

from .policy import Attempt
from .settings import Settings, SmsProviderName
from .sms_gateway import HttpSmsGateway
from .smtp import SmtpRelay
from .twilio_sms import TwilioSms


class Provider(Protocol):
    async def send(self, message: MessageRendered) -> Attempt:
        """The provider's answer, a refusal or a failed connection included. What it raises
        instead, the hand-over takes as an unknown outcome (the provider may have the message)."""
        ...

    async def close(self) -> None: ...


_SMS: dict[SmsProviderName, Callable[[Settings], Provider]] = {
    "http": HttpSmsGateway.from_settings,
    "twilio": TwilioSms.from_settings,
}


class Providers:
    """A provider per channel, itself a provider: sends each message through its channel's,
    timing the call per channel."""

    def __init__(self, by_channel: Mapping[Channel, Provider], seconds: Histogram) -> None:
        self._by_channel = dict(by_channel)
        # Each channel's child of the histogram, looked up once: `labels()` per message cost
        # about 3 µs (bench/README.md, "Dispatcher hand-over").
        self._seconds = {channel: seconds.labels(channel) for channel in self._by_channel}

    @classmethod
    def from_settings(cls, settings: Settings, seconds: Histogram) -> "Providers":
        """The SMTP relay for email, and the SMS provider `settings.sms_provider` names."""
        return cls(
            {
                "email": SmtpRelay.from_settings(settings),
                "sms": _SMS[settings.sms_provider](settings),
            },
            seconds,
        )

    async def send(self, message: MessageRendered) -> Attempt:
        with self._seconds[message.channel].time():
            return await self._by_channel[message.channel].send(message)

    async def close(self) -> None:
        for provider in self._by_channel.values():
            await provider.close()
