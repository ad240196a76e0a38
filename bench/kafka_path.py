"""The per-message Kafka path in one process, no Kafka: `python -m bench.kafka_path`.

On 500 real records (the composer's `message.rendered` of bench/invoice.py's recipients, their
`recipient.targeted`, and `delivery.failed` events), CPU microseconds per record of:
- publishing: FastStream's `publish` per record vs `FastLane.send`, both down to a stub
  aiokafka producer (so what is measured is the layer above aiokafka), serialisation included;
- decoding: one `validate_json` per record vs one call for the whole batch; a record's `type`
  by `json.loads` vs the decoder's one-field model;
- targeting's expansion of a page of contracts into `recipient.targeted` keys and JSON
  (bench/contracts.py's rows, as the database returns them);
- compression of `broadcast.messages`: a producer batch built and compressed as aiokafka does
  it, per codec and batch size: CPU per message and bytes on the wire, and reading it back.

Thread CPU time, best of `--repeats` passes: the machine is shared and noisy.
"""

import argparse
import asyncio
import json
import time
from collections.abc import Callable
from functools import partial
from typing import Any
from uuid import uuid4

from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from faststream.kafka.publisher.producer import AioKafkaFastProducerImpl
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, TypeAdapter

from bench import invoice
from bench.contracts import CONTRACT_COLUMNS, contract_rows
from services.composer.render import render
from services.targeting.audience import RunScope, expand
from shared.clock import utc_now
from shared.events import DeliveryFailed, MessageRendered
from shared.fastlane import FastLane
from shared.kafka import _type_by_json_module, _type_of, make_broker
from shared.settings import ServiceSettings

COUNT = 500
CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def best_us(step: Callable[[], object], count: int, repeats: int) -> float:
    step()
    best = min(_cpu(step) for _ in range(repeats))
    return round(best / count * 1e6, 2)


def _cpu(step: Callable[[], object]) -> float:
    started = time.thread_time()
    step()
    return time.thread_time() - started


Keyed = list[tuple[str, BaseModel]]


def records() -> dict[str, Keyed]:
    """Each kind's records with their keys, as the services publish them."""
    recipients = [invoice.recipient(i) for i in range(COUNT)]
    compiled, now = invoice.compiled_run(), utc_now()
    messages = [
        m for m in (render(compiled, r, now) for r in recipients) if isinstance(m, MessageRendered)
    ]
    assert len(messages) == COUNT
    failed = [
        DeliveryFailed(**m.ref(), reason="unknown_outcome", detail="lost after DATA")
        for m in messages
    ]
    return {
        "message.rendered": [(str(m.recipient_id), m) for m in messages],
        "recipient.targeted": [(str(r.recipient_id), r) for r in recipients],
        "delivery.failed": [(str(f.recipient_id), f) for f in failed],
    }


class _Acknowledged:
    """aiokafka's producer with the broker answering at once: only the layers above it cost."""

    async def start(self) -> None:
        pass

    async def send(self, topic: str, value: Any = None, key: Any = None, **_: Any) -> Any:
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def publishing(keyed: Keyed, repeats: int) -> dict[str, float]:
    registry = CollectorRegistry()
    broker = make_broker(ServiceSettings(), service="bench", registry=registry)
    fast = broker._producer
    assert isinstance(fast, AioKafkaFastProducerImpl)
    publisher = broker.publisher("bench")
    lane = FastLane(broker, "bench", publisher, registry=registry, service="bench")
    loop = asyncio.new_event_loop()
    # As the broker's start does, with the stub in place of aiokafka's producer.
    loop.run_until_complete(
        fast.connect(_Acknowledged(), serializer=broker.config.fd_config._serializer)
    )

    async def through_faststream() -> None:
        pending = [await publisher.publish(m, key=k.encode(), no_confirm=True) for k, m in keyed]
        await asyncio.gather(*pending)

    def run(step: Callable[[], Any]) -> Callable[[], object]:
        return lambda: loop.run_until_complete(step())

    try:
        return {
            "faststream_publish": best_us(run(through_faststream), len(keyed), repeats),
            "fast_lane": best_us(run(lambda: lane.publish_keyed(keyed)), len(keyed), repeats),
        }
    finally:
        loop.close()


