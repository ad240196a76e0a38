"""Importing a client file: `python -m services.targeting.importer FILE --tenant T`.

The contracts go through `audience.contracts`, the same path as the platform's changes, so the
read model has one writer. Each import's version is its time in microseconds: a later import
wins, and importing the same file again leaves every contract's content as it was.
"""

import argparse
import asyncio
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from shared.client.commands import publish
from shared.kafka_security import KafkaSecurity
from shared.topics import CONTRACTS

from .csv_import import ParsedFile, parse
from .settings import Settings


def records(parsed: ParsedFile) -> Iterator[tuple[bytes, bytes]]:
    """audience.contracts' (key, value) for each good line."""
    for c in parsed.contracts:
        yield f"{c.tenant_id}:{c.contract_id}".encode(), c.model_dump_json().encode()


@dataclass(frozen=True)
class Imported:
    contracts: int
    refused: int
    # Every contract of this import carries it: the read model holds the import once every
    # one of them has at least this version.
    version: int


def import_file(path: Path, tenant: str, bootstrap: str, security: KafkaSecurity) -> Imported:
    """Publish the file's good lines; report each refused line on stderr."""
    version = time.time_ns() // 1000
    with path.open(encoding="utf-8-sig", newline="") as lines:
        parsed = parse(lines, tenant_id=tenant, version=version)
    for error in parsed.errors:
        print(f"{path}: {error}", file=sys.stderr)
    asyncio.run(publish(bootstrap, CONTRACTS.name, records(parsed), security, linger_ms=5))
    return Imported(len(parsed.contracts), len(parsed.errors), version)


def main(argv: list[str] | None = None) -> int:
    """Exit 0 when every line was imported, 1 when some lines were refused, 2 on bad usage."""
    parser = argparse.ArgumentParser(description="Import a client file (CSV) for one tenant.")
    parser.add_argument("file", type=Path)
    parser.add_argument("--tenant", required=True)
    args = parser.parse_args(argv)
    if not args.file.is_file():
        print(f"{args.file}: no such file", file=sys.stderr)
        return 2
    settings = Settings()
    imported = import_file(
        args.file, args.tenant, settings.kafka_bootstrap_servers, settings.kafka_security()
    )
    print(f"{imported.contracts} contracts imported, {imported.refused} lines refused")
    return 1 if imported.refused else 0


if __name__ == "__main__":
    sys.exit(main())
