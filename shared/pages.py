"""Writing `RunPage` records from their entries' own JSON, without building the page model.

The hot loops already hold each entry as the bytes of its model's `model_dump_json()`; a page
is those bytes spliced into the page's own fields, as pydantic would write them
(`tests/unit/test_pages.py` compares). The page's event id is random, as the model's default
makes it; its entries keep their own ids.
"""

from collections.abc import Iterator, Sequence
from datetime import datetime
from uuid import UUID

from pydantic_core import to_json

from shared.events import PAGE_ENTRIES, MessageRef, RunPage
from shared.ids import random_ids

# (key, value): a Kafka record, or one entry of a page as it would be alone.
Keyed = tuple[bytes, bytes]

# The entries' bytes in one page, at most: uncompressed, so that even a page that does not
# compress stays far below the broker's 1 MB per record batch.
PAGE_BYTES = 256 * 1024


def pages(
    page: type[RunPage],
    tenant_id: str,
    run_id: UUID,
    now: datetime,
    entries: Sequence[Keyed],
) -> Iterator[Keyed]:
    """`entries` of one run, in order, as `page` records of at most `PAGE_ENTRIES` entries and
    `PAGE_BYTES` of them (an entry larger than that goes alone, as it would have). Each page
    is keyed by its first entry's key."""
    # The page's type and the field of its entries, from the model: they cannot drift apart.
    kind = page.model_fields["type"].default
    (field,) = page.model_fields.keys() - RunPage.model_fields.keys() - {"type"}
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
    page: type[RunPage], now: datetime, entries: Sequence[MessageRef]
) -> Iterator[Keyed]:
    """Per-message `entries` of any runs (a batch's), as pages of one run each, every entry
    keyed by its recipient id and written as its `model_dump_json()`."""
    by_run: dict[UUID, list[MessageRef]] = {}
    for entry in entries:
        by_run.setdefault(entry.run_id, []).append(entry)
    for run_id, of_run in by_run.items():
        yield from pages(
            page,
            of_run[0].tenant_id,
            run_id,
            now,
            [(str(e.recipient_id).encode(), to_json(e)) for e in of_run],
        )
