"""Writing `RunPage` records from their entries' own JSON, without building the page model.

The hot loops already hold each entry as the bytes of its model's `model_dump_json()`; a page
is those bytes spliced into the page's own fields, as pydantic would write them
(`tests/unit/test_pages.py` compares). The page's event id is random, as the model's default
makes it; its entries keep their own ids.
"""

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic_core import to_json

from shared.events import (
    PAGE_ENTRIES,
    DeliveriesRecorded,
    MessageRef,
    MessagesRendered,
    RecipientsTargeted,
    RunPage,
)
from shared.ids import random_ids

# (key, value): a Kafka record, or one entry of a page as it would be alone.
Keyed = tuple[bytes, bytes]

# The field holding a page's entries, by its type.
ENTRIES_OF = {
    page.model_fields["type"].default: name
    for page in (RecipientsTargeted, MessagesRendered, DeliveriesRecorded)
    for name in page.model_fields.keys() - RunPage.model_fields.keys() - {"type"}
}

# The entries' bytes in one page, at most: uncompressed, so that even a page that does not
# compress stays far below the broker's 1 MB per record batch.
PAGE_BYTES = 256 * 1024


def pages(
    kind: str,
    field: str,
    tenant_id: str,
    run_id: UUID,
    now: datetime,
    entries: Sequence[Keyed],
) -> Iterator[Keyed]:
    """`entries` of one run, in order, as `kind` pages of at most `PAGE_ENTRIES` entries and
    `PAGE_BYTES` of them (an entry larger than that goes alone, as it would have). Each page
    is keyed by its first entry's key."""
    event_ids = random_ids()
    head = b'{"schema_version":1,"event_id":"'
    run = b"".join(
        (
            b'","occurred_at":',
            to_json(now),
            b',"tenant_id":',
            to_json(tenant_id),
            b',"run_id":"',
            str(run_id).encode(),
            b'","type":',
            to_json(kind),
            b',"',
            field.encode(),
            b'":[',
        )
    )
    start = 0
    while start < len(entries):
        end, size = start + 1, len(entries[start][1])
        while (
            end < len(entries)
            and end - start < PAGE_ENTRIES
            and size + len(entries[end][1]) <= PAGE_BYTES
        ):
            size += len(entries[end][1])
            end += 1
        body = b",".join(value for _, value in entries[start:end])
        yield entries[start][0], b"".join((head, next(event_ids).encode(), run, body, b"]}"))
        start = end


def pages_by_run(
    kind: str, field: str, now: datetime, entries: Sequence[MessageRef]
) -> Iterator[Keyed]:
    """Per-message `entries` of any runs (a batch's), as pages of one run each, every entry
    keyed by its recipient id and written as its `model_dump_json()`."""
    for _, key, value in pages_by_partition(kind, field, now, entries, lambda _key: 0):
        yield key, value


def pages_by_partition(
    kind: str,
    field: str,
    now: datetime,
    entries: Sequence[MessageRef],
    partition_of: Callable[[bytes], int],
) -> Iterator[tuple[int, bytes, bytes]]:
    """As `pages_by_run`, each page also of one partition, the one `partition_of` gives its
    entries' keys, returned with it: every entry lands where it would alone, so a message's
    records stay in one partition, in order."""
    groups: dict[tuple[int, UUID], list[Keyed]] = {}
    tenants: dict[UUID, str] = {}
    for entry in entries:
        key = str(entry.recipient_id).encode()
        tenants[entry.run_id] = entry.tenant_id
        groups.setdefault((partition_of(key), entry.run_id), []).append((key, to_json(entry)))
    for (partition, run_id), keyed in groups.items():
        for key, value in pages(kind, field, tenants[run_id], run_id, now, keyed):
            yield partition, key, value


def opened(record: dict[str, Any]) -> list[dict[str, Any]]:
    """A decoded JSON record as its readers count: a page's entries, or the record itself."""
    field = ENTRIES_OF.get(record.get("type"))
    entries = record.get(field) if field else None
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else [record]
