"""Targeting's read model, fed through the real broker: the latest version of a contract wins."""

import asyncio

import asyncpg
import pytest

from tests.e2e.audience import contract, new_tenant
from tests.stack import publish_json

pytestmark = pytest.mark.stack


async def row(db: asyncpg.Pool, tenant: str, contract_id: str) -> asyncpg.Record | None:
    return await db.fetchrow(
        "SELECT version, status, deleted FROM targeting.contracts "
        "WHERE tenant_id = $1 AND contract_id = $2",
        tenant,
        contract_id,
    )


async def wait_for_version(db: asyncpg.Pool, tenant: str, contract_id: str, version: int) -> None:
    async with asyncio.timeout(20):
        while (r := await row(db, tenant, contract_id)) is None or r["version"] < version:
            await asyncio.sleep(0.1)


async def processed(db: asyncpg.Pool, tenant: str, key: str) -> None:
    """Until targeting has processed everything published before on `key`'s partition: a
    marker contract published with the same key lands on that partition after them, and the
    read model applies a partition in order."""
    marker = contract(tenant, "marker", status="active", building="residential", emails=[])
    await publish_json("audience.contracts", [(key, marker)])
    await wait_for_version(db, tenant, "marker", 1)


async def test_changes_arriving_out_of_order_keep_the_latest(db: asyncpg.Pool) -> None:
    tenant, domain = new_tenant()
    v3 = contract(tenant, "C-1", status="cancelled", building="residential", emails=[])
    v3["version"] = 3
    v2 = contract(tenant, "C-1", status="active", building="residential", emails=[f"a@{domain}"])
    v2["version"] = 2
    await publish_json("audience.contracts", [(f"{tenant}:C-1", v3), (f"{tenant}:C-1", v2)])
    await processed(db, tenant, f"{tenant}:C-1")  # the older change too
    found = await row(db, tenant, "C-1")
    assert found is not None and (found["version"], found["status"]) == (3, "cancelled")


async def test_a_deletion_is_not_undone_by_an_older_upsert(db: asyncpg.Pool) -> None:
    tenant, domain = new_tenant()
    deleted = {"type": "contract.deleted", "tenant_id": tenant, "contract_id": "C-9", "version": 5}
    late = contract(tenant, "C-9", status="active", building="residential", emails=[f"a@{domain}"])
    late["version"] = 4
    await publish_json("audience.contracts", [(f"{tenant}:C-9", deleted), (f"{tenant}:C-9", late)])
    await processed(db, tenant, f"{tenant}:C-9")
    found = await row(db, tenant, "C-9")
    assert found is not None and found["deleted"] and found["version"] == 5


async def test_a_malformed_contract_goes_to_dead_letters_and_the_next_one_is_applied(
    db: asyncpg.Pool,
) -> None:
    from tests.stack import EventLog

    tenant, _ = new_tenant()
    bad = contract(tenant, "C-1", status="active", building="residential", emails=[])
    del bad["contract"]["client_name"]
    good = contract(tenant, "C-2", status="active", building="residential", emails=[])
    letters = await EventLog("broadcast.dead-letters").open()
    try:
        await publish_json("audience.contracts", [(f"{tenant}:C-1", bad), (f"{tenant}:C-2", good)])
        letter = await letters.wait_for(lambda e: e["key"] == f"{tenant}:C-1", timeout=20)
    finally:
        await letters.close()
    assert letter["service"] == "targeting" and "contract.client_name" in letter["error"]
    await wait_for_version(db, tenant, "C-2", 1)
    assert await row(db, tenant, "C-1") is None
