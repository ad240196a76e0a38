"""Criteria to SQL: values inside one criterion are OR-ed, criteria are AND-ed.

No criterion selects every contract of the tenant. Only whitelisted fields are accepted, and
values are always bound as parameters, never spliced into the SQL text.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from shared.events import Criterion, RejectionReason


@dataclass(frozen=True)
class Field:
    column: str
    # None: any value is accepted (free-form fields such as a zone name).
    values: frozenset[str] | None
    # True: a value matches when it appears anywhere in the column, case-insensitively
    # (the Campaigns seed's "customers sharing a keyword in their name").
    contains: bool = False


FIELDS: dict[str, Field] = {
    "status": Field(
        "status", frozenset({"active", "to_renew", "cancelled", "prospect", "suspended"})
    ),
    "building_type": Field(
        "building_type", frozenset({"residential", "commercial", "industrial", "institutional"})
    ),
    "language": Field("language", frozenset({"fr", "en"})),
    "zone": Field("zone", None),
    "season": Field("season", None),
    "contract_id": Field("contract_id", None),
    "client_name": Field("client_name", None, contains=True),
}


class InvalidCriteria(ValueError):
    def __init__(self, code: RejectionReason, field: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.field = field
        self.message = message


@dataclass(frozen=True)
class CompiledCriteria:
    """A WHERE fragment over `targeting.contracts` and its parameters, one per clause.

    The fragment is numbered by the query it goes into (`numbered_from`): only that query knows
    how many parameters of its own come first."""

    # Each clause holds one `${}` where its parameter's number goes.
    clauses: tuple[str, ...]
    params: tuple[object, ...]

    def numbered_from(self, first: int) -> str:
        """The fragment with its parameters numbered `first`, `first + 1`, ... in order."""
        return " AND ".join(c.format(first + i) for i, c in enumerate(self.clauses)) or "TRUE"


def compile_criteria(criteria: Sequence[Criterion]) -> CompiledCriteria:
    """Raise InvalidCriteria naming `criteria[i].field` or `criteria[i].values[j]` when refused."""
    clauses: list[str] = []
    params: list[object] = []
    seen: set[str] = set()
    for i, criterion in enumerate(criteria):
        spec = FIELDS.get(criterion.field)
        if spec is None:
            known = ", ".join(sorted(FIELDS))
            raise InvalidCriteria(
                "unknown_criterion",
                f"criteria[{i}].field",
                f"unknown criterion field '{criterion.field}'; known fields: {known}",
            )
        if criterion.field in seen:
            raise InvalidCriteria(
                "invalid_field",
                f"criteria[{i}].field",
                f"criterion field '{criterion.field}' is given twice; list its values once",
            )
        seen.add(criterion.field)
        if spec.values is not None:
            for j, value in enumerate(criterion.values):
                if value not in spec.values:
                    allowed = ", ".join(sorted(spec.values))
                    raise InvalidCriteria(
                        "unknown_value",
                        f"criteria[{i}].values[{j}]",
                        f"unknown value '{value}' for '{criterion.field}'; allowed: {allowed}",
                    )
        values = sorted(set(criterion.values))
        if spec.contains:
            if any(not v.strip() for v in values):
                raise InvalidCriteria(
                    "invalid_field",
                    f"criteria[{i}].values",
                    f"an empty keyword for '{criterion.field}' would match every contract",
                )
            params.append([f"%{_escape_like(v.strip())}%" for v in values])
            clauses.append(f"{spec.column} ILIKE ANY(${{}}::text[])")
        else:
            params.append(values)
            clauses.append(f"{spec.column} = ANY(${{}}::text[])")
    return CompiledCriteria(tuple(clauses), tuple(params))


def _escape_like(value: str) -> str:
    """A keyword is literal text: %, _ and the escape character itself match only themselves."""
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
