"""Per-message return paths (VERP): the bounce address of one email, which nobody can forge. Pure.

An email's envelope sender is `b+<token>@<domain>`, `domain` being the deployment's bounce
domain (its MX is the dispatcher's bounce receiver). The token is the base32 of the message's
recipient id (16 bytes) followed by an HMAC-SHA256 of it, truncated to 14 bytes (112 bits):
30 bytes, 48 characters, no padding, a 50-character local part (RFC 5321 allows 64). A bounce
names its message by the address it was mailed to, so a forged one could fail messages and
suppress addresses by the thousand: only an address this deployment signed names a message.

Lowercase base32, because MTAs may change the case of a local part (RFC 5321 says they should
not, some do): any case reads back the same.
"""

import base64
import binascii
import functools
import hashlib
import hmac
from collections.abc import Sequence
from uuid import UUID

# Names the use and its version: the same master secret could derive other keys.
_KEY_LABEL = b"broadcast-return-path/v1"
_PREFIX = "b+"
_MAC_BYTES = 14
# 16 + 14 bytes: a multiple of 5, so base32 needs no padding and every token has one spelling.
_TOKEN_CHARS = (16 + _MAC_BYTES) * 8 // 5


@functools.lru_cache(maxsize=8)
def key(secret: bytes) -> bytes:
    """The key return paths are signed with, derived from the master `secret`
    (HMAC-SHA256(secret, "broadcast-return-path/v1")), independent of the links' keys."""
    if not secret:
        # An empty key would let anyone sign: a configuration mistake, not a bad address.
        raise ValueError("the return path secret is empty")
    return hmac.digest(secret, _KEY_LABEL, hashlib.sha256)


def _mac(key: bytes, recipient_id: bytes) -> bytes:
    return hmac.digest(key, recipient_id, hashlib.sha256)[:_MAC_BYTES]


def address(recipient_id: UUID, domain: str, key: bytes) -> str:
    """The return path of the message `recipient_id`, signed with `key` (from `key()`)."""
    raw = recipient_id.bytes
    token = base64.b32encode(raw + _mac(key, raw)).decode("ascii").lower()
    return f"{_PREFIX}{token}@{domain.lower()}"


def recipient_of(address: str, domain: str, keys: Sequence[bytes]) -> UUID | None:
    """The recipient id an address at `domain` was signed for with one of `keys` (several
    while the secret is rotated); None for any other address, whatever its shape."""
    local, at, host = address.strip().lower().rpartition("@")
    if not at or host != domain.lower() or not local.startswith(_PREFIX):
        return None
    token = local.removeprefix(_PREFIX)
    if len(token) != _TOKEN_CHARS or not token.isascii():
        return None
    try:
        raw = base64.b32decode(token.upper())
    except binascii.Error:
        return None
    recipient_id, mac = raw[:16], raw[16:]
    # Every key is tried, even after a match, so timing does not tell which one signed.
    valid = False
    for k in keys:
        valid |= hmac.compare_digest(_mac(k, recipient_id), mac)
    return UUID(bytes=recipient_id) if valid else None
