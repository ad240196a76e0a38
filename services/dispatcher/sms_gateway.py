"""SMS over an HTTP gateway. A second provider is a second class with the same `send`."""

from typing import Protocol

import httpx

from .policy import Attempt, connection_failure, http_reply


class SmsGateway(Protocol):
    async def send(self, to: str, text: str, reference: str) -> Attempt: ...

    async def close(self) -> None: ...


class HttpSmsGateway:
    """The common JSON shape: POST {from, to, text, reference} with a bearer token.

    `reference` is our recipient id: a gateway that deduplicates on it makes a repeated request
    harmless.
    """

    def __init__(self, *, url: str, token: str, sender: str, timeout: float) -> None:
        self._url = url
        self._sender = sender
        self._client = httpx.AsyncClient(
            timeout=timeout, headers={"Authorization": f"Bearer {token}"}
        )

    async def send(self, to: str, text: str, reference: str) -> Attempt:
        try:
            response = await self._client.post(
                self._url,
                json={"from": self._sender, "to": to, "text": text, "reference": reference},
            )
        except httpx.HTTPError as error:
            return connection_failure(f"{type(error).__name__}: {error}")
        return http_reply(
            response.status_code, response.text[:500], response.headers.get("retry-after")
        )

    async def close(self) -> None:
        await self._client.aclose()
