"""Values at the moment of sending, the pure parts: when the dispatcher asks for a new
rendition, and what targeting answers with."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import uuid4

from services.dispatcher.refresh import Freshness, must_refresh, refresh_request
from services.targeting.audience import rendered_again
from shared.events import MessageRendered, RecipientTargeted, RefreshDeclined, RefreshRequested
from tests.unit.test_audience import row

RENDERED = datetime(2026, 12, 4, 17, 0, tzinfo=UTC)  # a Friday evening
FRESHNESS = Freshness(
    after=timedelta(minutes=5), ask_again=timedelta(seconds=30), give_up=timedelta(hours=1)
)


def message(*, preview: bool = False, rendition: int = 0) -> MessageRendered:
    return MessageRendered(
        occurred_at=RENDERED,
        tenant_id="t",
        broadcast_id=uuid4(),
        run_id=uuid4(),
        recipient_id=uuid4(),
        contract_id="C1",
        channel="email",
        address="a@x.example",
        sender="avis@x.example",
        body="Subject: Solde 125,50 $\r\n\r\n",
        preview=preview,
        rendition=rendition,
    )


def test_a_message_that_waited_past_the_setting_is_rendered_again() -> None:
    waited = message()
    assert not must_refresh(waited, RENDERED + timedelta(minutes=5), FRESHNESS)
    assert must_refresh(waited, RENDERED + timedelta(minutes=5, seconds=1), FRESHNESS)
    # The weekend: Monday morning.
    assert must_refresh(waited, RENDERED + timedelta(days=2, hours=15), FRESHNESS)


def test_a_new_rendition_is_fresh_again_and_a_preview_never_refreshes() -> None:
    assert not must_refresh(message(rendition=1), RENDERED + timedelta(seconds=1), FRESHNESS)
    assert not must_refresh(message(preview=True), RENDERED + timedelta(days=3), FRESHNESS)


def test_asking_again_for_the_same_rendition_is_the_same_event() -> None:
    waited = message()
    first, again, next_one = (
        refresh_request(waited, 1),
        refresh_request(waited, 1),
        refresh_request(waited, 2),
    )
    assert first.event_id == again.event_id != next_one.event_id
    assert (first.recipient_id, first.address, first.rendition) == (
        waited.recipient_id,
        waited.address,
        1,
    )


def request(address: str = "a@x.example", rendition: int = 1) -> RefreshRequested:
    return refresh_request(message().model_copy(update={"address": address}), rendition)


def test_the_contract_as_it_stands_now_is_rendered_with_the_same_recipient_id() -> None:
    now = row("C1", [{"address": "A@X.example"}]) | {"balance": Decimal("987.65")}
    asked = request()
    answer = rendered_again(asked, now, address_given=False)
    assert isinstance(answer, RecipientTargeted)
    assert (answer.recipient_id, answer.address, answer.rendition) == (
        asked.recipient_id,
        "a@x.example",
        1,
    )
    assert answer.contract.balance == Decimal("987.65")
    # Republished after a crash: the same event, so that a copy is recognised.
    assert rendered_again(asked, now, address_given=False).event_id == answer.event_id


def test_a_contract_deleted_or_no_longer_reachable_there_is_declined() -> None:
    deleted = rendered_again(request(), None, address_given=False)
    assert isinstance(deleted, RefreshDeclined) and "deleted" in deleted.detail
    for points in (
        [{"address": "other@x.example"}],
        [{"address": "a@x.example", "opted_out": True}],
    ):
        gone = rendered_again(request(), row("C1", points), address_given=False)
        assert isinstance(gone, RefreshDeclined) and gone.rendition == 1
        assert "a@x.example" in gone.detail


def test_a_follow_up_keeps_the_address_a_person_gave() -> None:
    answer = rendered_again(
        request("corrected@x.example"),
        row("C1", [{"address": "old@x.example"}]),
        address_given=True,
    )
    assert isinstance(answer, RecipientTargeted) and answer.address == "corrected@x.example"
    assert isinstance(
        rendered_again(request("corrected@x.example"), None, address_given=True), RefreshDeclined
    )


def test_a_new_rendition_the_composer_cannot_render_is_declined_to_the_dispatcher() -> None:
    """Only the dispatcher, which holds the waiting message, may settle it: a failed first
    rendition is the tracker's failure, a failed later one a refresh declined with its reason
    (else the tracker would count a failure the dispatcher could still send)."""
    from services.composer.render import compile_run, render
    from shared.events import DeliveryFailed
    from tests.unit.test_render import KEYS, NOW, recipient, run

    started = run({"email": {"fr": {"subject": "Solde", "html": "{{ 1/0 }}"}}}, languages=["fr"])
    compiled = compile_run(started, KEYS, None)
    first = recipient(started)
    assert isinstance(render(compiled, first, NOW), DeliveryFailed)
    again = render(compiled, first.model_copy(update={"rendition": 2}), NOW)
    assert isinstance(again, RefreshDeclined), again
    assert (again.reason, again.rendition) == ("render_failed", 2)
    assert again.recipient_id == first.recipient_id
