"""The queries' contract and targeting's catalogue answers (pure: no database)."""

from typing import Any

import pytest
from pydantic import ValidationError

from services.targeting.broadcasts import Rejection
from services.targeting.queries import describe_criteria, list_variables
from shared.events import (
    COMMAND_ADAPTER,
    TRACKER_COMMAND_ADAPTER,
    TRACKER_COMMAND_TYPES,
    DescribeCriteria,
    ListVariables,
)
from shared.kafka import field_errors
from shared.variables import CATALOGUE

IDS = {"tenant_id": "acme", "request_id": "r", "requested_by": "u"}
BROADCAST = "8d0f6a8e-1111-4a4a-9b9b-000000000001"


@pytest.mark.parametrize(
    ("query", "adapter_for_tracker", "bound"),
    [
        ({"type": "list_broadcasts"}, False, 200),
        ({"type": "get_broadcast", "broadcast_id": BROADCAST}, False, 100),
        ({"type": "list_messages", "broadcast_id": BROADCAST}, True, 500),
        ({"type": "list_variables"}, False, 100),
        ({"type": "describe_criteria"}, False, 100),
    ],
)
def test_every_query_is_bounded_and_a_larger_page_is_refused_naming_limit(
    query: dict[str, Any], adapter_for_tracker: bool, bound: int
) -> None:
    adapter = TRACKER_COMMAND_ADAPTER if adapter_for_tracker else COMMAND_ADAPTER
    assert (query["type"] in TRACKER_COMMAND_TYPES) is adapter_for_tracker
    assert adapter.validate_python({**IDS, **query, "limit": bound}).limit == bound  # type: ignore[union-attr]
    with pytest.raises(ValidationError) as refused:
        adapter.validate_python({**IDS, **query, "limit": bound + 1})
    assert field_errors(refused.value, skip=query["type"])[0][0] == "limit"
    with pytest.raises(ValidationError) as refused:
        adapter.validate_python({**IDS, **query, "language": "de"})
    assert field_errors(refused.value, skip=query["type"])[0][0] == "language"


def test_the_variables_page_by_page_with_both_labels() -> None:
    first = list_variables(ListVariables(**IDS, limit=20))
    assert first.variables[1].model_dump() == {
        "code": "contract.number",
        "label": "Contrat (No)",
        "label_fr": "Contrat (No)",
        "label_en": "Contract number",
        "kind": "text",
    }
    assert first.next_cursor is not None
    rest = list_variables(ListVariables(**IDS, limit=20, cursor=first.next_cursor, language="en"))
    assert rest.next_cursor is None
    assert [v.code for v in first.variables + rest.variables] == [v.name for v in CATALOGUE]
    assert rest.variables[0].label == rest.variables[0].label_en


def test_the_criteria_with_the_seeds_labels() -> None:
    described = describe_criteria(DescribeCriteria(**IDS, limit=100))
    fields = {c.code: c for c in described.criteria}
    assert fields["status"].label == "Statut"
    assert fields["status"].values is not None
    assert {v.code: v.label for v in fields["status"].values}["to_renew"] == "À renouveler"
    assert fields["building_type"].label_fr == "Immeubles"
    assert fields["zone"].values is None  # free-form
    assert described.next_cursor is None


def test_a_cursor_of_another_query_is_refused_naming_cursor() -> None:
    with pytest.raises(Rejection) as refused:
        list_variables(ListVariables(**IDS, limit=5, cursor="bm90IG91cnM"))
    assert (refused.value.code, refused.value.field) == ("invalid_field", "cursor")
