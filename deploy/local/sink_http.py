"""The sinks' JSON routes over HTTP: a small ASGI app served by uvicorn.

A sink answers with a `Handler` (Request -> Response); `serving` runs it on uvicorn inside the
sink's own event loop, next to its SMTP server, until the sink stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import uvicorn

from deploy.local.rules import Rules

MAX_BODY = 10 * 1024 * 1024
# Idle keep-alive connections are dropped after this. It must outlast the clients' own pool
# expiry (httpx: 5 s), so that a client never sends on a connection the sink is closing: the
# dispatcher would record that SMS as an ambiguous connection failure.
IDLE_TIMEOUT = 75

# The ASGI interface, as much of it as these routes use.
Scope = Mapping[str, Any]
Event = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Event]]
Send = Callable[[Event], Awaitable[None]]


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: Mapping[str, str]  # keys lower-cased
    body: bytes
    query: Mapping[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        """Parse the body as JSON; raises ValueError on bad input."""
        return json.loads(self.body.decode("utf-8"))


@dataclass(frozen=True)
class Response:
    status: int
    body: Any = None  # serialised as JSON unless None
    headers: Mapping[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Awaitable[Response]]


def json_error(status: int, message: str) -> Response:
    return Response(status, {"error": message})


class _TooLarge(Exception):
    pass


async def _read_body(receive: Receive) -> bytes:
    body = bytearray()
    more = True
    while more:
        event = await receive()
        if event["type"] == "http.disconnect":
            raise ConnectionError("client went away")
        body += event.get("body", b"")
        more = event.get("more_body", False)
        if len(body) > MAX_BODY:
            raise _TooLarge
    return bytes(body)


def _request(scope: Scope, body: bytes) -> Request:
    query = scope["query_string"].decode("latin-1")
    return Request(
        method=scope["method"].upper(),
        # The path as sent, not percent-decoded: routes and error messages name what came in.
        path=scope["raw_path"].decode("latin-1"),
        headers={
            name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]
        },
        body=body,
        query={key: values[-1] for key, values in parse_qs(query).items()},
    )


def asgi_app(handler: Handler) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """`handler` as an ASGI application (HTTP only)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        try:
            body = await _read_body(receive)
        except ConnectionError:
            return
        except _TooLarge:
            response = json_error(413, "bad or too large Content-Length")
        else:
            try:
                response = await handler(_request(scope, body))
            except Exception as exc:  # a sink bug must not pass unnoticed by the client
                response = json_error(500, f"sink error: {exc!r}")
        await _send(send, response)

    return app


async def _send(send: Send, response: Response) -> None:
    payload = b"" if response.body is None else json.dumps(response.body).encode("utf-8")
    headers = [(b"content-length", str(len(payload)).encode())]
    if response.body is not None:
        headers.append((b"content-type", b"application/json"))
    headers.extend(
        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items()
    )
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The sink's loop handles SIGTERM and SIGINT and stops every server it runs, SMTP too.
        yield


@contextlib.asynccontextmanager
async def serving(handler: Handler, host: str, port: int) -> AsyncIterator[int]:
    """Serve `handler` on host:port while the block runs, which gets the bound port (port 0:
    any free one); OSError when it cannot start."""
    config = uvicorn.Config(
        asgi_app(handler),
        host=host,
        port=port,
        lifespan="off",
        log_config=None,  # leave the sink's logging as the sink set it up
        log_level="warning",
        access_log=False,
        server_header=False,
        backlog=1024,
        timeout_keep_alive=IDLE_TIMEOUT,
    )
    server = _Server(config)
    failed = OSError(f"cannot serve HTTP on {host}:{port}")

    async def serve() -> None:
        try:
            await server.serve()
        except SystemExit:
            # uvicorn exits when it cannot start (it logged why): fail as a failed bind does,
            # rather than end the event loop under the sink's feet.
            raise failed from None

    task = asyncio.create_task(serve())
    while not server.started:
        if task.done():
            await task  # raises why it could not start
            raise failed
        await asyncio.sleep(0.01)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await task


async def control_routes(
    request: Request,
    *,
    messages: list[dict[str, Any]],
    rules: Rules,
    on_clear: Callable[[], None] | None = None,
) -> Response | None:
    """The `/_sink/*` routes shared by both sinks; None when the path is not one of them."""
    route = (request.method, request.path)
    # A suite's worth of messages is large, and other tests send at the same time: a test asks
    # for its own domain's messages and count only.
    domain = request.query.get("rcpt_domain", "").lower()

    def selected() -> list[dict[str, Any]]:
        if not domain:
            return messages
        suffix = "@" + domain
        return [m for m in messages if any(r.lower().endswith(suffix) for r in m["rcpt_tos"])]

    # A test's rules are its own: it replaces or clears them without touching another's.
    owner = request.query.get("owner", "")
    if route == ("GET", "/_sink/health"):
        return Response(200, {"status": "ok"})
    if route == ("GET", "/_sink/messages"):
        return Response(200, selected())
    if route == ("GET", "/_sink/count"):
        return Response(200, {"count": len(selected())})
    if route == ("DELETE", "/_sink/messages"):
        messages.clear()
        if on_clear is not None:
            on_clear()
        return Response(200, {"count": 0})
    if route == ("GET", "/_sink/rules"):
        return Response(200, rules.snapshot())
    if route == ("DELETE", "/_sink/rules"):
        if "owner" in request.query:
            rules.replace([], owner)
        else:
            rules.clear()
        return Response(200, rules.snapshot())
    if route == ("PUT", "/_sink/rules"):
        try:
            payload = request.json()
        except ValueError:
            return json_error(400, "body is not valid JSON")
        error = rules.replace(payload, owner)
        if error:
            return json_error(400, error)
        return Response(200, rules.snapshot())
    if request.path.startswith("/_sink/"):
        return json_error(404, f"no route {request.method} {request.path}")
    return None
