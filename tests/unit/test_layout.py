"""Services never import each other, share only `shared/`, talk through Kafka, and are read
from outside only through their versioned views."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("targeting", "composer", "dispatcher", "tracker")


def imported_modules(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_no_service_imports_another() -> None:
    offenders = []
    for service in SERVICES:
        others = {f"services.{s}" for s in SERVICES if s != service}
        for path in (ROOT / "services" / service).rglob("*.py"):
            for module in imported_modules(path):
                if any(module == o or module.startswith(o + ".") for o in others):
                    offenders.append(f"{path.relative_to(ROOT)} imports {module}")
    assert offenders == []


def test_shared_imports_no_service() -> None:
    offenders = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in (ROOT / "shared").rglob("*.py")
        if path.name != "asyncapi.py"  # the document generator loads each app on purpose
        for module in imported_modules(path)
        if module.startswith("services")
    ]
    assert offenders == []


def test_topic_names_are_not_scattered_in_service_code() -> None:
    from shared.topics import ALL

    offenders = [
        f"{path.relative_to(ROOT)} spells {topic.name}"
        for path in (ROOT / "services").rglob("*.py")
        for topic in ALL
        if f'"{topic.name}"' in path.read_text()
    ]
    assert offenders == []


# --- Code outside the services reads their views, never their tables --------------------------

# Where tooling may not name a service's tables: it reads the `_v1` views instead.
OUTSIDE = ("deploy", "bench", "shared", "tests/e2e")
# White-box on purpose, one reason each. tests/integration and tests/faults are white-box by
# nature and not checked at all.
ALLOWED = {
    "bench/contracts.py": "COPYs the audience into targeting's read model: the feed is not measured",
    "bench/database.py": "preloads the ledger and the tracker's messages of an earlier run",
    "tests/e2e/test_actions.py": "waits for targeting to close failures, which nothing publishes",
    "tests/e2e/test_sms_delivery.py": "checks the dispatcher's shared rate bucket, its subject",
}
_CREATED = re.compile(
    r"CREATE\s+(TABLE|(?:OR\s+REPLACE\s+)?VIEW)\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)\.(\w+)",
    re.IGNORECASE,
)


def created(kind: str) -> dict[str, set[str]]:
    """`service -> names` of the tables (kind "table") or views ("view") its migrations create."""
    found: dict[str, set[str]] = {service: set() for service in SERVICES}
    for service in SERVICES:
        for path in sorted((ROOT / "services" / service / "migrations").glob("*.sql")):
            for what, schema, name in _CREATED.findall(path.read_text()):
                if what.split()[-1].lower() == kind and schema == service:
                    found[service].add(name)
    return found


def table_references(text: str, tables: dict[str, set[str]]) -> list[str]:
    """`schema.table` names in `text`; a dotted module path (services.targeting.runs) is not one."""
    return sorted(
        {
            f"{schema}.{name}"
            for schema, name in re.findall(r"(?<![\w.])(\w+)\.(\w+)\b", text)
            if name in tables.get(schema, set())
        }
    )


def test_the_migrations_create_the_tables_and_views_the_rule_knows() -> None:
    tables, views = created("table"), created("view")
    assert {"contracts", "broadcasts", "runs"} <= tables["targeting"]
    assert {"deliveries", "tenants"} <= tables["dispatcher"]
    assert all(name.endswith("_v1") for names in views.values() for name in names)
    assert not any(tables[s] & views[s] for s in SERVICES)


def test_the_rule_finds_a_table_in_sql_and_not_a_view_or_a_module() -> None:
    tables = {"targeting": {"runs"}}
    assert table_references('q = "SELECT * FROM targeting.runs WHERE x"', tables) == [
        "targeting.runs"
    ]
    assert table_references("FROM targeting.runs_v1", tables) == []
    assert table_references("from services.targeting.runs import x", tables) == []


def test_code_outside_the_services_names_no_table_of_theirs() -> None:
    tables = created("table")
    offenders = [
        f"{path.relative_to(ROOT)} names {', '.join(found)}"
        for top in OUTSIDE
        for path in sorted((ROOT / top).rglob("*.py"))
        if str(path.relative_to(ROOT)) not in ALLOWED
        and (found := table_references(path.read_text(), tables))
    ]
    assert offenders == []


def test_every_allowed_file_still_needs_it() -> None:
    tables = created("table")
    assert [p for p in ALLOWED if not table_references((ROOT / p).read_text(), tables)] == []
