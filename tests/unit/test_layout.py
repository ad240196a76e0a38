"""Services never import each other: they share only `shared/` and talk through Kafka."""

import ast
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
