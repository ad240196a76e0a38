"""Pages of one run's records (shared/pages.py): the page model's own JSON, every entry once, in
order, and never a page the broker could refuse."""

import json
from datetime import UTC, datetime
from uuid import UUID, uuid4

from pydantic_core import to_json

from shared.events import PAGE_ENTRIES, MessageRendered, MessagesRendered, unpaged
from shared.pages import PAGE_BYTES, pages, pages_by_run
from tests.unit.rendered import rendered

NOW = datetime(2026, 12, 3, 18, 0, 0, 123456, tzinfo=UTC)


def message(run_id: UUID, tenant_id: str = "t", body: str = "Bonjour") -> MessageRendered:
    return rendered("email", "a@x.example", body, run_id=run_id, tenant_id=tenant_id)


def test_a_batch_of_two_runs_is_pages_of_one_run_each_written_as_the_model_would() -> None:
    first, second = uuid4(), uuid4()
    batch = [message(first) for _ in range(40)] + [message(second, 'tenant "é"')] * 3
    records = list(pages_by_run(MessagesRendered, NOW, batch))
    decoded = [MessagesRendered.model_validate_json(value) for _, value in records]
    assert [(p.run_id, len(p.messages)) for p in decoded] == [(first, 32), (first, 8), (second, 3)]
    assert [m for p in decoded for m in p.messages] == batch
    for (key, value), page in zip(records, decoded, strict=True):
        assert key == str(page.messages[0].recipient_id).encode()
        assert value == page.model_dump_json().encode()
    assert len({p.event_id for p in decoded}) == 3


def test_pages_stay_under_their_byte_bound_and_a_larger_entry_goes_alone() -> None:
    run = uuid4()
    third = "x" * (PAGE_BYTES // 3)
    batch = [message(run, body=third) for _ in range(5)] + [message(run, body="y" * PAGE_BYTES)]
    batch.append(message(run))
    records = list(pages_by_run(MessagesRendered, NOW, batch))
    sizes = [len(json.loads(value)["messages"]) for _, value in records]
    assert sizes == [2, 2, 1, 1, 1]
    assert max(len(value) for _, value in records[:2]) < PAGE_BYTES + 2_000


def test_entries_of_one_page_at_most() -> None:
    entries = [(str(i).encode(), to_json({"n": i})) for i in range(PAGE_ENTRIES + 1)]
    records = list(pages(MessagesRendered, "t", uuid4(), NOW, entries))
    assert [len(json.loads(v)["messages"]) for _, v in records] == [PAGE_ENTRIES, 1]
    assert [k for k, _ in records] == [b"0", str(PAGE_ENTRIES).encode()]
    assert list(pages(MessagesRendered, "t", uuid4(), NOW, [])) == []


def test_a_consumer_gets_every_entry_in_order_whether_alone_or_in_a_page() -> None:
    run = uuid4()
    batch = [message(run) for _ in range(5)]
    page = MessagesRendered(tenant_id="t", run_id=run, messages=batch[1:4])
    assert unpaged([batch[0], page, batch[4]]) == batch
