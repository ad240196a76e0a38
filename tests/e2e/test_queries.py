"""The queries over events, on the running stack: each answers from the service that owns the
data, one bounded page at a time, for its tenant only, with labels in French or English."""

import asyncio
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from shared.variables import CATALOGUE, DIFFUSIONS_SEED_VARIABLES
from tests.e2e.audience import (
    ask,
    bouncing,
    completed,
    contract,
    create_and_start,
    french_only,
    load,
    new_tenant,
    resend_failed,
    until_completed,
)
from tests.stack import EventLog, SmtpSink

pytestmark = pytest.mark.stack


async def described(
    events: EventLog,
    tenant: str,
    broadcast_id: str,
    until: Callable[[dict[str, Any]], bool] = lambda _: True,
    **query: Any,
) -> dict[str, Any]:
    """get_broadcast's answer once `until` holds: targeting learns the tracker's counters from
    its events, a moment after they are published."""
    async with asyncio.timeout(60):
        while True:
            answer = await ask(
                events, tenant, {"type": "get_broadcast", "broadcast_id": broadcast_id, **query}
            )
            assert answer["type"] == "broadcast.described", answer
            if until(answer):
                return answer
            await asyncio.sleep(0.3)


def finished(answer: dict[str, Any]) -> bool:
    latest = answer["broadcast"]["latest_run"]
    return latest is not None and latest["state"] == "completed"


async def refused(events: EventLog, tenant: str, query: dict[str, Any]) -> tuple[str, str]:
    answer = await ask(events, tenant, query)
    assert answer["type"] == "broadcast.rejected", answer
    return answer["reason"], answer["field"]


async def test_a_broadcast_listed_described_and_its_messages_paged(
    db: asyncpg.Pool, events: EventLog, smtp_sink: SmtpSink
) -> None:
    tenant, domain = new_tenant()
    refused_address = await bouncing(smtp_sink, domain)
    addresses = [f"c{i}@{domain}" for i in range(3)] + [refused_address]
    await load(
        db,
        [
            contract(tenant, f"C-{i}", status="active", building="residential", emails=[a])
            for i, a in enumerate(addresses)
        ]
        + [contract(tenant, "C-9", status="active", building="commercial", emails=["x@y.example"])],
    )
    create = french_only(tenant)
    broadcast_id = await create_and_start(events, create)
    done = await completed(events, broadcast_id)
    await until_completed(db, broadcast_id)

    # get_broadcast: the definition, the state and the run with the tracker's final counters.
    answer = await described(events, tenant, broadcast_id, finished)
    broadcast = answer["broadcast"]
    assert (broadcast["name"], broadcast["state"], broadcast["state_label"]) == (
        create["name"],
        "completed",
        "terminé",
    )
    assert answer["definition"]["criteria"] == create["criteria"]
    assert answer["created_by"] == "user-42"
    assert broadcast["created_at"] <= broadcast["started_at"] <= broadcast["completed_at"]
    (run,) = answer["runs"]
    assert run == broadcast["latest_run"]
    assert (run["run_number"], run["run_id"]) == (1, done["run_id"])
    assert (run["outcome"], run["outcome_label"]) == (
        "partially_successful",
        "partiellement réussie",
    )
    assert run["counters"] == done["counters"]
    assert (run["counters"]["delivered"], run["counters"]["failed"]) == (3, 1)
    english = await described(events, tenant, broadcast_id, language="en")
    assert (english["broadcast"]["state_label"], english["runs"][0]["outcome_label"]) == (
        "finished",
        "partially successful",
    )

    # list_messages: the run's log, a page at a time; filtered by state.
    log = await ask(events, tenant, {"type": "list_messages", "broadcast_id": broadcast_id})
    assert (log["type"], log["run_id"], log["next_cursor"]) == (
        "messages.listed",
        run["run_id"],
        None,
    )
    assert sorted(m["address"] for m in log["messages"]) == sorted(addresses)
    assert {m["contract_id"] for m in log["messages"]} == {"C-0", "C-1", "C-2", "C-3"}
    first = await ask(
        events, tenant, {"type": "list_messages", "broadcast_id": broadcast_id, "limit": 3}
    )
    assert len(first["messages"]) == 3 and first["next_cursor"]
    rest = await ask(
        events,
        tenant,
        {
            "type": "list_messages",
            "broadcast_id": broadcast_id,
            "limit": 3,
            "cursor": first["next_cursor"],
        },
    )
    assert rest["next_cursor"] is None
    assert first["messages"] + rest["messages"] == log["messages"]
    failed = await ask(
        events,
        tenant,
        {"type": "list_messages", "broadcast_id": broadcast_id, "state": "failed", "run_number": 1},
    )
    (message,) = failed["messages"]
    assert (message["address"], message["state"], message["state_label"], message["reason"]) == (
        refused_address,
        "failed",
        "échoué",
        "refused",
    )
    assert message["updated_at"] and message["channel"] == "email"

    # A second run: resent to the failures (refused again). Runs page newest first.
    resent = await resend_failed(db, events, tenant, broadcast_id)
    assert resent["type"] == "broadcast.accepted", resent
    await completed(events, broadcast_id, resent["run_id"])
    newest = await described(
        events,
        tenant,
        broadcast_id,
        lambda a: finished(a) and a["broadcast"]["latest_run"]["run_number"] == 2,
        limit=1,
    )
    assert [r["run_number"] for r in newest["runs"]] == [2]
    assert (newest["runs"][0]["outcome"], newest["runs"][0]["outcome_label"]) == (
        "failed",
        "échouée",
    )
    older = await described(events, tenant, broadcast_id, limit=1, cursor=newest["next_cursor"])
    assert ([r["run_number"] for r in older["runs"]], older["next_cursor"]) == ([1], None)
    assert older["broadcast"]["latest_run"]["run_number"] == 2
    latest_log = await ask(events, tenant, {"type": "list_messages", "broadcast_id": broadcast_id})
    assert [m["address"] for m in latest_log["messages"]] == [refused_address]
    assert latest_log["run_id"] == resent["run_id"]

    # list_broadcasts: sent or pending, newest first, a page at a time.
    draft = await ask(events, tenant, french_only(tenant, name="Brouillon"))
    sent = await ask(events, tenant, {"type": "list_broadcasts", "state": "sent"})
    (line,) = sent["broadcasts"]
    assert (line["broadcast_id"], line["state_label"], line["latest_run"]["run_number"]) == (
        broadcast_id,
        "terminé",
        2,
    )
    assert line["latest_run"]["counters"]["failed"] == 1
    pending = await ask(events, tenant, {"type": "list_broadcasts", "state": "pending"})
    assert [
        (b["broadcast_id"], b["state_label"], b["latest_run"]) for b in pending["broadcasts"]
    ] == [(draft["broadcast_id"], "brouillon", None)]
    page_one = await ask(events, tenant, {"type": "list_broadcasts", "limit": 1, "language": "en"})
    assert [b["broadcast_id"] for b in page_one["broadcasts"]] == [draft["broadcast_id"]]
    assert page_one["broadcasts"][0]["state_label"] == "draft"
    page_two = await ask(
        events,
        tenant,
        {"type": "list_broadcasts", "limit": 1, "cursor": page_one["next_cursor"]},
    )
    assert [b["broadcast_id"] for b in page_two["broadcasts"]] == [broadcast_id]
    assert page_two["next_cursor"] is None

    # The bounds: a larger page, a cursor not given, a run that does not exist.
    for query, bound in (
        ({"type": "list_broadcasts"}, 200),
        ({"type": "get_broadcast", "broadcast_id": broadcast_id}, 100),
        ({"type": "list_messages", "broadcast_id": broadcast_id}, 500),
        ({"type": "list_variables"}, 100),
    ):
        assert await refused(events, tenant, {**query, "limit": bound + 1}) == (
            "invalid_field",
            "limit",
        )
        assert await refused(events, tenant, {**query, "cursor": "bm90IG91cnM"}) == (
            "invalid_field",
            "cursor",
        )
    assert await refused(
        events, tenant, {"type": "list_messages", "broadcast_id": broadcast_id, "run_number": 3}
    ) == ("run_not_found", "run_number")

    # Another tenant sees none of it.
    other, _ = new_tenant()
    assert await refused(
        events, other, {"type": "get_broadcast", "broadcast_id": broadcast_id}
    ) == (
        "broadcast_not_found",
        "broadcast_id",
    )
    assert await refused(
        events, other, {"type": "list_messages", "broadcast_id": broadcast_id}
    ) == ("broadcast_not_found", "broadcast_id")
    nothing = await ask(events, other, {"type": "list_broadcasts"})
    assert (nothing["broadcasts"], nothing["next_cursor"]) == ([], None)


