"""Stand-ins for the webhook routes' outside world: an intake that keeps the findings it is
given, and a POST through the ASGI app as a provider would send it."""

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import httpx

from services.dispatcher.intake import Finding
from services.dispatcher.webhooks.http import Handler, Webhook
from shared.events import DeliveryReport

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


class FakeIntake:
    """Keeps every finding; `failing` makes it fail as a broker that does not answer would."""

    def __init__(self, failing: bool = False) -> None:
        self.findings: list[Finding] = []
        self.failing = failing

    async def take(self, findings: Sequence[Finding]) -> list[DeliveryReport]:
        if self.failing:
            raise ConnectionError("broker unavailable")
        self.findings.extend(findings)
        return []


async def post(
    handler: Handler | None,
    intake: FakeIntake,
    body: bytes,
    headers: Mapping[str, str] | None = None,
    *,
    method: str = "POST",
    limit: int = 100_000,
) -> httpx.Response:
    app = Webhook("test", handler, intake.take, limit)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://dispatcher") as client:
        return await client.request(method, "/webhooks/test", content=body, headers=headers)
