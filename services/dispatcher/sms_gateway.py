"""SMS over an HTTP gateway speaking the common JSON shape."""

import httpx

from shared.events import MessageRendered

from .policy import Attempt, connection_failure, http_reply
from .settings import Settings


class HttpSmsGateway:
    """POST {from, to, text, reference} with a bearer token.

    `reference` is our recipient id: a gateway that deduplicates on it makes a repeated request
    harmless, which is why a request that timed out is tried again here (a temporary failure)
    where a provider without such a reference reports an unknown outcome.
    """

    def __init__(self, *, url: str, token: str, sender: str, timeout: float) -> None:
        self._url = url
        self._sender = sender
        self._client = httpx.AsyncClient(
            timeout=timeout, headers={"Authorization": f"Bearer {token}"}
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> "HttpSmsGateway":
        return cls(
            url=settings.sms_gateway_url,
            token=settings.sms_gateway_token.get_secret_value(),
            sender=settings.sms_sender,
            timeout=settings.sms_timeout_seconds,
        )

    async def send(self, message: MessageRendered) -> Attempt:
        try:
            response = await self._client.post(
                self._url,
                json={
                    "from": self._sender,
                    "to": message.address,
                    "text": message.body,
                    "reference": str(message.recipient_id),
                },
            )
        except httpx.HTTPError as error:
            return connection_failure(f"{type(error).__name__}: {error}")
        return http_reply(
            response.status_code, response.text[:500], response.headers.get("retry-after")
        )

    async def close(self) -> None:
        await self._client.aclose()
