"""Signed, expiring links: a customer can follow their own link but cannot forge another's. Pure.

A token is `base64url(payload) "." base64url(HMAC-SHA256(key, base64url(payload)))`, without
padding, so it needs no escaping in a URL. The payload is compact JSON with one-letter keys,
because links also go into SMS, where every character is paid for. The key is the tenant's own,
derived from the master secret (`tenant_key`): a token of one tenant never verifies as another's.
"""

import base64
import functools
import hashlib
import hmac
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Reason = Literal["malformed", "bad_signature", "expired"]

# base64url of a 32-byte digest is 43 characters; checking the shape first keeps non-ASCII and
# oversized signatures away from compare_digest.
_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}")
# JSON string quoting, in C. ASCII output: a lone surrogate in an address cannot fail the UTF-8
# encoding. The payload is assembled by hand because json.dumps builds an encoder on every call,
# which costs as much as the HMAC, and every message signs at least its unsubscribe link.
_quote = json.encoder.encode_basestring_ascii


@dataclass(frozen=True)
class LinkClaims:
    """What a link grants: `purpose` (e.g. "unsubscribe") on one contract of one tenant, until
    `expires_at` (unix seconds); `address` is the email or phone concerned, when it matters."""

    tenant_id: str
    contract_id: str
    purpose: str
    address: str | None
    expires_at: int


class InvalidLink(ValueError):
    """A token that must not be honoured; `reason` (also the message) says why."""

    def __init__(self, reason: Reason) -> None:
        # The reason is the only argument, so the exception pickles and prints as its code.
        super().__init__(reason)
        self.reason: Reason = reason


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# Names the use and its version, so that the same master can derive other keys without collision.
_TENANT_KEY_LABEL = b"broadcast-links/v1|"


@functools.lru_cache(maxsize=1024)  # the composer signs every message: derive once per tenant
def tenant_key(master: bytes, tenant_id: str) -> bytes:
    """The key `tenant_id`'s links are signed with: HMAC-SHA256(master, "broadcast-links/v1|" +
    tenant_id). HMAC is a pseudo-random function, so with a master of 32 random bytes or more
    (what the services demand outside local mode) each tenant's key is independent of the others
    and tells nothing of the master: HKDF's extract step, made for keys that are not uniformly
    random, would add nothing, and its expand step for one 32-byte key is this HMAC with a
    trailing counter byte. One stdlib call, so a tenant's page written in any language can
    derive its own key, and hold nothing that signs another tenant's links."""
    if not master:
        # An empty key would let anyone sign: a configuration mistake, not a bad link.
        raise ValueError("the link secret is empty")
    # surrogatepass: any str is a tenant id here (a lone surrogate too), one byte string each.
    label = _TENANT_KEY_LABEL + tenant_id.encode("utf-8", "surrogatepass")
    return hmac.digest(master, label, hashlib.sha256)


def _signature(key: bytes, payload: str) -> str:
    return _b64(hmac.digest(key, payload.encode("ascii"), hashlib.sha256))


def sign(secret: bytes, claims: LinkClaims) -> str:
    """A URL-safe token carrying `claims`, which only the holder of `secret` (the master) or of
    the tenant's key can have produced."""
    address = "" if claims.address is None else f',"a":{_quote(claims.address)}'
    text = (
        f'{{"t":{_quote(claims.tenant_id)},"c":{_quote(claims.contract_id)},'
        f'"p":{_quote(claims.purpose)},"e":{int(claims.expires_at)}{address}}}'
    )
    payload = _b64(text.encode())
    return f"{payload}.{_signature(tenant_key(secret, claims.tenant_id), payload)}"


def verify(
    secret: bytes | Sequence[bytes], token: str, now: float, *, unscoped: bool = False
) -> LinkClaims:
    """The claims of a token signed for its tenant with one of the masters `secret` (several
    while a secret is rotated). `unscoped` also accepts a token signed with a master itself, as
    links were before per-tenant keys.

    Raises InvalidLink: "malformed" (not a token, or a payload we cannot read), "bad_signature"
    (forged, altered, signed with another secret or for another tenant), "expired" (genuine
    but `now` is past `expires_at`)."""
    secrets = [secret] if isinstance(secret, bytes) else list(secret)
    if not secrets:
        raise ValueError("no link secret to verify with")
    if not isinstance(token, str) or not _SHAPE.fullmatch(token):
        raise InvalidLink("malformed")
    payload, signature = token.split(".")
    # Read before the signature is checked, and trusted for one thing only: choosing the key. A
    # payload naming another tenant than the one it was signed for fails the signature.
    claims = _claims(payload)
    keys = [tenant_key(master, claims.tenant_id) for master in secrets]
    if unscoped:
        keys += secrets
    given = signature.encode("ascii")
    # Every key is tried, even after a match, so timing does not tell which one signed.
    valid = False
    for key in keys:
        valid |= hmac.compare_digest(_signature(key, payload).encode("ascii"), given)
    if not valid:
        raise InvalidLink("bad_signature")
    if now > claims.expires_at:
        raise InvalidLink("expired")
    return claims


def _claims(payload: str) -> LinkClaims:
    try:
        fields = json.loads(_unb64(payload))
    except (ValueError, RecursionError):
        # binascii.Error, UnicodeDecodeError and JSONDecodeError are all ValueErrors.
        raise InvalidLink("malformed") from None
    if not isinstance(fields, dict):
        raise InvalidLink("malformed")
    tenant_id, contract_id = fields.get("t"), fields.get("c")
    purpose, address, expires_at = fields.get("p"), fields.get("a"), fields.get("e")
    if not (
        isinstance(tenant_id, str)
        and isinstance(contract_id, str)
        and isinstance(purpose, str)
        and (address is None or isinstance(address, str))
        # sign() writes an integer; bool would pass isinstance(int).
        and type(expires_at) is int
    ):
        raise InvalidLink("malformed")
    return LinkClaims(tenant_id, contract_id, purpose, address, expires_at)


def with_token(base_url: str, token: str) -> str:
    """`base_url` with `token=<token>` added to its query, before any fragment."""
    url, hash_mark, fragment = base_url.partition("#")
    if "?" not in url:
        joint = "?"
    elif url.endswith(("?", "&")):
        joint = ""
    else:
        joint = "&"
    return f"{url}{joint}token={token}{hash_mark}{fragment}"
