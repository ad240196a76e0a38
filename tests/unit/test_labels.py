from typing import get_args

import pytest

from services.targeting.criteria import FIELDS
from services.targeting.lifecycle import STATES
from shared.events import MessageState, Outcome
from shared.labels import Kind, label, labels


@pytest.mark.parametrize(
    ("kind", "codes"),
    [
        ("broadcast_state", STATES),
        ("outcome", get_args(Outcome)),
        ("message_state", get_args(MessageState)),
        ("criterion", tuple(FIELDS)),
        ("criterion_value", tuple(v for f in FIELDS.values() for v in f.values or ())),
    ],
)
def test_every_code_the_engine_exposes_has_both_labels(kind: Kind, codes: tuple[str, ...]) -> None:
    for code in codes:
        french, english = labels(kind, code)
        assert french != code or english != code, f"{kind} {code} has no label"


def test_the_seeds_words() -> None:
    assert [label("broadcast_state", s, "fr") for s in ("running", "completed")] == [
        "en cours",
        "terminé",
    ]
    assert [
        label("outcome", o, "fr") for o in ("fully_successful", "partially_successful", "failed")
    ] == ["entièrement réussie", "partiellement réussie", "échouée"]
    assert label("outcome", "partially_successful", "en") == "partially successful"
    assert (label("criterion", "status", "fr"), label("criterion_value", "to_renew", "fr")) == (
        "Statut",
        "À renouveler",
    )
    assert (
        label("criterion", "building_type", "fr"),
        label("criterion_value", "residential", "fr"),
    ) == (
        "Immeubles",
        "Résidentiel",
    )


def test_no_code_no_label_and_an_unknown_code_is_shown_as_itself() -> None:
    assert label("outcome", None, "en") is None
    assert label("broadcast_state", "archived", "fr") == "archived"
