"""HTTP SMS gateway sink for local runs and tests.

    python -m deploy.local.sms_sink --port 10080 [--token T]

Gateway API: POST /v1/messages with `Authorization: Bearer <token>` and a JSON body
{"from", "to" (E.164), "text", "reference"} -> 202 {"id", "status": "queued"}; a repeated
`reference` returns the first id without storing twice.
Control API (JSON): GET/DELETE /_sink/messages, GET /_sink/count, GET/PUT/DELETE /_sink/rules
(PUT and DELETE take `?owner=` to replace or clear one owner's rules only), GET /_sink/health.
A rule: {"to": "+33..." | "*", "status": 429, "body": {...} | null,
"retry_after": seconds | null, "times": null | int}.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import uuid
from typing import Any

from deploy.local.rules import Rule, RuleError, Rules, require
from deploy.local.sink_http import Request, Response, control_routes, json_error, serving
from shared.clock import Clock, utc_now

HOST = "127.0.0.1"
E164 = re.compile(r"\+[1-9][0-9]{1,14}")
FIELDS = ("from", "to", "text", "reference")


def normalise_rule(raw: Any) -> Rule:
    to = require(raw, "to", str).strip()
    status = require(raw, "status", int)
    if not 400 <= status <= 599:
        raise RuleError(f"rule status must be a 4xx or 5xx HTTP status: {raw!r}")
    body = raw.get("body")
    retry_after = raw.get("retry_after")
    if retry_after is not None and (not isinstance(retry_after, int | float) or retry_after < 0):
        raise RuleError(f"rule retry_after must be null or a non-negative number: {raw!r}")
    return {
        "to": to,
        "status": status,
        "body": body,
        "retry_after": retry_after,
        "times": raw.get("times"),
    }


class Gateway:
    def __init__(self, token: str | None, clock: Clock = utc_now) -> None:
        self.token = token
        self._clock = clock
        self.messages: list[dict[str, Any]] = []
        self.ids_by_reference: dict[str, str] = {}
        self.rules = Rules(normalise_rule)

    async def handle(self, request: Request) -> Response:
        control = await control_routes(
            request, messages=self.messages, rules=self.rules, on_clear=self.ids_by_reference.clear
        )
        if control is not None:
            return control
        if request.path != "/v1/messages":
            return json_error(404, f"no route {request.method} {request.path}")
        if request.method != "POST":
            return json_error(405, "use POST")
        return self.submit(request)

    def submit(self, request: Request) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or (self.token and token != self.token):
            return json_error(401, "missing or invalid bearer token")
        try:
            body = request.json()
        except ValueError:
            return json_error(400, "body is not valid JSON")
        if not isinstance(body, dict):
            return json_error(400, "body must be a JSON object")
        missing = [f for f in FIELDS if not isinstance(body.get(f), str) or not body[f]]
        if missing:
            return json_error(400, f"missing or non-string field(s): {', '.join(missing)}")
        if not E164.fullmatch(body["to"]):
            return json_error(400, "'to' is not an E.164 number")

        # Injected failures come before the idempotency check: a failing gateway fails
        # whatever it has seen before.
        rule = self.rules.take(lambda r: r["to"] in ("*", body["to"]))
        if rule is not None:
            headers = {}
            if rule["retry_after"] is not None:
                headers["Retry-After"] = str(rule["retry_after"])
            payload = (
                rule["body"]
                if rule["body"] is not None
                else {"error": f"injected failure {rule['status']}"}
            )
            return Response(rule["status"], payload, headers)

        reference = body["reference"]
        known = self.ids_by_reference.get(reference)
        if known is not None:
            return Response(202, {"id": known, "status": "queued"})
        message_id = str(uuid.uuid4())
        self.ids_by_reference[reference] = message_id
        self.messages.append(
            {
                "id": message_id,
                "from": body["from"],
                "to": body["to"],
                "text": body["text"],
                "reference": reference,
                "received_at": self._clock().isoformat(),
            }
        )
        return Response(202, {"id": message_id, "status": "queued"})


async def run(port: int, token: str | None, host: str = HOST) -> None:
    gateway = Gateway(token)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with serving(gateway.handle, host, port):
        print(f"sms-sink: gateway and control API on http://{host}:{port}", flush=True)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="HTTP SMS gateway sink")
    parser.add_argument("--host", default=HOST, help="address to bind (default: loopback)")
    parser.add_argument("--port", type=int, default=10080)
    parser.add_argument("--token", help="accept only this bearer token (default: any)")
    args = parser.parse_args()
    asyncio.run(run(args.port, args.token, args.host))


if __name__ == "__main__":
    main()
