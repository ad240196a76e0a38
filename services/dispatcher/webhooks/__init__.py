"""Provider webhooks: what sending providers and the SMS gateway learn after the hand-over.

Routes on the dispatcher's HTTP port (docs/ARCHITECTURE.md, "Provider webhooks"):
  POST /webhooks/ses            Amazon SES through SNS (ses.py)
  POST /webhooks/mailgun        Mailgun (mailgun.py)
  POST /webhooks/sms/receipts   our HTTP SMS gateway's delivery receipts (gateway.py)
  POST /webhooks/sms/replies    replies to our SMS, through that gateway (gateway.py)
  POST /webhooks/twilio/status  Twilio's status callbacks (twilio.py)
  POST /webhooks/twilio/inbound replies to our SMS, through Twilio (twilio.py)
A route whose provider is not configured answers 404. Each verifies its sender, then has the
intake publish its findings before answering 2xx (http.py).
"""

from collections.abc import Callable

import asyncpg
import httpx

from shared.clock import Clock

from ..settings import Settings
from .gateway import GatewayReceipts, GatewayReplies, latest_sms_to
from .http import Take, Webhook
from .mailgun import MailgunWebhook
from .ses import SesWebhook, SigningCertificates
from .twilio import TwilioInbound, TwilioStatus, message_of_sid

# SNS's certificate host and subscription URLs answer fast; a stuck one must not hold a request.
_HTTP_TIMEOUT_SECONDS = 10.0


class Webhooks:
    """The routes, built from the settings; `http` (injectable) fetches SNS's certificates and
    confirms subscriptions."""

    def __init__(
        self,
        settings: Settings,
        take: Take,
        pool: Callable[[], asyncpg.Pool],
        clock: Clock,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._http = http or httpx.AsyncClient(timeout=_HTTP_TIMEOUT_SECONDS)
        limit = settings.webhook_max_bytes
        ses = (
            SesWebhook(
                frozenset(settings.ses_topic_arns),
                settings.ses_max_age_seconds,
                SigningCertificates(self._get),
                self._confirm,
                clock,
            )
            if settings.ses_topic_arns
            else None
        )
        key = settings.mailgun_signing_key
        mailgun = (
            MailgunWebhook(key.get_secret_value().encode(), settings.mailgun_max_age_seconds, clock)
            if key is not None and key.get_secret_value()
            else None
        )
        token = settings.sms_gateway_token.get_secret_value().encode()
        http_gateway = settings.sms_provider == "http" and bool(token)

        twilio_token = settings.twilio_auth_token.get_secret_value().encode()
        base = settings.public_url.rstrip("/")
        twilio = settings.sms_provider == "twilio" and bool(base)
        twilio_status = (
            TwilioStatus(
                twilio_token,
                f"{base}/webhooks/twilio/status",
                lambda sid: message_of_sid(pool(), sid),
                clock,
            )
            if twilio
            else None
        )
        twilio_inbound = (
            TwilioInbound(
                twilio_token,
                f"{base}/webhooks/twilio/inbound",
                lambda number: latest_sms_to(pool(), number),
                clock,
            )
            if twilio
            else None
        )
        self.routes: list[tuple[str, Webhook]] = [
            ("/webhooks/ses", Webhook("ses", ses, take, limit)),
            ("/webhooks/mailgun", Webhook("mailgun", mailgun, take, limit)),
            (
                "/webhooks/sms/receipts",
                Webhook(
                    "sms receipts",
                    GatewayReceipts(token, clock) if http_gateway else None,
                    take,
                    limit,
                ),
            ),
            (
                "/webhooks/sms/replies",
                Webhook(
                    "sms replies",
                    GatewayReplies(token, clock, lambda n: latest_sms_to(pool(), n))
                    if http_gateway
                    else None,
                    take,
                    limit,
                ),
            ),
            ("/webhooks/twilio/status", Webhook("twilio status", twilio_status, take, limit)),
            ("/webhooks/twilio/inbound", Webhook("twilio inbound", twilio_inbound, take, limit)),
        ]

    async def _get(self, url: str) -> bytes:
        response = await self._http.get(url)
        response.raise_for_status()
        return response.content

    async def _confirm(self, url: str) -> None:
        (await self._http.get(url)).raise_for_status()

    async def close(self) -> None:
        await self._http.aclose()
