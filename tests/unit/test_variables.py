"""The variable catalogue and what the template check accepts and refuses."""

import pytest

from shared.templating import check
from shared.variables import CATALOGUE, DIFFUSIONS_SEED_VARIABLES, LINK_KINDS


def test_the_diffusions_seed_variables_come_first_with_their_french_labels() -> None:
    seed = CATALOGUE[:DIFFUSIONS_SEED_VARIABLES]
    assert len({v.name for v in seed}) == 24
    labels = [v.label_fr for v in seed]
    assert labels[:5] == [
        "Adresse (Services)",
        "Contrat (No)",
        "Client (Nom)",
        "Contrat (Solde)",
        "Contrat (Payé)",
    ]
    assert labels[-2:] == ["URL: Demande de désengagement", "URL: Demande d'inscription"]
    assert all(v.label_en for v in CATALOGUE)
    assert {f"contract.{name}" for name in LINK_KINDS} <= {v.name for v in CATALOGUE}


@pytest.mark.parametrize("variable", [v.name for v in CATALOGUE])
def test_every_catalogued_variable_is_accepted(variable: str) -> None:
    assert check("{{ " + variable + " }}") is None


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ customer.name }}", "unknown variable 'customer'"),
        ("{{ contract.numero }}", "unknown variable 'contract.numero'"),
        ("{{ contract['numero'] }}", "unknown variable 'contract.numero'"),
        ("{{ contract }}", "use a field of 'contract', e.g. contract.amount_paid"),
        ("{% for k in contract %}{{ k }}{% endfor %}", "use a field of 'contract'"),
        ("{{ contract.number", "syntax error"),
    ],
)
def test_unknown_or_whole_variables_are_refused(source: str, message: str) -> None:
    problem = check(source)
    assert problem is not None and problem.message.startswith(message)


def test_template_constructs_and_custom_fields_are_accepted() -> None:
    source = (
        "{% for i in range(2) %}{{ loop.index }}{% endfor %}{% set n = contract.number %}{{ n }}"
        "{{ contract.attributes.secteur }}{{ contract.balance.amount }}"
        "{% if contract.visit_at %}{{ contract.visit_at.date }}{% endif %}"
    )
    assert check(source) is None
