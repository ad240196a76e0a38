"""The page behind every unsubscribe link (List-Unsubscribe and `{{ unsubscribe_url }}`).

GET shows a confirmation button and changes nothing: mail scanners follow links. POST records
the opt-out, as RFC 8058 one-click unsubscribe does (`List-Unsubscribe=One-Click` in the body).
A second POST changes nothing. The token is verified before anything is read or written.
"""

import html
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import parse_qs

from shared import links
from shared.asgi import Send, respond
from shared.clock import Clock
from shared.events import Channel

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
# Records the opt-out of (tenant, channel, address, contract).
Record = Callable[[str, Channel, str, str], Awaitable[None]]

_PURPOSES: dict[str, Channel] = {"unsubscribe:email": "email", "unsubscribe:sms": "sms"}

_PAGE = """<!doctype html>
<html lang="fr"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><main><h1>{title}</h1>{body}</main></body></html>
"""


def claims_of(
    secrets: Sequence[bytes], query: str, now: float, *, unscoped: bool = False
) -> links.LinkClaims:
    """The unsubscribe claims of the request's token; InvalidLink when it is not one.
    `unscoped`: see `links.verify`."""
    token = parse_qs(query).get("token", [""])[0]
    claims = links.verify(secrets, token, now, unscoped=unscoped)
    if claims.purpose not in _PURPOSES or not claims.address:
        raise links.InvalidLink("malformed")
    return claims


class UnsubscribePage:
    """A plain ASGI app, mounted on targeting's HTTP port."""

    def __init__(
        self, secrets: Sequence[bytes], record: Record, clock: Clock, *, unscoped: bool = False
    ) -> None:
        """`clock` tells whether a link has expired; `unscoped`: see `links.verify`."""
        self._secrets = secrets
        self._record = record
        self._clock = clock
        self._unscoped = unscoped

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method", "GET")
        query = scope.get("query_string", b"").decode("latin-1")
        try:
            now = self._clock().timestamp()
            claims = claims_of(self._secrets, query, now, unscoped=self._unscoped)
        except links.InvalidLink as error:
            await _respond(send, 400, "Lien invalide / Invalid link", _invalid(error))
            return
        address = html.escape(claims.address or "")
        if method == "GET":
            body = (
                f"<p>Ne plus recevoir nos messages à <b>{address}</b>?<br>"
                f"Stop receiving our messages at <b>{address}</b>?</p>"
                '<form method="post"><input type="hidden" name="List-Unsubscribe" '
                'value="One-Click"><button type="submit">Me désabonner / Unsubscribe'
                "</button></form>"
            )
            await _respond(send, 200, "Désabonnement / Unsubscribe", body)
            return
        if method != "POST":
            await _respond(send, 405, "Méthode non permise / Method not allowed", "")
            return
        await _drain(receive)
        assert claims.address is not None
        await self._record(
            claims.tenant_id, _PURPOSES[claims.purpose], claims.address, claims.contract_id
        )
        body = (
            f"<p>Vous ne recevrez plus nos messages à <b>{address}</b>.<br>"
            f"You will no longer receive our messages at <b>{address}</b>.</p>"
        )
        await _respond(send, 200, "Désabonné / Unsubscribed", body)


def _invalid(error: links.InvalidLink) -> str:
    if error.reason == "expired":
        return "<p>Ce lien a expiré. / This link has expired.</p>"
    return "<p>Ce lien n'est pas valide. / This link is not valid.</p>"


async def _drain(receive: Receive) -> None:
    """Read the form body: it carries nothing the token does not already say."""
    while True:
        message = await receive()
        if not message.get("more_body"):
            return


async def _respond(send: Send, status: int, title: str, body: str) -> None:
    page = _PAGE.format(title=html.escape(title), body=body).encode()
    await respond(send, status, b"text/html; charset=utf-8", page)
