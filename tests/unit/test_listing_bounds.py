"""A listing answer must fit one Kafka record (1 MB): the largest page of the message log, with
the longest values its fields accept, in accented text."""

from datetime import UTC, datetime
from uuid import uuid4

from services.tracker.commands import DETAIL_CUT
from shared.events import ListMessages, MessageEntry, MessagesListed

KAFKA_RECORD = 1_048_576


def test_the_largest_message_log_page_fits_one_record() -> None:
    limit = ListMessages.model_fields["limit"].metadata
    largest = max(m.le for m in limit if hasattr(m, "le"))
    entry = MessageEntry(
        recipient_id=uuid4(),
        contract_id="é" * 128,
        channel="email",
        address="é" * 254,
        state="failed",
        state_label="échoué",
        reason="provider_refused",
        detail="é" * DETAIL_CUT,
        updated_at=datetime.now(UTC),
        due_at=datetime.now(UTC),
    )
    answer = MessagesListed(
        tenant_id="t" * 64,
        request_id="r" * 128,
        broadcast_id=uuid4(),
        run_id=uuid4(),
        messages=[entry] * largest,
        next_cursor="c" * 200,
    )
    assert len(answer.model_dump_json().encode()) < 0.9 * KAFKA_RECORD
