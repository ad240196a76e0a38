"""Signed return paths: one message's, readable in any case, unforgeable (shared/return_path.py)."""

import base64
import hashlib
import hmac
from uuid import UUID, uuid4

import pytest

from shared import return_path

SECRET = b"k" * 32
KEY = return_path.key(SECRET)
DOMAIN = "bounces.example.com"
RECIPIENT = UUID("12345678-1234-5678-1234-567812345678")
# Pinned: a change of format would orphan the bounces of every message already sent.
VECTOR = "b+ci2fm6asgrlhqerukz4bencwpdm5mzlnj64umek6zvrdguth@bounces.example.com"


def test_the_address_is_the_documented_construction() -> None:
    assert hmac.digest(SECRET, b"broadcast-return-path/v1", hashlib.sha256) == KEY
    mac = hmac.digest(KEY, RECIPIENT.bytes, hashlib.sha256)[:14]
    token = base64.b32encode(RECIPIENT.bytes + mac).decode().lower()
    assert return_path.address(RECIPIENT, DOMAIN, KEY) == f"b+{token}@{DOMAIN}" == VECTOR
    assert len(VECTOR.partition("@")[0]) <= 64


def test_an_address_reads_back_in_any_case() -> None:
    for spelling in (VECTOR, VECTOR.upper(), f" {VECTOR.title()} "):
        assert return_path.recipient_of(spelling, DOMAIN, [KEY]) == RECIPIENT
    assert return_path.recipient_of(VECTOR, DOMAIN.upper(), [KEY]) == RECIPIENT


def test_every_recipient_gets_its_own_address() -> None:
    ids = [uuid4() for _ in range(200)]
    addresses = {return_path.address(i, DOMAIN, KEY) for i in ids}
    assert len(addresses) == len(ids)
    assert {return_path.recipient_of(a, DOMAIN, [KEY]) for a in addresses} == set(ids)


def test_a_previous_key_still_verifies_while_rotating() -> None:
    new = return_path.key(b"n" * 32)
    assert return_path.recipient_of(VECTOR, DOMAIN, [new]) is None
    assert return_path.recipient_of(VECTOR, DOMAIN, [new, KEY]) == RECIPIENT
    assert return_path.recipient_of(VECTOR, DOMAIN, []) is None


def _flip(address: str, index: int) -> str:
    char = address[index]
    return address[:index] + ("b" if char != "b" else "c") + address[index + 1 :]


@pytest.mark.parametrize("index", [2, 10, 27, 28, 40, 49])
def test_a_tampered_token_is_refused(index: int) -> None:
    assert return_path.recipient_of(_flip(VECTOR, index), DOMAIN, [KEY]) is None


def test_another_recipients_id_with_a_guessed_mac_is_refused() -> None:
    forged = base64.b32encode(uuid4().bytes + bytes(14)).decode().lower()
    assert return_path.recipient_of(f"b+{forged}@{DOMAIN}", DOMAIN, [KEY]) is None


@pytest.mark.parametrize(
    "address",
    [
        VECTOR.replace(DOMAIN, "bounces.example.org"),
        VECTOR.replace(DOMAIN, f"evil.{DOMAIN}"),
        VECTOR.replace("@", "@x."),
        VECTOR.replace("b+", "c+"),
        VECTOR.replace("b+", ""),
        VECTOR.partition("@")[0],  # no domain
        VECTOR[: -len(DOMAIN) - 2] + "@" + DOMAIN,  # a character short
        VECTOR.replace("@", "a@"),  # a character long
        VECTOR.replace("c", "1", 1),  # not base32
        VECTOR.replace("c", "é", 1),
        VECTOR.replace("b+ci", "b+c=", 1),
        "",
        "@",
        f"postmaster@{DOMAIN}",
    ],
)
def test_anything_else_names_no_message(address: str) -> None:
    assert return_path.recipient_of(address, DOMAIN, [KEY]) is None


def test_an_empty_secret_is_a_configuration_mistake() -> None:
    with pytest.raises(ValueError, match="empty"):
        return_path.key(b"")
