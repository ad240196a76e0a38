"""The stable ids are uuid5 values: computed without `uuid.uuid5`, they must stay the same."""

import itertools
import random
import uuid

import pytest

from shared import ids

NAMESPACE = uuid.UUID("6f1c2b1e-8f3a-4c52-9a57-2f0d8c3e4b10")

ADDRESSES = [
    "jean.dupont@example.com",
    "JEAN.Dupont@Example.COM",
    "élodie.bérubé@exemple.québec",
    "用户@例子.广告",
    "😀@emoji.example",
    "İstanbul@example.com",  # lower() lengthens it: the name is built after lower()
    "ß@straße.de",
    "+15145550100",
    "",
]


def _random_text(rng: random.Random) -> str:
    alphabet = "abcXYZ09-_.@|éÉçßİ中文😀\u00a0\u200b"
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))


def test_recipient_ids_are_uuid5_of_the_recipient_name() -> None:
    rng = random.Random(17)
    cases = [(uuid.UUID(int=rng.getrandbits(128)), "C-1", "email", a) for a in ADDRESSES]
    cases += [
        (uuid.UUID(int=rng.getrandbits(128)), _random_text(rng), "sms", _random_text(rng))
        for _ in range(5000)
    ]
    for run_id, contract_id, channel, address in cases:
        name = f"recipient|{run_id}|{contract_id}|{channel}|{address.lower()}"
        expected = uuid.uuid5(NAMESPACE, name)
        got = ids.recipient_id_for(run_id, contract_id, channel, address)
        assert got == expected and got.version == 5 and got.variant == uuid.RFC_4122
        assert ids.recipient_key_for(run_id, contract_id, channel, address) == str(expected)


def test_every_id_is_the_uuid5_of_its_name() -> None:
    run_id, broadcast_id = uuid.uuid4(), uuid.uuid4()
    assert ids.run_id_for(broadcast_id, 3) == uuid.uuid5(NAMESPACE, f"run|{broadcast_id}|3")
    assert ids.event_id_for(run_id, "x") == uuid.uuid5(NAMESPACE, f"event|{run_id}|x")
    assert ids.preview_run_id_for(broadcast_id, "p") == uuid.uuid5(
        NAMESPACE, f"preview|{broadcast_id}|p"
    )
    assert ids.follow_up_run_id_for(7, "q") == uuid.uuid5(NAMESPACE, "follow-up|7|q")
    assert ids.notice_run_id_for(run_id, "u") == uuid.uuid5(NAMESPACE, f"notice|{run_id}|u")
    assert ids.opt_out_event_id_for("t", "email", "A@B.c") == uuid.uuid5(
        NAMESPACE, "opted-out|t|email|a@b.c"
    )


def test_an_unencodable_name_is_refused_as_uuid5_refuses_it() -> None:
    with pytest.raises(UnicodeEncodeError):
        uuid.uuid5(NAMESPACE, "\ud800")
    with pytest.raises(UnicodeEncodeError):
        ids.recipient_id_for(uuid.uuid4(), "C-1", "email", "\ud800@example.com")
    with pytest.raises(UnicodeEncodeError):
        ids.recipient_key_for(uuid.uuid4(), "C-1", "email", "\ud800@example.com")


def test_random_ids_are_distinct_version_4_uuids_written_as_uuid_writes_them() -> None:
    drawn = list(itertools.islice(ids.random_ids(batch=3), 1000))
    assert len(set(drawn)) == 1000
    for text in drawn:
        value = uuid.UUID(text)
        assert str(value) == text and value.version == 4 and value.variant == uuid.RFC_4122


def test_random_ids_take_their_bits_from_the_system_random_source(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("shared.ids.os.urandom", lambda size: bytes(range(256))[:size])
    first, second = itertools.islice(ids.random_ids(batch=2), 2)
    assert first == str(uuid.UUID(bytes=bytes(range(16)), version=4))
    assert second == str(uuid.UUID(bytes=bytes(range(16, 32)), version=4))
