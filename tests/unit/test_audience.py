import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest
from pydantic import ValidationError

from services.targeting.audience import (
    RunScope,
    expand,
    in_records,
    snapshot,
    usable_addresses,
)
from shared.events import PAGE_ENTRIES, RecipientsTargeted, RecipientTargeted
from shared.ids import recipient_id_for

NOW = datetime(2026, 12, 2, 16, 30, 5, 123456, tzinfo=UTC)


def row(
    contract_id: str, emails: list[dict[str, Any]], phones: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "contract_id": contract_id,
        "number": contract_id,
        "status": "active",
        "building_type": "residential",
        "zone": "",
        "season": "",
        "client_name": "C",
        "service_address": "",
        "language": "fr",
        "balance": Decimal("1.00"),
        "amount_paid": Decimal("0"),
        "attributes": {},
        "details": {},
        "emails": emails,
        "phones": phones or [],
    }


def test_opted_out_and_repeated_addresses_are_skipped() -> None:
    points: list[dict[str, Any]] = [
        {"address": "A@x.example"},
        {"address": "a@x.example"},
        {"address": "b@x.example", "opted_out": True},
        {"address": " "},
    ]
    assert usable_addresses(points) == ["A@x.example"]


def test_one_recipient_per_usable_address_and_channel() -> None:
    run_id = uuid4()
    scope = RunScope("t", uuid4(), run_id, ["email", "sms"])
    result = expand(
        scope,
        [
            row(
                "C1",
                [{"address": "a@x.example"}, {"address": "b@x.example"}],
                [{"address": "+15145550000"}],
            ),
            row("C2", [{"address": "c@x.example", "opted_out": True}]),
        ],
        NOW,
    )
    assert [(r.contract_id, r.channel, r.address) for r in result.recipients] == [
        ("C1", "email", "a@x.example"),
        ("C1", "email", "b@x.example"),
        ("C1", "sms", "+15145550000"),
    ]
    assert (result.contracts, result.unreachable_contracts) == (2, 1)
    assert (
        result.recipients[0].key
        == str(recipient_id_for(run_id, "C1", "email", "A@X.example")).encode()
    )


def test_recipient_ids_are_stable_across_expansions() -> None:
    scope = RunScope("t", uuid4(), uuid4(), ["email"])
    rows = [row("C1", [{"address": "a@x.example"}])]
    assert expand(scope, rows, NOW).recipients[0].key == expand(scope, rows, NOW).recipients[0].key


def test_estimate_counts_what_expand_would_send() -> None:
    from services.targeting.audience import Estimate

    rows = [
        row(
            "C1",
            [{"address": "a@x.example"}, {"address": "b@x.example"}],
            [{"address": "+15145550000"}],
        ),
        row("C2", [{"address": "c@x.example", "opted_out": True}]),
        row("C3", []),
    ]
    estimate = Estimate(messages={"email": 0}, opted_out_addresses={"email": 0})
    estimate.add(["email"], rows)
    assert (estimate.contracts, estimate.unreachable_contracts) == (3, 2)
    assert estimate.messages == {"email": 2}
    assert estimate.opted_out_addresses == {"email": 1}
    scope = RunScope("t", uuid4(), uuid4(), ["email"])
    assert len(expand(scope, rows, NOW).recipients) == estimate.messages["email"]


def test_a_contract_without_a_usable_address_is_one_no_contact_failure() -> None:
    run_id = uuid4()
    scope = RunScope("t", uuid4(), run_id, ["email", "sms"])
    rows = [
        row("C1", [{"address": "a@x.example"}]),
        row("C2", [{"address": "b@x.example", "opted_out": True}]),
        row("C3", []),
    ]
    result = expand(scope, rows, NOW)
    assert [r.contract_id for r in result.recipients] == ["C1"]
    assert [
        (f.contract_id, f.channel, f.address, f.reason, f.run_id) for f in result.no_contact
    ] == [
        ("C2", "email", "", "no_contact", run_id),
        ("C3", "email", "", "no_contact", run_id),
    ]
    # Each counts as one message of the run, with an id stable across a page published twice.
    assert (result.contracts, result.unreachable_contracts, result.messages) == (3, 2, 3)
    again = expand(scope, rows, NOW).no_contact
    assert [f.recipient_id for f in again] == [f.recipient_id for f in result.no_contact]
    assert [f.event_id for f in again] == [f.event_id for f in result.no_contact]
    assert result.no_contact[0].recipient_id == recipient_id_for(run_id, "C2", "email", "")


def test_a_resend_to_the_failures_sends_to_a_no_contact_contract_once_it_has_an_address() -> None:
    scope = RunScope("t", uuid4(), uuid4(), ["email"])
    rows = [
        row("C1", [{"address": "a@x.example"}, {"address": "b@x.example"}]),
        row("C2", [{"address": "new@x.example"}, {"address": "other@x.example"}]),
        row("C3", []),
        row("C4", [{"address": "d@x.example"}]),
    ]
    keep = {("C1", "email", "b@x.example"), ("C2", "email", ""), ("C3", "email", "")}
    resent = expand(scope, rows, NOW).only(keep, {"C2", "C3"})
    assert [(r.contract_id, r.address) for r in resent.recipients] == [
        ("C1", "b@x.example"),
        ("C2", "new@x.example"),
        ("C2", "other@x.example"),
    ]
    # C3 still has no address: left out, not failed again.
    assert (resent.contracts, resent.no_contact, resent.messages) == (2, [], 3)


