"""Minimal asyncio HTTP/1.1 server for the sinks' JSON routes.

Hand-rolled because the sinks must stay light (no web framework is a project dependency) and
only need a handful of JSON routes; keep-alive matters because clients under test hold pooled
connections and hammer the sinks.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

from deploy.local.rules import Rules

MAX_BODY = 10 * 1024 * 1024
MAX_HEADER_LINES = 100
# Idle keep-alive connections are dropped after this, so a leaking client cannot pin sockets.
IDLE_TIMEOUT = 75.0


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


async def serve(handler: Handler, host: str, port: int) -> asyncio.Server:
    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _connection_loop(handler, reader, writer)
        # ValueError: a line longer than the stream limit; such a client just gets dropped.
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError, ValueError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(on_connection, host, port, limit=64 * 1024)


async def _connection_loop(
    handler: Handler, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    while True:
        request_line = await asyncio.wait_for(reader.readline(), IDLE_TIMEOUT)
        if not request_line:
            return
        parts = request_line.decode("latin-1").split()
        if len(parts) != 3:
            await _write(writer, json_error(400, "malformed request line"), False)
            return
        method, target, version = parts
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADER_LINES):
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        else:
            await _write(writer, json_error(431, "too many headers"), False)
            return

        if "chunked" in headers.get("transfer-encoding", "").lower():
            await _write(writer, json_error(411, "chunked bodies are not supported"), False)
            return
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            await _write(writer, json_error(413, "bad or too large Content-Length"), False)
            return
        body = await reader.readexactly(length) if length else b""

        connection = headers.get("connection", "").lower()
        keep_alive = connection != "close" and (version == "HTTP/1.1" or connection == "keep-alive")
        path, _, query = target.partition("?")
        params = {k: v[-1] for k, v in parse_qs(query).items()}
        try:
            response = await handler(Request(method.upper(), path, headers, body, params))
        except Exception as exc:  # a sink bug must not kill the connection loop silently
            response = json_error(500, f"sink error: {exc!r}")
        await _write(writer, response, keep_alive)
        if not keep_alive:
            return


async def _write(writer: asyncio.StreamWriter, response: Response, keep_alive: bool) -> None:
    payload = b"" if response.body is None else json.dumps(response.body).encode("utf-8")
    try:
        reason = HTTPStatus(response.status).phrase
    except ValueError:
        reason = "Status"
    lines = [f"HTTP/1.1 {response.status} {reason}", f"Content-Length: {len(payload)}"]
    if response.body is not None:
        lines.append("Content-Type: application/json")
    lines.append(f"Connection: {'keep-alive' if keep_alive else 'close'}")
    lines.extend(f"{k}: {v}" for k, v in response.headers.items())
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)
    await writer.drain()


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
