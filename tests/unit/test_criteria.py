import pytest

from services.targeting.criteria import InvalidCriteria, compile_criteria
from shared.events import Criterion


def test_seed_example_ors_values_and_ands_fields() -> None:
    compiled = compile_criteria(
        [
            Criterion(field="status", values=["to_renew", "active"]),
            Criterion(field="building_type", values=["residential"]),
        ]
    )
    assert (
        compiled.numbered_from(4) == "status = ANY($4::text[]) AND building_type = ANY($5::text[])"
    )
    assert compiled.params == (["active", "to_renew"], ["residential"])


def test_no_criterion_selects_every_contract() -> None:
    compiled = compile_criteria([])
    assert (compiled.numbered_from(1), compiled.params) == ("TRUE", ())


def test_unknown_field_is_refused_with_its_position() -> None:
    with pytest.raises(InvalidCriteria) as caught:
        compile_criteria(
            [
                Criterion(field="status", values=["active"]),
                Criterion(field="colour", values=["red"]),
            ],
        )
    assert caught.value.code == "unknown_criterion"
    assert caught.value.field == "criteria[1].field"
    assert caught.value.message == (
        "unknown criterion field 'colour'; known fields: building_type, client_name, "
        "contract_id, language, season, status, zone"
    )
    assert str(caught.value) == caught.value.message


def test_unknown_value_of_a_closed_field_is_refused() -> None:
    with pytest.raises(InvalidCriteria) as caught:
        compile_criteria([Criterion(field="building_type", values=["residential", "castle"])])
    assert (caught.value.code, caught.value.field) == ("unknown_value", "criteria[0].values[1]")
    assert caught.value.message == (
        "unknown value 'castle' for 'building_type'; "
        "allowed: commercial, industrial, institutional, residential"
    )


def test_a_field_given_twice_is_refused() -> None:
    with pytest.raises(InvalidCriteria) as caught:
        compile_criteria(
            [Criterion(field="zone", values=["A"]), Criterion(field="zone", values=["B"])]
        )
    assert (caught.value.code, caught.value.field) == ("invalid_field", "criteria[1].field")
    assert "'zone' is given twice" in caught.value.message


@pytest.mark.parametrize("field", ["zone", "season", "contract_id"])
def test_free_form_fields_bind_any_value_as_a_parameter(field: str) -> None:
    hostile = "x'); DROP TABLE targeting.contracts; --"
    compiled = compile_criteria(
        [Criterion(field=field, values=[hostile])],
    )
    assert hostile not in compiled.numbered_from(2)
    assert compiled.params == ([hostile],)


def test_language_is_a_closed_field() -> None:
    assert compile_criteria([Criterion(field="language", values=["en"])]).params == (["en"],)
    with pytest.raises(InvalidCriteria):
        compile_criteria([Criterion(field="language", values=["de"])])


def test_name_keywords_match_anywhere_case_insensitively_and_literally() -> None:
    compiled = compile_criteria([Criterion(field="client_name", values=["Tremblay", "50%_off\\"])])
    assert compiled.numbered_from(1) == "client_name ILIKE ANY($1::text[])"
    assert compiled.params == (["%50\\%\\_off\\\\%", "%Tremblay%"],)


def test_an_empty_keyword_is_refused() -> None:
    with pytest.raises(InvalidCriteria) as caught:
        compile_criteria([Criterion(field="client_name", values=["  "])])
    assert (caught.value.code, caught.value.field) == ("invalid_field", "criteria[0].values")
    assert "empty keyword for 'client_name'" in caught.value.message
