"""The sinks' HTTP APIs on uvicorn, on a free loopback port: the routes, status codes and JSON
bodies that tests/stack.py and the dispatcher's SMS gateway client rely on."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from deploy.local import sink_http
from deploy.local.sink_http import Request, Response, control_routes, json_error, serving
from deploy.local.sms_sink import Gateway
from deploy.local.smtp_sink import SinkHandler

NOON = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
SMS = {"from": "Shop", "to": "+33612345678", "text": "hi", "reference": "r-1"}


@pytest.fixture
async def sms() -> AsyncIterator[httpx.AsyncClient]:
    gateway = Gateway("secret", clock=lambda: NOON)
    async with (
        serving(gateway.handle, "127.0.0.1", 0) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
    ):
        yield client


@pytest.fixture
async def smtp() -> AsyncIterator[tuple[SinkHandler, httpx.AsyncClient]]:
    handler = SinkHandler()

    async def routes(request: Request) -> Response:
        found = await control_routes(request, messages=handler.messages, rules=handler.rules)
        return found or json_error(404, f"no route {request.method} {request.path}")

    async with (
        serving(routes, "127.0.0.1", 0) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
    ):
        yield handler, client


async def test_sms_gateway_accepts_once_per_reference(sms: httpx.AsyncClient) -> None:
    auth = {"Authorization": "Bearer secret"}
    first = await sms.post("/v1/messages", json=SMS, headers=auth)
    again = await sms.post("/v1/messages", json=SMS, headers=auth)
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json() == {"id": first.json()["id"], "status": "queued"}
    assert first.headers["content-type"] == "application/json"
    stored = (await sms.get("/_sink/messages")).json()
    assert stored == [{**SMS, "id": first.json()["id"], "received_at": NOON.isoformat()}]
    assert (await sms.get("/_sink/count")).json() == {"count": 1}
    assert (await sms.delete("/_sink/messages")).json() == {"count": 0}


@pytest.mark.parametrize(
    ("method", "headers", "body", "status", "error"),
    [
        ("POST", {}, SMS, 401, "missing or invalid bearer token"),
        ("POST", {"Authorization": "Bearer other"}, SMS, 401, "missing or invalid bearer token"),
        ("POST", {"Authorization": "Bearer secret"}, b"{", 400, "body is not valid JSON"),
        ("POST", {"Authorization": "Bearer secret"}, [SMS], 400, "body must be a JSON object"),
        ("GET", {}, None, 405, "use POST"),
    ],
)
async def test_sms_gateway_refusals(
    sms: httpx.AsyncClient,
    method: str,
    headers: dict[str, str],
    body: object,
    status: int,
    error: str,
) -> None:
    content = body if isinstance(body, bytes) else None
    json = None if isinstance(body, bytes) else body
    response = await sms.request(
        method, "/v1/messages", headers=headers, content=content, json=json
    )
    assert (response.status_code, response.json()) == (status, {"error": error})


async def test_sms_injected_failure_with_retry_after(sms: httpx.AsyncClient) -> None:
    rule = {"to": SMS["to"], "status": 429, "retry_after": 3, "times": 1}
    put = await sms.put("/_sink/rules", params={"owner": "t1"}, json=[rule])
    assert put.json() == [{**rule, "body": None}]
    auth = {"Authorization": "Bearer secret"}
    failed = await sms.post("/v1/messages", json=SMS, headers=auth)
    assert (failed.status_code, failed.headers["retry-after"]) == (429, "3")
    assert failed.json() == {"error": "injected failure 429"}
    assert (await sms.post("/v1/messages", json=SMS, headers=auth)).status_code == 202


async def test_smtp_control_routes(smtp: tuple[SinkHandler, httpx.AsyncClient]) -> None:
    handler, client = smtp
    handler.messages.extend(
        {"mail_from": "a@x.test", "rcpt_tos": [rcpt], "data": "", "received_at": ""}
        for rcpt in ("one@a.test", "two@A.test", "three@b.test")
    )
    assert (await client.get("/_sink/health")).json() == {"status": "ok"}
    assert (await client.get("/_sink/count", params={"rcpt_domain": "a.test"})).json() == {
        "count": 2
    }
    mine = {"address": "@a.test", "code": 550}
    await client.put("/_sink/rules", params={"owner": "mine"}, json=[mine])
    await client.put("/_sink/rules", params={"owner": "theirs"}, json=[{**mine, "code": 450}])
    cleared = await client.delete("/_sink/rules", params={"owner": "mine"})
    assert [rule["code"] for rule in cleared.json()] == [450]
    bad = await client.put("/_sink/rules", json={"address": "*"})
    assert (bad.status_code, bad.json()) == (400, {"error": "rules must be a JSON list"})
    unknown = await client.post("/_sink/a%20b")
    assert (unknown.status_code, unknown.json()) == (404, {"error": "no route POST /_sink/a%20b"})


async def test_too_large_body_and_handler_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(request: Request) -> Response:
        raise RuntimeError("boom")

    monkeypatch.setattr(sink_http, "MAX_BODY", 10)
    async with (
        serving(broken, "127.0.0.1", 0) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
    ):
        large = await client.post("/", content=b"x" * 11)
        assert (large.status_code, large.json()) == (
            413,
            {"error": "bad or too large Content-Length"},
        )
        failed = await client.get("/")
        assert (failed.status_code, failed.json()) == (
            500,
            {"error": "sink error: RuntimeError('boom')"},
        )
