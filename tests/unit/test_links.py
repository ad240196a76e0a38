import base64
import hashlib
import hmac
import json
import pickle
import random
import string

import pytest

from shared.links import InvalidLink, LinkClaims, sign, tenant_key, verify, with_token

SECRET = b"s3cret-for-tests-only"
OTHER = b"another-secret"
CLAIMS = LinkClaims("acme", "C-1042", "unsubscribe", "jean@example.ca", 2_000_000_000)
NOW = 1_800_000_000.0


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def signed(payload: bytes, key: bytes = tenant_key(SECRET, "acme")) -> str:
    """A token with a valid signature around any payload bytes, as only the key's holder could
    build it (by default, tenant acme's key)."""
    part = b64(payload)
    return f"{part}.{b64(hmac.digest(key, part.encode(), hashlib.sha256))}"


def reason(secret: bytes | list[bytes], token: str, now: float = NOW) -> str:
    with pytest.raises(InvalidLink) as caught:
        verify(secret, token, now)
    return caught.value.reason


def test_round_trip() -> None:
    token = sign(SECRET, CLAIMS)
    assert verify(SECRET, token, NOW) == CLAIMS
    no_address = LinkClaims("acme", "C-1042", "statement", None, 2_000_000_000)
    assert verify(SECRET, sign(SECRET, no_address), NOW) == no_address


def test_token_is_url_safe_and_compact() -> None:
    token = sign(SECRET, CLAIMS)
    assert token.count(".") == 1
    assert set(token) <= set(string.ascii_letters + string.digits + "-_.")
    assert "=" not in token
    raw = base64.urlsafe_b64decode(token.split(".")[0] + "==")
    assert b" " not in raw
    assert json.loads(raw) == {
        "t": "acme",
        "c": "C-1042",
        "p": "unsubscribe",
        "a": "jean@example.ca",
        "e": 2_000_000_000,
    }
    assert len(token) == 151  # 108 of claims, 1 separator, 43 of signature


def test_unicode_address_round_trips() -> None:
    claims = LinkClaims("acme", "C-1", "unsubscribe", "andré.gélinas@exemple.québec", 2_000_000_000)
    assert verify(SECRET, sign(SECRET, claims), NOW) == claims


@pytest.mark.parametrize(
    "text", ['a"b', "a\\b", "line\nbreak\t", "\x00", "é€😀", "\ud800 lone surrogate", "</script>"]
)
def test_any_text_round_trips_as_json(text: str) -> None:
    claims = LinkClaims(text, text, text, text, 2_000_000_000)
    token = sign(SECRET, claims)
    assert verify(SECRET, token, NOW) == claims
    raw = base64.urlsafe_b64decode(token.split(".")[0] + "==")
    assert json.loads(raw) == {"t": text, "c": text, "p": text, "a": text, "e": 2_000_000_000}


def test_signing_is_deterministic() -> None:
    assert sign(SECRET, CLAIMS) == sign(SECRET, CLAIMS)
    assert sign(SECRET, CLAIMS) != sign(OTHER, CLAIMS)


def test_tampered_payload_is_a_bad_signature() -> None:
    payload, signature = sign(SECRET, CLAIMS).split(".")
    fields = json.loads(base64.urlsafe_b64decode(payload + "=="))
    fields["c"] = "C-9999"
    forged = b64(json.dumps(fields, separators=(",", ":")).encode())
    assert reason(SECRET, f"{forged}.{signature}") == "bad_signature"


def test_tampered_signature_is_a_bad_signature() -> None:
    payload, signature = sign(SECRET, CLAIMS).split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    assert reason(SECRET, f"{payload}.{flipped}") == "bad_signature"
    # The last character carries two spare bits: another spelling of the same bytes is refused.
    digest = base64.urlsafe_b64decode(signature + "=")
    aliases = [
        c
        for c in string.ascii_letters + string.digits + "-_"
        if c != signature[-1] and base64.urlsafe_b64decode(signature[:-1] + c + "=") == digest
    ]
    assert aliases
    for alias in aliases:
        assert reason(SECRET, f"{payload}.{signature[:-1]}{alias}") == "bad_signature"


