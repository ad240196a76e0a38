"""Reading the client file (the seed's "Importer votre fichier client"). Pure: no I/O.

One line per contract. Columns (header names, any order; UTF-8, optional BOM, comma-separated,
quoted as spreadsheets write them):

    contract_id, client_name, status, building_type       required
    number, zone, season, service_address, language       optional (language: fr or en)
    emails, phones                                        several values separated by ";"
    opted_out                                             addresses or numbers that opted out
    balance, amount_paid                                  decimals, "1234.56" or "1 234,56"
    transaction_id, auth_code, visit_at, driver_name,     the last visit and payment (optional;
    spreading, transport_10_wheels, transport_12_wheels,  visit_at with its offset, e.g.
    transport_semi_2, transport_semi_3, spring_cleaning   2026-11-23T14:30-05:00)

Any other column is kept as a template attribute of the contract. A bad line is reported with
its line number and the column at fault; the good lines are kept.
"""

import csv
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation

from shared.events import ContactPoint, ContractDetails, ContractFields, ContractUpserted

from .criteria import FIELDS

REQUIRED = ("contract_id", "client_name", "status", "building_type")
DETAILS = tuple(ContractDetails.model_fields)
KNOWN = frozenset(
    {
        *REQUIRED,
        *DETAILS,
        "number",
        "zone",
        "season",
        "service_address",
        "language",
        "emails",
        "phones",
        "opted_out",
        "balance",
        "amount_paid",
    }
)


@dataclass(frozen=True)
class LineError:
    line: int
    column: str | None
    message: str

    def __str__(self) -> str:
        where = f", column {self.column}" if self.column else ""
        return f"line {self.line}{where}: {self.message}"


@dataclass
class ParsedFile:
    contracts: list[ContractUpserted] = field(default_factory=list)
    errors: list[LineError] = field(default_factory=list)


class _Bad(ValueError):
    def __init__(self, column: str, message: str) -> None:
        super().__init__(message)
        self.column = column


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(";") if part.strip()]


def _decimal(row: dict[str, str], column: str) -> Decimal:
    raw = row.get(column, "").replace("\u00a0", "").replace(" ", "").replace("$", "")
    if not raw:
        return Decimal(0)
    try:
        return Decimal(raw.replace(",", "."))
    except InvalidOperation:
        raise _Bad(column, f"not an amount: {row[column]!r}") from None


def _closed(row: dict[str, str], column: str) -> str:
    value = row.get(column, "").strip().lower().replace(" ", "_")
    allowed = FIELDS[column].values
    if allowed is not None and value not in allowed:
        raise _Bad(
            column, f"unknown {column} {row.get(column)!r}; allowed: {', '.join(sorted(allowed))}"
        )
    return value


def _details(row: dict[str, str]) -> ContractDetails:
    values: dict[str, object] = {
        column: row[column].strip() for column in DETAILS if row.get(column, "").strip()
    }
    if "visit_at" in values:
        example = "e.g. 2026-11-23T14:30-05:00"
        try:
            visit_at = datetime.fromisoformat(str(values["visit_at"]))
        except ValueError:
            raise _Bad("visit_at", f"not a date and time: {row['visit_at']!r}; {example}") from None
        if visit_at.tzinfo is None:
            raise _Bad("visit_at", f"give the offset of {row['visit_at']!r}; {example}")
        values["visit_at"] = visit_at
    return ContractDetails.model_validate(values)


def _contract(row: dict[str, str], tenant_id: str, version: int) -> ContractUpserted:
    for column in REQUIRED:
        if not row.get(column, "").strip():
            raise _Bad(column, "required")
    language = row.get("language", "").strip().lower() or "fr"
    if language not in ("fr", "en"):
        raise _Bad("language", f"must be fr or en, not {row['language']!r}")
    opted_out = {a.lower() for a in _split(row.get("opted_out", ""))}
    emails = _split(row.get("emails", ""))
    for email in emails:
        if "@" not in email or any(c in email for c in " <>\r\n"):
            raise _Bad("emails", f"not an email address: {email!r}")
    contract_id = row["contract_id"].strip()
    return ContractUpserted(
        tenant_id=tenant_id,
        contract_id=contract_id,
        version=version,
        contract=ContractFields(
            number=row.get("number", "").strip() or contract_id,
            status=_closed(row, "status"),
            building_type=_closed(row, "building_type"),
            zone=row.get("zone", "").strip(),
            season=row.get("season", "").strip(),
            client_name=row["client_name"].strip(),
            service_address=row.get("service_address", "").strip(),
            language=language,
            emails=[ContactPoint(address=e, opted_out=e.lower() in opted_out) for e in emails],
            phones=[
                ContactPoint(address=p, opted_out=p.lower() in opted_out)
                for p in _split(row.get("phones", ""))
            ],
            balance=_decimal(row, "balance"),
            amount_paid=_decimal(row, "amount_paid"),
            details=_details(row),
            attributes={k: v.strip() for k, v in row.items() if k not in KNOWN and v and v.strip()},
        ),
    )


def parse(lines: Iterable[str], *, tenant_id: str, version: int) -> ParsedFile:
    """Every good line as a contract change of `version`; every bad line as an error."""
    result = ParsedFile()
    reader = csv.DictReader(
        line.lstrip("\ufeff") if i == 0 else line for i, line in enumerate(lines)
    )
    header = [name.strip() for name in reader.fieldnames or []]
    missing = [column for column in REQUIRED if column not in header]
    if missing:
        result.errors.append(LineError(1, None, f"missing columns: {', '.join(missing)}"))
        return result
    reader.fieldnames = header
    seen: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        if None in row:
            result.errors.append(LineError(line, None, "more values than columns"))
            continue
        try:
            contract = _contract({k: v or "" for k, v in row.items()}, tenant_id, version)
        except _Bad as bad:
            result.errors.append(LineError(line, bad.column, str(bad)))
            continue
        if contract.contract_id in seen:
            result.errors.append(
                LineError(
                    line,
                    "contract_id",
                    f"contract {contract.contract_id} already on line {seen[contract.contract_id]}",
                )
            )
            continue
        seen[contract.contract_id] = line
        result.contracts.append(contract)
    return result
