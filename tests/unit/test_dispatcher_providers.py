"""One provider interface: the hand-over sends every message the same way, and the settings
choose which provider carries each channel."""

import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr, ValidationError

from services.dispatcher.metrics import DispatcherMetrics
from services.dispatcher.policy import Attempt
from services.dispatcher.providers import Providers
from services.dispatcher.settings import Settings
from services.dispatcher.sms_gateway import HttpSmsGateway
from services.dispatcher.smtp import SmtpRelay
from services.dispatcher.twilio_sms import TwilioSms
from shared.events import Channel, MessageRendered
from tests.unit.rendered import rendered


class Recording:
    def __init__(self) -> None:
        self.sent: list[MessageRendered] = []
        self.closed = False

    async def send(self, message: MessageRendered) -> Attempt:
        self.sent.append(message)
        return Attempt("accepted", 250, "ok")

    async def close(self) -> None:
        self.closed = True


def message(channel: Channel) -> MessageRendered:
    return rendered(channel, "a@example.org" if channel == "email" else "+15145550123")


def seconds() -> DispatcherMetrics:
    return DispatcherMetrics(CollectorRegistry())


async def test_each_message_goes_to_its_channels_provider_and_is_timed() -> None:
    email, sms = Recording(), Recording()
    metrics = seconds()
    providers = Providers({"email": email, "sms": sms}, metrics.provider_seconds)
    first, second = message("email"), message("sms")
    assert (await providers.send(first)).verdict == "accepted"
    await providers.send(second)
    assert (email.sent, sms.sent) == ([first], [second])
    samples = {
        s.labels["channel"]: s.value
        for family in metrics.provider_seconds.collect()
        for s in family.samples
        if s.name.endswith("_count")
    }
    assert samples == {"email": 1.0, "sms": 1.0}
    await providers.close()
    assert email.closed and sms.closed


@pytest.mark.parametrize(
    ("settings", "sms"),
    [
        (Settings(), HttpSmsGateway),
        (
            Settings(
                sms_provider="twilio",
                twilio_account_sid="AC1",
                twilio_auth_token=SecretStr("token"),
            ),
            TwilioSms,
        ),
    ],
)
async def test_the_settings_choose_the_sms_provider(settings: Settings, sms: type) -> None:
    providers = Providers.from_settings(settings, seconds().provider_seconds)
    chosen = providers._by_channel  # what a message of each channel is handed to
    assert (type(chosen["email"]), type(chosen["sms"])) == (SmtpRelay, sms)
    await providers.close()


def test_twilio_is_refused_without_its_credentials() -> None:
    with pytest.raises(ValidationError, match="twilio_account_sid"):
        Settings(sms_provider="twilio")