def test_wrong_secret_is_a_bad_signature() -> None:
    assert reason(OTHER, sign(SECRET, CLAIMS)) == "bad_signature"


def test_rotation_verifies_with_any_listed_secret() -> None:
    old, new = OTHER, SECRET
    assert verify([new, old], sign(old, CLAIMS), NOW) == CLAIMS
    assert verify([new, old], sign(new, CLAIMS), NOW) == CLAIMS
    assert verify((new,), sign(new, CLAIMS), NOW) == CLAIMS
    assert reason([new], sign(old, CLAIMS)) == "bad_signature"


def test_each_tenant_has_its_own_key_derived_from_the_master() -> None:
    # The derivation is part of the contract: a tenant's page may hold its own key only.
    expected = hmac.digest(SECRET, b"broadcast-links/v1|acme", hashlib.sha256)
    assert tenant_key(SECRET, "acme") == expected
    assert tenant_key(SECRET, "acme") != tenant_key(SECRET, "acme2")
    assert tenant_key(SECRET, "acme") != tenant_key(OTHER, "acme")
    payload, signature = sign(SECRET, CLAIMS).split(".")
    assert signature == b64(hmac.digest(expected, payload.encode(), hashlib.sha256))


def test_a_token_of_one_tenant_never_verifies_as_another() -> None:
    payload, signature = sign(SECRET, CLAIMS).split(".")
    fields = json.loads(base64.urlsafe_b64decode(payload + "=="))
    fields["t"] = "rival"
    as_rival = json.dumps(fields, separators=(",", ":")).encode()
    # The same signature over the other tenant's name, or the payload signed with acme's key.
    assert reason(SECRET, f"{b64(as_rival)}.{signature}") == "bad_signature"
    assert reason(SECRET, signed(as_rival, tenant_key(SECRET, "acme"))) == "bad_signature"
    assert verify(SECRET, signed(as_rival, tenant_key(SECRET, "rival")), NOW).tenant_id == "rival"


def test_a_token_signed_with_the_master_itself_verifies_only_when_unscoped() -> None:
    # As links were signed before per-tenant keys.
    legacy = signed(b'{"t":"acme","c":"C-1","p":"unsubscribe","a":"j@x.ca","e":2000000000}', SECRET)
    assert reason(SECRET, legacy) == "bad_signature"
    assert verify([OTHER, SECRET], legacy, NOW, unscoped=True).contract_id == "C-1"
    assert verify(SECRET, sign(SECRET, CLAIMS), NOW, unscoped=True) == CLAIMS
    with pytest.raises(InvalidLink):
        verify(OTHER, legacy, NOW, unscoped=True)


def test_expired() -> None:
    token = sign(SECRET, CLAIMS)
    assert verify(SECRET, token, CLAIMS.expires_at) == CLAIMS  # valid up to its last second
    assert reason(SECRET, token, now=CLAIMS.expires_at + 0.5) == "expired"
    # Expiry is only told to someone holding a genuine link.
    assert reason(OTHER, token, now=CLAIMS.expires_at + 1) == "bad_signature"


