"""The batch decoder: records of other services skipped by their `type`, exactly as Python's
JSON parser reads it; records that do not validate quarantined; the rest decoded in order."""

import json
from types import SimpleNamespace
from typing import Any, Literal

import pytest
from aiokafka import ConsumerRecord
from pydantic import BaseModel, TypeAdapter, ValidationError

from shared.kafka import QuarantineDecoder, _type_by_json_module, _type_of

# Records a producer could write, chosen where pydantic's parser and Python's disagree.
AWKWARD = [
    b'{"type":"a","type":"b"}',
    b'{"type":"a"} trailing',
    b' {"type":"a"}\n',
    b'\xef\xbb\xbf{"type":"a"}',
    '{"type":"a"}'.encode("utf-16"),
    b'{"type":"\\ud800"}',
    b'{"type":"a","x":"\\ud800"}',
    b'{"type":"a","x":NaN}',
    b'{"type":"a","x":1e999}',
    b'{"type":"a","x":"\xff"}',
    b'{"type":"a","x":"\x01"}',
    b'{"type":"a","x":' + b"[" * 300 + b"]" * 300 + b"}",
    b'{"type":"a","x":' + b"[" * 3000 + b"]" * 3000 + b"}",
    b'{"type":"a",}',
    b'{"type":"a","x":01}',
    b'{"typ\\u0065":"escaped"}',
    b'{"type":"\\u00e9"}',
    b'{"type":1}',
    b'{"type":null}',
    b'{"a":{"type":"nested"}}',
    b'["type"]',
    b"",
    None,
]


@pytest.mark.parametrize("value", AWKWARD)
def test_the_type_is_the_one_json_loads_reads(value: bytes | None) -> None:
    assert _type_of(value) == _type_by_json_module(value)


def test_the_type_of_an_ordinary_record() -> None:
    assert _type_of(json.dumps({"id": 1, "type": "delivery.failed", "x": [1]}).encode()) == (
        "delivery.failed"
    )


class Failed(BaseModel):
    type: Literal["failed"]
    n: int


def record(offset: int, value: bytes | None) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord("t", 0, offset, 0, 0, None, value, None, 0, 0, [])


async def test_a_batch_skips_others_records_and_quarantines_the_bad_ones() -> None:
    quarantined: list[int] = []

    async def quarantine(item: ConsumerRecord[Any, Any], error: ValidationError) -> None:
        quarantined.append(item.offset)

    decoder = QuarantineDecoder(
        TypeAdapter(Failed), quarantine, mine=lambda kind: kind in ("failed", None)
    )
    batch = (
        record(0, b'{"type":"failed","n":1}'),
        record(1, b'{"type":"delivered","n":2}'),
        record(2, b'{"type":"failed","n":"x"}'),
        record(3, b"not json"),
        record(4, b'{"type":"failed","n":5}'),
    )
    decoded = await decoder(SimpleNamespace(raw_message=batch))  # type: ignore[arg-type]
    assert [item.n for item in decoded] == [1, 5]
    assert quarantined == [2, 3]
    assert [decoder.record_of(item) for item in decoded] == [batch[0], batch[4]]
