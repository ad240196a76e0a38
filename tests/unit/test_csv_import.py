from decimal import Decimal

from services.targeting.csv_import import parse

HEADER = (
    "contract_id,client_name,status,building_type,language,emails,phones,opted_out,"
    "balance,driver_name,secteur\n"
)


def lines(*rows: str) -> list[str]:
    return [HEADER, *(row + "\n" for row in rows)]


def test_good_lines_become_contracts_with_every_field() -> None:
    parsed = parse(
        lines(
            'C-1,"Tremblay, Élise",Active,Residential,en,a@x.example;b@x.example,+15145550000,'
            'b@x.example,"1 234,56",Marc,Nord'
        ),
        tenant_id="acme",
        version=7,
    )
    assert parsed.errors == []
    (change,) = parsed.contracts
    c = change.contract
    assert (change.tenant_id, change.contract_id, change.version) == ("acme", "C-1", 7)
    assert (c.client_name, c.status, c.building_type, c.language) == (
        "Tremblay, Élise",
        "active",
        "residential",
        "en",
    )
    assert [(e.address, e.opted_out) for e in c.emails] == [
        ("a@x.example", False),
        ("b@x.example", True),
    ]
    assert [p.address for p in c.phones] == ["+15145550000"]
    assert c.balance == Decimal("1234.56")
    assert c.details.driver_name == "Marc"  # a Diffusions variable
    assert c.attributes == {"secteur": "Nord"}  # any other column: a custom attribute
    assert c.number == "C-1"  # the contract id stands in for a missing number


def test_bad_lines_are_reported_by_line_and_column_and_good_ones_kept() -> None:
    parsed = parse(
        lines(
            "C-1,Ann,active,residential,fr,a@x.example,,,0,",
            ",Bob,active,residential,fr,,,,0,",
            "C-3,Cy,sleeping,residential,fr,,,,0,",
            "C-4,Di,active,residential,de,,,,0,",
            "C-5,Ed,active,residential,fr,not-an-address,,,0,",
            "C-6,Fay,active,residential,fr,,,,12x,",
            "C-1,Gus,active,residential,fr,,,,0,",
            "C-8,Hal,to renew,commercial,,,,,,",
        ),
        tenant_id="acme",
        version=1,
    )
    assert [str(e) for e in parsed.errors] == [
        "line 3, column contract_id: required",
        "line 4, column status: unknown status 'sleeping'; allowed: active, cancelled, "
        "prospect, suspended, to_renew",
        "line 5, column language: must be fr or en, not 'de'",
        "line 6, column emails: not an email address: 'not-an-address'",
        "line 7, column balance: not an amount: '12x'",
        "line 8, column contract_id: contract C-1 already on line 2",
    ]
    assert [c.contract_id for c in parsed.contracts] == ["C-1", "C-8"]
    assert parsed.contracts[1].contract.status == "to_renew"


def test_a_file_without_the_required_columns_is_refused_whole() -> None:
    parsed = parse(["contract_id,name\n", "C-1,Ann\n"], tenant_id="acme", version=1)
    assert [str(e) for e in parsed.errors] == [
        "line 1: missing columns: client_name, status, building_type"
    ]
    assert parsed.contracts == []


def test_a_byte_order_mark_and_quoted_line_breaks_are_handled() -> None:
    parsed = parse(
        [
            "\ufeffcontract_id,client_name,status,building_type,service_address\n",
            'C-1,Ann,active,residential,"12 rue A\n',
            'Québec"\n',
            "C-2,Bo,active,residential,x,extra\n",
        ],
        tenant_id="acme",
        version=1,
    )
    assert parsed.contracts[0].contract.service_address == "12 rue A\nQuébec"
    assert [str(e) for e in parsed.errors] == ["line 4: more values than columns"]


def test_visit_and_payment_details_are_read_and_a_visit_needs_its_offset() -> None:
    header = "contract_id,client_name,status,building_type,visit_at,transaction_id,spreading\n"
    parsed = parse(
        [
            header,
            "C-1,A,active,residential,2026-11-23T14:30-05:00,TX-9,Inclus\n",
            "C-2,B,active,residential,2026-11-23 14:30,,\n",
            "C-3,C,active,residential,hier,,\n",
        ],
        tenant_id="acme",
        version=1,
    )
    (good,) = parsed.contracts
    details = good.contract.details
    assert details.visit_at is not None and details.visit_at.isoformat() == (
        "2026-11-23T14:30:00-05:00"
    )
    assert (details.transaction_id, details.spreading, details.driver_name) == (
        "TX-9",
        "Inclus",
        None,
    )
    assert [(e.line, e.column) for e in parsed.errors] == [(3, "visit_at"), (4, "visit_at")]
    assert "give the offset" in parsed.errors[0].message
    assert "not a date and time: 'hier'" in parsed.errors[1].message