@pytest.mark.parametrize(
    "token",
    [
        "",
        ".",
        "a.b.c",
        "abc",
        "abc.",
        ".abc",
        "a" * 10 + "." + "b" * 42,
        "a" * 10 + "." + "b" * 44,
        "é" * 10 + "." + "é" * 43,
        "ab$c." + "A" * 43,
        "abc=." + "A" * 43,
        " " + sign(SECRET, CLAIMS),
        sign(SECRET, CLAIMS) + "\n",
        sign(SECRET, CLAIMS) + ".",
    ],
)
def test_garbage_is_malformed(token: str) -> None:
    assert reason(SECRET, token) == "malformed"


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"\xff\xfe\x00garbage",
        b"",
        b"[1,2,3]",
        b'"a string"',
        b"42",
        b"null",
        b"{}",
        b'{"t":"acme","c":"C-1","p":"unsubscribe"}',  # no expiry
        b'{"t":"acme","c":"C-1","e":2000000000}',  # no purpose
        b'{"t":1,"c":"C-1","p":"x","e":2000000000}',
        b'{"t":"acme","c":"C-1","p":"x","a":5,"e":2000000000}',
        b'{"t":"acme","c":"C-1","p":"x","e":"2000000000"}',
        b'{"t":"acme","c":"C-1","p":"x","e":2000000000.5}',
        b'{"t":"acme","c":"C-1","p":"x","e":true}',
        b"[" * 100_000,
    ],
)
def test_a_validly_signed_unreadable_payload_is_malformed(payload: bytes) -> None:
    token = signed(payload)
    if not payload:
        # An empty payload part does not even have the shape of a token.
        assert token.startswith(".")
    assert reason(SECRET, token) == "malformed"


def test_a_validly_signed_payload_that_is_not_base64_is_malformed() -> None:
    part = "A"  # one base64 character cannot encode a byte
    token = f"{part}.{b64(hmac.digest(SECRET, part.encode(), hashlib.sha256))}"
    assert reason(SECRET, token) == "malformed"


def test_unknown_payload_keys_are_ignored() -> None:
    token = signed(b'{"t":"acme","c":"C-1","p":"x","e":2000000000,"v":2}')
    assert verify(SECRET, token, NOW) == LinkClaims("acme", "C-1", "x", None, 2_000_000_000)


def test_random_strings_never_raise_anything_but_invalid_link() -> None:
    rng = random.Random(20261123)
    alphabet = string.printable + "éà€😀\x00" + "._-" * 10
    genuine = sign(SECRET, CLAIMS)
    for _ in range(500):
        candidates = [
            "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 120))),
            # Right shape, random content.
            "".join(rng.choice(string.ascii_letters + "-_") for _ in range(rng.randrange(1, 60)))
            + "."
            + "".join(rng.choice(string.ascii_letters + "-_") for _ in range(43)),
            # A genuine token with one character changed.
            _mutate(genuine, rng),
        ]
        for token in candidates:
            if token == genuine:
                continue
            with pytest.raises(InvalidLink) as caught:
                verify(SECRET, token, NOW)
            assert caught.value.reason in ("malformed", "bad_signature")


def _mutate(token: str, rng: random.Random) -> str:
    at = rng.randrange(len(token))
    return token[:at] + rng.choice(string.ascii_letters + ".-_") + token[at + 1 :]


def test_invalid_link_carries_its_reason() -> None:
    error = InvalidLink("expired")
    assert error.reason == "expired"
    assert "expired" in str(error)
    assert isinstance(error, ValueError)
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 (our own bytes)
    assert copy.reason == "expired"


def test_empty_secrets_are_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        sign(b"", CLAIMS)
    with pytest.raises(ValueError, match="no link secret"):
        verify([], sign(SECRET, CLAIMS), NOW)
    with pytest.raises(ValueError, match="empty"):
        verify([SECRET, b""], sign(SECRET, CLAIMS), NOW)


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("https://x/y", "https://x/y?token=T.S"),
        ("https://x/y?a=1", "https://x/y?a=1&token=T.S"),
        ("https://x/y?", "https://x/y?token=T.S"),
        ("https://x/y?a=1&", "https://x/y?a=1&token=T.S"),
        ("https://x/y#top", "https://x/y?token=T.S#top"),
        ("https://x/y?a=1#top", "https://x/y?a=1&token=T.S#top"),
        ("https://x/y#top?not=query", "https://x/y?token=T.S#top?not=query"),
        ("https://x/y/", "https://x/y/?token=T.S"),
    ],
)
def test_with_token(base: str, expected: str) -> None:
    assert with_token(base, "T.S") == expected
