"""Test-side clients of the real components the suite runs against (started by `make test`)."""

import email
import email.policy
import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from email.message import EmailMessage
from typing import Any
from uuid import uuid4

import httpx

from deploy.local import stack as local_stack
from shared.client import endpoints
from shared.client.commands import publish
from shared.client.log import TopicLog

_LOCAL = endpoints.local()
KAFKA = _LOCAL.kafka
DATABASE_URL = _LOCAL.database_url
SMTP_CONTROL = _LOCAL.smtp_control
SMS_CONTROL = _LOCAL.sms_control


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    received_at: str  # ISO 8601, by the sink's clock


class _Sink:
    """A sink's control API as one test sees it: its failure rules are its own, so other
    tests' stay in place while it sets or clears them."""

    def __init__(self, base_url: str) -> None:
        self._http = httpx.AsyncClient(base_url=base_url, timeout=10)
        self._owner = {"owner": uuid4().hex}

    async def set_rules(self, rules: list[dict[str, Any]]) -> None:
        """Replace this test's rules."""
        (await self._http.put("/_sink/rules", params=self._owner, json=rules)).raise_for_status()

    async def clear_rules(self) -> None:
        """Remove this test's rules."""
        (await self._http.delete("/_sink/rules", params=self._owner)).raise_for_status()

    async def close(self) -> None:
        await self._http.aclose()


class SmtpSink(_Sink):
    """The SMTP sink; it counts one domain's mail, since other tests send at the same time."""

    def __init__(self) -> None:
        super().__init__(SMTP_CONTROL)

    async def messages(self, to_domain: str | None = None) -> list[ReceivedMail]:
        params = {"rcpt_domain": to_domain} if to_domain else {}
        response = await self._http.get("/_sink/messages", params=params)
        response.raise_for_status()
        found = []
        for item in response.json():
            if to_domain and not any(r.lower().endswith("@" + to_domain) for r in item["rcpt_tos"]):
                continue
            parsed = email.message_from_string(item["data"], policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            found.append(
                ReceivedMail(item["mail_from"], item["rcpt_tos"], parsed, item["received_at"])
            )
        return found

    async def count(self, to_domain: str) -> int:
        """Messages received for `to_domain` (cheap: none is fetched)."""
        response = await self._http.get("/_sink/count", params={"rcpt_domain": to_domain})
        response.raise_for_status()
        return int(response.json()["count"])


async def publish_raw(topic: str, records: Iterable[tuple[bytes, bytes]]) -> None:
    """Publish bytes as they are: what a broken or hostile producer could send."""
    await publish(KAFKA, topic, records, max_request_size=2**21)


async def publish_json(topic: str, records: Iterable[tuple[str, dict[str, Any]]]) -> None:
    """Publish with a plain Kafka client, as any non-Python service of the platform would."""
    await publish_raw(topic, ((key.encode(), json.dumps(value).encode()) for key, value in records))


class EventLog(TopicLog):
    """Everything published on a topic of the suite's stack from the moment it was opened."""

    def __init__(self, topic: str) -> None:
        super().__init__(KAFKA, topic)


class SmsSink(_Sink):
    """The local SMS gateway: what it accepted, as {from, to, text, reference}."""

    def __init__(self) -> None:
        super().__init__(SMS_CONTROL)

    async def messages(self, to: set[str] | None = None) -> list[dict[str, Any]]:
        response = await self._http.get("/_sink/messages")
        response.raise_for_status()
        return [m for m in response.json() if to is None or m["to"] in to]


# The suite's dispatcher retries after 1 and 2 seconds instead of 30 s, 5 min and 30 min: a
# retried message must not hold a test for minutes.
SUITE_ENV = {
    "dispatcher": {
        "DISPATCHER_RETRY_DELAYS_SECONDS": "[1, 2]",
        "DISPATCHER_THROTTLE_BACKOFF_SECONDS": "2",
    },
    # Gauges (running broadcasts, consumer lag) refreshed every 2 s rather than 15 s.
    "tracker": {"TRACKER_GAUGES_INTERVAL_SECONDS": "2"},
}


def restart_service(
    name: str, env: dict[str, str] | None = None, *, as_in_the_suite: bool = True
) -> None:
    """Restart one of the stack's services with the suite's settings and `env` added to its
    environment; `as_in_the_suite=False` and no `env`: as the stack starts it."""
    component = local_stack.components()[name]
    local_stack.stop_process(component.pid_file)
    env = {**(SUITE_ENV.get(name, {}) if as_in_the_suite else {}), **(env or {})}
    with local_stack.environment(env):
        local_stack.up([name])


def another_instance(
    name: str, env: dict[str, str] | None = None, instance: int = 2
) -> local_stack.Component:
    """Instance `instance` of a service, as BROADCAST_INSTANCES starts it (same consumer
    groups as the stack's, its own port and identity), with `env` added; the caller starts it
    with `local_stack.start_component` and must stop it."""
    base = local_stack.service(name, instance)
    return replace(base, env={**base.env, **(env or {})})
