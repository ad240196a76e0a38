"""Importing a client file through the real broker into targeting's read model."""

import asyncio
import json
from pathlib import Path

import asyncpg
import pytest

from services.targeting.importer import main
from tests.e2e.audience import new_tenant

pytestmark = pytest.mark.stack

FILE = """contract_id,client_name,status,building_type,emails,balance
C-1,Ann Roy,active,residential,ann@{domain},10.00
C-2,Bob Côté,to_renew,commercial,bob@{domain};bob2@{domain},0
C-3,,active,residential,,0
"""


async def contracts(db: asyncpg.Pool, tenant: str) -> list[asyncpg.Record]:
    return await db.fetch(
        "SELECT contract_id, client_name, status, emails, balance, version, updated_at "
        "FROM targeting.contracts WHERE tenant_id = $1 ORDER BY contract_id",
        tenant,
    )


async def import_and_wait(
    db: asyncpg.Pool, path: Path, tenant: str, versions: set[int]
) -> tuple[int, list[asyncpg.Record]]:
    code = await asyncio.to_thread(main, [str(path), "--tenant", tenant])
    async with asyncio.timeout(20):
        while True:
            rows = await contracts(db, tenant)
            if len(rows) == 2 and not {r["version"] for r in rows} & versions:
                return code, rows
            await asyncio.sleep(0.1)


async def test_import_keeps_good_lines_reports_bad_ones_and_is_idempotent(
    db: asyncpg.Pool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tenant, domain = new_tenant()
    path = tmp_path / "clients.csv"
    path.write_text(FILE.format(domain=domain), encoding="utf-8")

    code, first = await import_and_wait(db, path, tenant, set())
    output = capsys.readouterr()
    assert code == 1
    assert "line 4, column client_name: required" in output.err
    assert "2 contracts imported, 1 lines refused" in output.out
    assert [(r["contract_id"], r["client_name"], r["status"]) for r in first] == [
        ("C-1", "Ann Roy", "active"),
        ("C-2", "Bob Côté", "to_renew"),
    ]
    assert [e["address"] for e in json.loads(first[1]["emails"])] == [
        f"bob@{domain}",
        f"bob2@{domain}",
    ]

    code, second = await import_and_wait(db, path, tenant, {r["version"] for r in first})
    assert code == 1
    # The same file again: a newer version, and nothing else changed.
    strip = [
        (
            r["contract_id"],
            r["client_name"],
            r["status"],
            r["emails"],
            r["balance"],
            r["updated_at"],
        )
        for r in first
    ]
    assert [
        (
            r["contract_id"],
            r["client_name"],
            r["status"],
            r["emails"],
            r["balance"],
            r["updated_at"],
        )
        for r in second
    ] == strip
