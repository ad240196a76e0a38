from decimal import Decimal
from typing import Any
from uuid import uuid4

from services.targeting.audience import RunScope, expand, usable_addresses
from shared.ids import recipient_id_for


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
    )
    assert [(r.contract.contract_id, r.channel, r.address) for r in result.recipients] == [
        ("C1", "email", "a@x.example"),
        ("C1", "email", "b@x.example"),
        ("C1", "sms", "+15145550000"),
    ]
    assert (result.contracts, result.unreachable_contracts) == (2, 1)
    assert result.recipients[0].recipient_id == recipient_id_for(
        run_id, "C1", "email", "A@X.example"
    )


def test_recipient_ids_are_stable_across_expansions() -> None:
    scope = RunScope("t", uuid4(), uuid4(), ["email"])
    rows = [row("C1", [{"address": "a@x.example"}])]
    assert (
        expand(scope, rows).recipients[0].recipient_id
        == expand(scope, rows).recipients[0].recipient_id
    )


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
    assert len(expand(scope, rows).recipients) == estimate.messages["email"]
