"""The store numbers every parameter of the audience query itself: the criteria's come after
the query's own, whatever the criteria."""

import re

import pytest

from services.targeting.criteria import compile_criteria
from services.targeting.store import audience_query
from shared.events import Criterion


def placeholders(sql: str) -> list[int]:
    return [int(n) for n in re.findall(r"\$(\d+)", sql)]


@pytest.mark.parametrize(
    "criteria",
    [
        [],
        [Criterion(field="zone", values=["A"])],
        [
            Criterion(field="status", values=["to_renew", "active"]),
            Criterion(field="building_type", values=["residential"]),
            Criterion(field="client_name", values=["Tremblay"]),
        ],
    ],
    ids=["none", "one", "three"],
)
def test_every_parameter_is_numbered_once_in_the_order_given(criteria: list[Criterion]) -> None:
    where = compile_criteria(criteria)
    sql, params = audience_query("acme", where, 41, 500)
    assert sorted(set(placeholders(sql))) == list(range(1, len(params) + 1))
    assert params == ("acme", 41, 500, *where.params)


def test_the_criteria_follow_the_tenant_the_cursor_and_the_page_size() -> None:
    where = compile_criteria(
        [
            Criterion(field="status", values=["active"]),
            Criterion(field="client_name", values=["Tremblay"]),
        ]
    )
    sql, params = audience_query("acme", where, 0, 10)
    assert "tenant_id = $1" in sql and "pk > $2" in sql and "LIMIT $3" in sql
    assert "(status = ANY($4::text[]) AND client_name ILIKE ANY($5::text[]))" in sql
    assert params[3:] == (["active"], ["%Tremblay%"])


def test_no_criterion_matches_every_contract_of_the_tenant() -> None:
    sql, params = audience_query("acme", compile_criteria([]), 0, 10)
    assert "AND (TRUE)" in sql
    assert params == ("acme", 0, 10)
