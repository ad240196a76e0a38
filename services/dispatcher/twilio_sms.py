"""SMS through Twilio's Messages API (or any service speaking its format).

POST {base_url}/2010-04-01/Accounts/{account_sid}/Messages.json, form-encoded To, From and Body,
HTTP basic auth (account SID, auth token). 201 answers JSON with the message's `sid`; an error
answers JSON {"code", "message", "status"}.
"""

from typing import Any

import httpx

from shared.events import FailureReason, MessageRendered

from .policy import Attempt, connection_failure, http_reply, outcome_unknown
from .settings import Settings

# Failures raised before the request could reach Twilio: trying again cannot send twice.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

# Twilio's error codes that say more than their HTTP status (400 for all three).
_REASONS: dict[int, FailureReason] = {
    21211: "invalid_address",  # the To number is not a valid phone number
    21614: "invalid_address",  # the To number is not a mobile number
    21610: "refused",  # the recipient replied STOP: Twilio refuses to send to them
}


class TwilioSms:
    """Unlike our HTTP gateway's `reference`, Twilio's API has no key that makes a repeated
    request harmless: a request that may have reached it (a timeout waiting for the answer, a
    connection lost after sending) is an unknown outcome, never sent again automatically."""

    def __init__(
        self,
        *,
        base_url: str,
        account_sid: str,
        auth_token: str,
        sender: str,
        timeout: float,
        status_callback: str | None = None,
    ) -> None:
        """`status_callback`: where Twilio reports each message's fate (webhooks/twilio.py)."""
        self._url = f"{base_url.rstrip('/')}/2010-04-01/Accounts/{account_sid}/Messages.json"
        self._sender = sender
        self._callback = {"StatusCallback": status_callback} if status_callback else {}
        self._client = httpx.AsyncClient(timeout=timeout, auth=(account_sid, auth_token))

    @classmethod
    def from_settings(cls, settings: Settings) -> "TwilioSms":
        return cls(
            base_url=settings.twilio_base_url,
            account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token.get_secret_value(),
            sender=settings.sms_sender,
            timeout=settings.sms_timeout_seconds,
            status_callback=(
                f"{settings.public_url.rstrip('/')}/webhooks/twilio/status"
                if settings.public_url
                else None
            ),
        )

    async def send(self, message: MessageRendered) -> Attempt:
        form = {"To": message.address, "From": self._sender, "Body": message.body, **self._callback}
        try:
            response = await self._client.post(self._url, data=form)
        except _NOT_SENT as error:
            return connection_failure(f"{type(error).__name__}: {error}")
        except httpx.HTTPError as error:
            return outcome_unknown(f"no answer from Twilio: {type(error).__name__}: {error}")
        return _reply(response)

    async def close(self) -> None:
        await self._client.aclose()


def _reply(response: httpx.Response) -> Attempt:
    """The answer as the HTTP gateway's would be taken, with the message's sid as the detail
    of a success and Twilio's error code named in a failure's."""
    answer = _json(response)
    status = response.status_code
    if 200 <= status < 300:
        return http_reply(status, str(answer.get("sid") or response.text[:500]))
    code = answer.get("code")
    detail = f"Twilio error {code}: {answer.get('message', '')}" if code else response.text[:500]
    reason = _REASONS.get(code) if isinstance(code, int) else None
    if reason is not None and 400 <= status < 500 and status != 429:
        return Attempt("permanent", status, detail, reason)
    return http_reply(status, detail, response.headers.get("retry-after"))


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        answer = response.json()
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}
