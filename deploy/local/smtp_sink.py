"""SMTP sink for local runs and tests: keeps received mail in memory, injects failures on demand.

    python -m deploy.local.smtp_sink --smtp-port 10025 --http-port 10026

Control API on the HTTP port (all JSON): GET/DELETE /_sink/messages, GET /_sink/count
(both take `?rcpt_domain=` to see one domain's mail only), GET/PUT/DELETE /_sink/rules (PUT and
DELETE take `?owner=` to replace or clear one owner's rules only), GET /_sink/health. A rule:
    {"address": "x@example.com" | "@example.com" (a whole domain) | "*",
     "stage": "rcpt" | "data", "code": 550, "message": "5.1.1 User unknown",
     "times": null | int, "action": "reply" | "disconnect"}
or a slow relay, which answers as usual after waiting:
    {"address": ..., "stage": ..., "action": "delay", "seconds": 5.0, "times": ...}
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP, Envelope, Session

from deploy.local.rules import Rule, RuleError, Rules, require
from deploy.local.sink_http import Request, Response, control_routes, json_error, serving
from shared.clock import Clock, utc_now

HOST = "127.0.0.1"
MAX_MESSAGE_SIZE = 10 * 1024 * 1024


def normalise_rule(raw: Any) -> Rule:
    address = require(raw, "address", str).strip().lower()
    stage = raw.get("stage", "rcpt")
    if raw.get("action") == "delay":
        seconds = require(raw, "seconds", (int, float))
        if stage not in ("rcpt", "data") or not 0 < seconds <= 600:
            raise RuleError(f"a delay rule needs stage rcpt|data and 0 < seconds <= 600: {raw!r}")
        return {
            "address": address,
            "stage": stage,
            "action": "delay",
            "seconds": float(seconds),
            "times": raw.get("times"),
        }
    code = require(raw, "code", int)
    if not 400 <= code <= 599:
        raise RuleError(f"rule code must be a 4xx or 5xx SMTP code: {raw!r}")
    action = raw.get("action", "reply")
    if stage not in ("rcpt", "data") or action not in ("reply", "disconnect"):
        raise RuleError(f"rule stage must be rcpt|data and action reply|disconnect: {raw!r}")
    message = raw.get("message") or (
        "5.0.0 Rejected by sink rule" if code >= 500 else "4.0.0 Temporarily rejected by sink rule"
    )
    return {
        "address": address,
        "stage": stage,
        "code": code,
        "message": str(message),
        "times": raw.get("times"),
        "action": action,
    }


class SinkSMTP(SMTP):
    async def push(self, status: AnyStr) -> None:
        # A "disconnect" rule closes the transport from inside a hook; aiosmtpd then still
        # pushes the hook's reply, which must be dropped rather than raise on a dead socket.
        if _closed(self):
            return
        await super().push(status)


# What a command read after a "disconnect" rule closed the connection gets: nothing reaches the
# client (SinkSMTP.push drops it). aiosmtpd still parses what the client had pipelined behind
# the dropped message; a real server reads no further, so such a command must neither consume a
# rule nor be received.
_GONE = "421 4.4.2 connection closed"


def _closed(server: SMTP) -> bool:
    return server.transport is None or server.transport.is_closing()


def _matches(pattern: str, addresses: list[str]) -> bool:
    if pattern == "*":
        return True
    if pattern.startswith("@"):
        return any(a.endswith(pattern) for a in addresses)
    return pattern in addresses


class SinkHandler:
    def __init__(self, clock: Clock = utc_now) -> None:
        self._clock = clock
        self.messages: list[dict[str, Any]] = []
        self.rules = Rules(normalise_rule)

    async def _rule_for(self, stage: str, addresses: list[str]) -> Rule | None:
        """The rule that decides this reply; a delay rule only holds it back."""
        lowered = [a.lower() for a in addresses]
        rule = self.rules.take(lambda r: r["stage"] == stage and _matches(r["address"], lowered))
        if rule is not None and rule["action"] == "delay":
            await asyncio.sleep(rule["seconds"])
            return None
        return rule

    @staticmethod
    def _apply(server: SMTP, rule: Rule) -> str:
        if rule["action"] == "disconnect":
            assert server.transport is not None
            server.transport.close()
        return f"{rule['code']} {rule['message']}"

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        # aiosmtpd reads commands one line at a time from its stream, so commands a client
        # pipelines are simply answered in order: advertising PIPELINING (RFC 2920) puts the
        # dispatcher's pipelined path, its production path, under the stack's tests.
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if _closed(server):
            return _GONE
        rule = await self._rule_for("rcpt", [address])
        if rule is not None:
            return self._apply(server, rule)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if _closed(server):
            return _GONE
        rule = await self._rule_for("data", envelope.rcpt_tos)
        if rule is not None:
            return self._apply(server, rule)
        content = envelope.content
        data = (
            content.decode("utf-8", errors="replace")
            if isinstance(content, bytes)
            else (content or "")
        )
        self.messages.append(
            {
                "mail_from": envelope.mail_from,
                "rcpt_tos": list(envelope.rcpt_tos),
                "data": data,
                "received_at": self._clock().isoformat(),
            }
        )
        return "250 OK: queued"


def smtp_server(handler: SinkHandler) -> SMTP:
    """One connection's SMTP protocol."""
    # An explicit hostname avoids a per-connection socket.getfqdn() DNS lookup.
    return SinkSMTP(
        handler,
        hostname="smtp-sink.localhost",
        enable_SMTPUTF8=True,
        decode_data=False,
        data_size_limit=MAX_MESSAGE_SIZE,
    )


async def run(smtp_port: int, http_port: int) -> None:
    # aiosmtpd logs every command at INFO; at thousands of messages per second that is the
    # bottleneck, so only problems are logged.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    handler = SinkHandler()

    async def http_handler(request: Request) -> Response:
        response = await control_routes(request, messages=handler.messages, rules=handler.rules)
        return response or json_error(404, f"no route {request.method} {request.path}")

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    listening = await loop.create_server(
        lambda: smtp_server(handler), HOST, smtp_port, backlog=1024
    )
    async with serving(http_handler, HOST, http_port):
        print(
            f"smtp-sink: SMTP on {HOST}:{smtp_port}, control API on http://{HOST}:{http_port}",
            flush=True,
        )
        await stop.wait()
    listening.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="SMTP sink with an HTTP control API")
    parser.add_argument("--smtp-port", type=int, default=10025)
    parser.add_argument("--http-port", type=int, default=10026)
    args = parser.parse_args()
    asyncio.run(run(args.smtp_port, args.http_port))


if __name__ == "__main__":
    main()