async def test_the_variables_and_the_criteria_with_their_labels(events: EventLog) -> None:
    tenant, _ = new_tenant()
    seed = await ask(events, tenant, {"type": "list_variables", "limit": DIFFUSIONS_SEED_VARIABLES})
    assert seed["type"] == "variables.listed"
    assert [v["label"] for v in seed["variables"]][:4] == [
        "Adresse (Services)",
        "Contrat (No)",
        "Client (Nom)",
        "Contrat (Solde)",
    ]
    assert len(seed["variables"]) == DIFFUSIONS_SEED_VARIABLES and seed["next_cursor"]
    rest = await ask(
        events,
        tenant,
        {"type": "list_variables", "language": "en", "cursor": seed["next_cursor"]},
    )
    assert [v["code"] for v in seed["variables"] + rest["variables"]] == [v.name for v in CATALOGUE]
    assert all(v["label"] == v["label_en"] for v in rest["variables"])
    assert rest["next_cursor"] is None

    for language, status, to_renew, buildings, residential in (
        ("fr", "Statut", "À renouveler", "Immeubles", "Résidentiel"),
        ("en", "Status", "To renew", "Buildings", "Residential"),
    ):
        answer = await ask(events, tenant, {"type": "describe_criteria", "language": language})
        assert answer["type"] == "criteria.described"
        fields = {c["code"]: c for c in answer["criteria"]}
        assert set(fields) >= {"status", "building_type", "language", "zone", "client_name"}
        assert fields["status"]["label"] == status
        assert {v["code"]: v["label"] for v in fields["status"]["values"]}["to_renew"] == to_renew
        assert fields["building_type"]["label"] == buildings
        values = {v["code"]: v for v in fields["building_type"]["values"]}
        assert values["residential"]["label"] == residential
        assert values["residential"]["label_fr"] == "Résidentiel"
        assert fields["zone"]["values"] is None