def varied_rows() -> list[dict[str, Any]]:
    """Rows with what JSON must escape or encode: accents, quotes, backslashes, control
    characters, line separators, several addresses, details with a date, attributes."""
    strange = 'Élise "Lili" O\'Brien \\ tab\t nl\n nul\x00 esc\x1b del\x7f ls\u2028 🦆'
    first = row(
        "C-1é",
        [{"address": "élise@exemple.québec"}, {"address": 'a"b@x.example'}],
        [{"address": "+1 514 555 0000"}],
    )
    first.update(
        client_name=strange,
        service_address="12 rue des Érables\nQuébec",
        language="en",
        balance=Decimal("-1234.50"),
        amount_paid=Decimal("0.00"),
        attributes={"clé": strange, "b": ""},
        details={"visit_at": "2026-05-01T10:00:00-04:00", "driver_name": "Zoé", "spreading": None},
    )
    second = row("C2", [{"address": "c@x.example"}], [{"address": "+15145550001"}])
    second.update(details={"visit_at": "2026-05-01T14:00:00Z"}, balance=Decimal("1E+2"))
    return [first, second]


def test_each_record_is_the_json_of_its_model_byte_for_byte() -> None:
    scope = RunScope('tenant "q" é', uuid4(), uuid4(), ["email", "sms"])
    rows = varied_rows()
    page = expand(scope, rows, NOW)
    assert len(page.recipients) == 5
    by_contract = {r["contract_id"]: r for r in rows}
    for targeted in page.recipients:
        event_id = UUID(json.loads(targeted.value)["event_id"])
        model = RecipientTargeted(
            event_id=event_id,
            occurred_at=NOW,
            tenant_id=scope.tenant_id,
            broadcast_id=scope.broadcast_id,
            run_id=scope.run_id,
            recipient_id=recipient_id_for(
                scope.run_id, targeted.contract_id, targeted.channel, targeted.address
            ),
            channel=targeted.channel,
            address=targeted.address,
            contract=snapshot(by_contract[targeted.contract_id]),
        )
        assert targeted.value == model.model_dump_json().encode()
        assert targeted.key == str(model.recipient_id).encode()
        assert RecipientTargeted.model_validate_json(targeted.value) == model


def test_every_record_has_its_own_event_id_and_the_page_one_time() -> None:
    scope = RunScope("t", uuid4(), uuid4(), ["email", "sms"])
    values = [json.loads(r.value) for r in expand(scope, varied_rows(), NOW).recipients]
    assert len({v["event_id"] for v in values}) == len(values)
    assert {v["occurred_at"] for v in values} == {"2026-12-02T16:30:05.123456Z"}


def test_pages_are_the_json_of_their_model_byte_for_byte_and_hold_every_recipient() -> None:
    scope = RunScope('tenant "q" é', uuid4(), uuid4(), ["email", "sms"])
    recipients = expand(scope, varied_rows() * 15, NOW).recipients
    assert len(recipients) == 75
    alone = [RecipientTargeted.model_validate_json(r.value) for r in recipients]
    records = list(in_records(scope, NOW, recipients))
    assert [len(json.loads(v)["recipients"]) for _, v in records] == [32, 32, 11]
    for n, (key, value) in enumerate(records):
        start = n * PAGE_ENTRIES
        model = RecipientsTargeted(
            event_id=json.loads(value)["event_id"],
            occurred_at=NOW,
            tenant_id=scope.tenant_id,
            run_id=scope.run_id,
            recipients=alone[start : start + PAGE_ENTRIES],
        )
        assert value == model.model_dump_json().encode()
        assert RecipientsTargeted.model_validate_json(value) == model
        assert key == recipients[start].key
    assert len({json.loads(v)["event_id"] for _, v in records}) == 3
    assert list(in_records(scope, NOW, [])) == []


def test_a_page_of_another_run_or_too_many_recipients_is_refused() -> None:
    scope = RunScope("t", uuid4(), uuid4(), ["email"])
    recipients = [
        RecipientTargeted.model_validate_json(r.value)
        for r in expand(scope, varied_rows() * 20, NOW).recipients
    ]
    with pytest.raises(ValidationError, match="2 entries not of the page's run and tenant"):
        RecipientsTargeted(tenant_id="t", run_id=uuid4(), recipients=recipients[:2])
    with pytest.raises(ValidationError, match="2 entries not of the page's run and tenant"):
        RecipientsTargeted(tenant_id="other", run_id=scope.run_id, recipients=recipients[:2])
    with pytest.raises(ValidationError, match="recipients"):
        RecipientsTargeted(tenant_id="t", run_id=scope.run_id, recipients=recipients[:33])
    with pytest.raises(ValidationError, match="recipients"):
        RecipientsTargeted(tenant_id="t", run_id=scope.run_id, recipients=[])
