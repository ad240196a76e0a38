"""The HTTP plumbing every webhook route shares: a plain ASGI app around one provider's handler.

A route reads the body (refused past a size limit before it is all read), lets its provider's
handler verify it and turn it into findings, has the intake publish them, and only then answers
2xx: a provider that gets no 2xx sends again, so an acknowledged report is never lost, and the
consumers apply a report once. The answers a provider can act on:

- 401 / 403: an unsigned or forged request, or one from a sender we do not serve (not retried
  by a well-behaved provider, and nothing is learnt from it);
- 400 naming the field: a body that is not what the provider documents;
- 404: the provider is not configured here;
- 413: too large; 405: not a POST;
- 503: the report could not be published (the provider retries).

No traceback ever reaches the caller, and no payload reaches the log (it carries addresses).
"""

import json
import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from shared.asgi import Send, respond
from shared.events import DeliveryReport
from shared.isolation import in_a_few_words

from ..intake import Finding

# ASGI's own types, as servers and httpx's ASGITransport declare them.
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
# The intake's `take`: publishes the findings about messages of ours, awaiting the broker.
Take = Callable[[Sequence[Finding]], Awaitable[list[DeliveryReport]]]

log = logging.getLogger("dispatcher")


class Rejected(Exception):
    """A request the route refuses, with the HTTP status and a machine-readable reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def unauthorized(reason: str) -> Rejected:
    """No signature, or one that does not verify."""
    return Rejected(401, reason)


def forbidden(reason: str) -> Rejected:
    """Signed, perhaps, but by or for someone we do not serve, or replayed."""
    return Rejected(403, reason)


def require_recent(field: str, seconds_from_now: float, max_age: float) -> None:
    """A 403 naming `field` when a signed time is more than `max_age` seconds from now, either
    way: a captured post replayed later, or a clock far ahead. Every provider's check."""
    if abs(seconds_from_now) > max_age:
        raise forbidden(f"{field}: not recent")


def malformed(field: str) -> Rejected:
    """The body lacks `field`, or has it in the wrong shape."""
    return Rejected(400, f"malformed: {field}")


@dataclass(frozen=True)
class Request:
    """What a provider's handler sees of a request."""

    body: bytes
    # Header names lower-cased; a repeated header keeps its last value.
    headers: Mapping[str, str]
    path: str


# A provider's handler: verifies the request, takes its findings, answers a JSON object.
Handler = Callable[[Request, Take], Awaitable[Mapping[str, Any]]]


def json_object(data: bytes, where: str = "body") -> dict[str, Any]:
    """`data` as a JSON object, or a 400 naming `where`."""
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        # RecursionError: nesting deeper than the parser goes, a body made to break it.
        raise malformed(f"{where} (not JSON)") from None
    if not isinstance(value, dict):
        raise malformed(f"{where} (not a JSON object)")
    return value


Model = TypeVar("Model", bound=BaseModel)


def parsed(model: type[Model], data: Any, where: str) -> Model:
    """`data` read as `model`, or a 400 naming the first field at fault (`where.field`)."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        path = (where, *(str(part) for part in error.errors()[0]["loc"]))
        raise malformed(".".join(p for p in path if p)) from None


class Webhook:
    """One route: POST only, `limit` bytes at most, `handler` None when not configured (404)."""

    def __init__(self, name: str, handler: Handler | None, take: Take, limit: int) -> None:
        self._name = name
        self._handler = handler
        self._take = take
        self._limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._handler is None:
            await _answer(send, 404, {"error": "not configured"})
            return
        if scope.get("method") != "POST":
            await _answer(send, 405, {"error": "POST only"})
            return
        body = await _body(receive, self._limit)
        if body is None:
            await _answer(send, 413, {"error": f"body over {self._limit} bytes"})
            return
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in scope.get("headers", [])
        }
        request = Request(body, headers, scope.get("path", ""))
        try:
            answer = await self._handler(request, self._take)
        except Rejected as refused:
            log.info("webhook %s: refused (%s)", self._name, refused.reason)
            await _answer(send, refused.status, {"error": refused.reason})
            return
        except Exception as error:
            # The report may be good and the fault ours (the broker, the database, the
            # provider's certificate host): 503 makes the provider send it again.
            log.warning(
                "webhook %s: not taken, the provider will retry: %s",
                self._name,
                in_a_few_words(error),
            )
            await _answer(send, 503, {"error": "not taken; try again"})
            return
        await _answer(send, 200, answer)


async def _body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None as soon as it exceeds `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message.get("type") == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _answer(send: Send, status: int, body: Mapping[str, Any]) -> None:
    await respond(send, status, b"application/json", json.dumps(body).encode())