def decoding(keyed: Keyed, repeats: int) -> dict[str, float]:
    values = [m.model_dump_json().encode() for _, m in keyed]
    kind = type(keyed[0][1])
    one: TypeAdapter[Any] = TypeAdapter(kind)
    many: TypeAdapter[Any] = TypeAdapter(list[kind])  # type: ignore[valid-type]
    figures = {
        "validate_per_record": best_us(
            lambda: [one.validate_json(v) for v in values], len(values), repeats
        ),
        "validate_whole_batch": best_us(
            lambda: many.validate_json(b"[" + b",".join(values) + b"]"), len(values), repeats
        ),
        "type_by_json_loads": best_us(
            lambda: [_type_by_json_module(v) for v in values], len(values), repeats
        ),
        "type_by_one_field_model": best_us(
            lambda: [_type_of(v) for v in values], len(values), repeats
        ),
    }
    return {"bytes_per_record": sum(map(len, values)) // len(values), **figures}


def producer_batches(records: list[tuple[bytes, bytes]], codec: int, size: int) -> list[bytes]:
    """What aiokafka's accumulator builds: batches filled up to `size` bytes (uncompressed),
    each compressed as a whole when built."""
    batches = []
    builder = DefaultRecordBatchBuilder(2, codec, 0, 1, 0, 0, size)
    offset = 0
    for key, value in records:
        if builder.append(offset, None, key, value, headers=[]) is None:
            batches.append(bytes(builder.build()))
            builder = DefaultRecordBatchBuilder(2, codec, 0, 1, 0, 0, size)
            offset = 0
            builder.append(offset, None, key, value, headers=[])
        offset += 1
    batches.append(bytes(builder.build()))
    return batches


def read_back(batches: list[bytes]) -> None:
    for batch in batches:
        for _ in DefaultRecordBatch(batch):
            pass


def compression(keyed: Keyed, repeats: int) -> dict[str, dict[str, float]]:
    records = [(key.encode(), model.model_dump_json().encode()) for key, model in keyed]
    raw = sum(len(k) + len(v) for k, v in records)
    figures: dict[str, dict[str, float]] = {}
    for codec, code in CODECS.items():
        for kib in (256, 1024):
            batches = producer_batches(records, code, kib * 1024)
            wire = sum(len(b) for b in batches)
            figures[f"{codec}@{kib}KiB"] = {
                "produce_us": best_us(
                    partial(producer_batches, records, code, kib * 1024), len(records), repeats
                ),
                "consume_us": best_us(partial(read_back, batches), len(records), repeats),
                "bytes_per_message": round(wire / len(records)),
                "ratio": round(raw / wire, 2),
                "batches": len(batches),
            }
    return figures


def targeting(repeats: int) -> float:
    rows = []
    for values in contract_rows("bench", COUNT):
        row = dict(zip(CONTRACT_COLUMNS, values, strict=True))
        for column in ("emails", "phones", "attributes"):
            row[column] = json.loads(str(row[column]))
        rows.append(row | {"details": {}})
    scope = RunScope("bench", uuid4(), uuid4(), ["email"])
    return best_us(
        lambda: [(r.key, r.value) for r in expand(scope, rows, utc_now()).recipients],
        len(rows),
        repeats,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    samples = records()
    report = {
        "publish_us_per_record": {
            name: publishing(keyed, args.repeats) for name, keyed in samples.items()
        },
        "decode_us_per_record": {
            name: decoding(keyed, args.repeats) for name, keyed in samples.items()
        },
        "targeting_expand_us_per_recipient": targeting(args.repeats),
        "broadcast.messages_compression": compression(samples["message.rendered"], args.repeats),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
