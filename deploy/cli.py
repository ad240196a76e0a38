"""`broadcast`: the operator's command line, through the same events as any other service.

Commands publish on `broadcast.requests` and wait for their answer on `broadcast.events`;
`status` reads the tracker's read model. Every command has `--help`; `--json` prints the
answer as JSON for scripts. Exit codes: 0 done, 1 refused (the answer says why), 2 bad usage,
3 no answer in time (is the stack up?).
"""

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, get_args
from uuid import uuid4

import asyncpg
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from shared import topics
from shared.events import ActionState

REPO = Path(__file__).resolve().parents[1]
KAFKA = os.environ.get("BROADCAST_KAFKA", "127.0.0.1:19092")
DATABASE = os.environ.get(
    "BROADCAST_DATABASE_URL", "postgresql://broadcast:broadcast@127.0.0.1:15432/broadcast"
)
REFUSED, USAGE, NO_ANSWER = 1, 2, 3


class Usage(Exception):
    """A command line that cannot be turned into a request (exit code 2)."""


class Refused(Exception):
    def __init__(self, answer: dict[str, Any]) -> None:
        super().__init__(answer.get("message", "refused"))
        self.answer = answer


async def request(command: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    """Publish one command and return its answer; Refused when it was rejected."""
    who = os.environ.get("USER", "operator")
    command = {"request_id": f"cli-{uuid4()}", "requested_by": who, **command}
    events = AIOKafkaConsumer(bootstrap_servers=KAFKA, enable_auto_commit=False)
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all")
    try:
        await events.start()
        await producer.start()
        # Listen from the current end before asking, so the answer cannot be missed.
        parts = await producer.partitions_for(topics.EVENTS.name)
        assigned = [TopicPartition(topics.EVENTS.name, p) for p in parts]
        events.assign(assigned)
        await events.seek_to_end(*assigned)
        for tp in assigned:
            await events.position(tp)
        await producer.send_and_wait(
            topics.REQUESTS.name, json.dumps(command).encode(), key=command["tenant_id"].encode()
        )
        async with asyncio.timeout(timeout):
            while True:
                batch = await events.getmany(timeout_ms=500)
                for records in batch.values():
                    for record in records:
                        answer = json.loads(record.value)
                        if answer.get("request_id") == command["request_id"]:
                            if answer["type"] == "broadcast.rejected":
                                raise Refused(answer)
                            return dict(answer)
    finally:
        await producer.stop()
        await events.stop()


def criteria(values: Sequence[str]) -> list[dict[str, Any]]:
    """`field=v1,v2` options: values OR-ed, criteria AND-ed."""
    found = []
    for item in values:
        field, _, listed = item.partition("=")
        if not field or not listed:
            raise Usage(f"--where {item!r}: expected field=value[,value...]")
        found.append({"field": field, "values": listed.split(",")})
    return found


@contextlib.asynccontextmanager
async def read_models() -> AsyncIterator[asyncpg.Connection]:
    """A connection to the read models, for listings and status: the CLI never writes there."""
    connection = await asyncpg.connect(DATABASE)
    try:
        yield connection
    finally:
        await connection.close()


async def run_status(
    connection: asyncpg.Connection, tenant: str, broadcast_id: str
) -> dict[str, Any] | None:
    """The broadcast's state (targeting) and its latest run's counters (tracker); None when
    the tenant has no such broadcast."""
    row = await connection.fetchrow(
        """SELECT r.run_id::text, r.run_number, coalesce(t.state, 'running') AS state,
                  b.state AS broadcast_state, t.outcome, b.name,
                  coalesce(t.contracts_targeted, 0) AS contracts_targeted,
                  t.messages_targeted, coalesce(t.delivered, 0) AS delivered,
                  coalesce(t.failed, 0) AS failed, coalesce(t.cancelled, 0) AS cancelled
           FROM targeting.broadcasts b
           LEFT JOIN LATERAL (
               SELECT run_id, run_number FROM targeting.runs x
               WHERE x.broadcast_id = b.broadcast_id
               ORDER BY run_number DESC LIMIT 1) r ON true
           LEFT JOIN tracker.runs t ON t.run_id = r.run_id
           WHERE b.tenant_id = $1 AND b.broadcast_id = $2::uuid""",
        tenant,
        broadcast_id,
    )
    return dict(row) if row else None


async def broadcasts_of(tenant: str, state: str | None) -> list[dict[str, Any]]:
    """The seed's list: name, creation and send dates, targeted / delivered / failed."""
    async with read_models() as connection:
        rows = await connection.fetch(
            """SELECT b.broadcast_id::text, b.name, b.state, b.created_at, b.started_at,
                      r.messages_targeted AS targeted, coalesce(r.delivered, 0) AS delivered,
                      coalesce(r.failed, 0) AS failed
               FROM targeting.broadcasts b
               LEFT JOIN LATERAL (
                   SELECT * FROM tracker.runs t
                   WHERE t.broadcast_id = b.broadcast_id AND t.purpose = 'broadcast'
                   ORDER BY t.started_at DESC LIMIT 1) r ON true
               WHERE b.tenant_id = $1
                 AND ($2::text IS NULL
                      OR $2 = 'pending' AND b.state IN ('draft', 'scheduled')
                      OR $2 = 'sent' AND b.started_at IS NOT NULL)
               ORDER BY b.created_at DESC, b.broadcast_id""",
            tenant,
            state,
        )
    return [dict(r) for r in rows]


def read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise Usage(f"{path}: {error.strerror or error}") from None
    except yaml.YAMLError as error:
        raise Usage(f"{path}: not YAML: {error}") from None


def load_spec(path: Path) -> dict[str, Any]:
    spec = read_yaml(path)
    if not isinstance(spec, dict) or "tenant_id" not in spec:
        raise Usage(f"{path}: a mapping with tenant_id, name, channels, ...")
    return spec


def bar(done: int, total: int | None, width: int = 30) -> str:
    if not total:
        return f"[{'?' * width}] {done}/?"
    filled = min(width, width * done // total)
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}"


def finished(found: dict[str, Any]) -> bool:
    """The latest run is complete and the broadcast's lifecycle knows it (a resend may follow)."""
    return found["state"] == "completed" and found["broadcast_state"] in ("completed", "cancelled")


async def status(args: argparse.Namespace) -> dict[str, Any]:
    async with read_models() as connection:
        return await follow(connection, args)


async def follow(connection: asyncpg.Connection, args: argparse.Namespace) -> dict[str, Any]:
    while True:
        found = await run_status(connection, args.tenant, args.broadcast_id)
        if found is None:
            raise Refused({"reason": "broadcast_not_found", "message": "no such broadcast"})
        if found["run_id"] is None and found["broadcast_state"] != "scheduled":
            raise Refused({"reason": "not_started", "message": f"it is {found['broadcast_state']}"})
        if not args.watch or finished(found):
            if args.watch and not args.json:
                print()
            return found
        if not args.json and found["run_id"] is not None:
            done = found["delivered"] + found["failed"] + found["cancelled"]
            where = "paused" if found["broadcast_state"] == "paused" else "in progress"
            line = f"{bar(done, found['messages_targeted'])} {where}"
            print(f"\r{line:60}", end="", flush=True)
        await asyncio.sleep(1)


def import_contracts(args: argparse.Namespace) -> int:
    """Publish the file like any producer, then wait until targeting's read model has it, so
    that the next command (an estimate) counts it."""
    from services.targeting.importer import import_file

    if not args.file.is_file():
        print(f"{args.file}: no such file", file=sys.stderr)
        return USAGE
    imported = import_file(args.file, args.tenant, KAFKA)

    async def applied() -> int:
        async with read_models() as connection, asyncio.timeout(60):
            while True:
                count: int = await connection.fetchval(
                    "SELECT count(*) FROM targeting.contracts "
                    "WHERE tenant_id = $1 AND version >= $2",
                    args.tenant,
                    imported.version,
                )
                if count >= imported.contracts:
                    return count
                await asyncio.sleep(0.2)

    try:
        asyncio.run(applied())
    except TimeoutError:
        print("imported, but targeting has not applied it yet", file=sys.stderr)
        return NO_ANSWER
    show({"imported": imported.contracts, "refused": imported.refused}, args.json)
    return REFUSED if imported.refused else 0


def stack(*words: str) -> int:
    return subprocess.call([sys.executable, "-m", "deploy.local.stack", *words], cwd=REPO)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="broadcast", description=__doc__.splitlines()[0])
    root.add_argument("--json", action="store_true", help="print answers as JSON")
    root.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print only the id the answer is about (for id=$(broadcast -q create ...))",
    )
    sub = root.add_subparsers(dest="command", required=True)
    for name, text in (
        ("up", "start the local stack"),
        ("down", "stop it"),
        ("demo", "run the demo"),
    ):
        sub.add_parser(name, help=text)

    def tenant_command(name: str, text: str) -> argparse.ArgumentParser:
        command = sub.add_parser(name, help=text, description=text)
        command.add_argument("--tenant", required=True)
        return command

    conf = tenant_command("configure", "set the tenant's settings from a YAML file")
    conf.add_argument("settings", type=Path)
    imp = tenant_command("import", "import a client file (CSV)")
    imp.add_argument("file", type=Path)
    est = tenant_command("estimate", "count the contracts and messages some criteria reach")
    est.add_argument("--where", action="append", default=[], help="field=value[,value]")
    est.add_argument("--channel", action="append", choices=["email", "sms"])
    cre = sub.add_parser("create", help="create a draft broadcast from a YAML spec")
    cre.add_argument("spec", type=Path)
    cre.add_argument("--contracts", help="C-1,C-2,...: exactly these customers (the campaign flow)")
    upd = sub.add_parser("update", help="replace a draft's criteria and content from a spec")
    upd.add_argument("broadcast_id")
    upd.add_argument("spec", type=Path)
    pre = tenant_command("preview", "send the draft, for one sample contract, to one address")
    pre.add_argument("broadcast_id")
    pre.add_argument("--to", required=True)
    pre.add_argument("--channel", choices=["email", "sms"], default="email")
    for name, text in (
        ("start", "send a draft"),
        ("pause", "hold a running broadcast"),
        ("resume", "release a paused broadcast; nobody gets the message twice"),
        ("cancel", "stop a scheduled, running or paused broadcast"),
    ):
        tenant_command(name, text).add_argument("broadcast_id")
    res = tenant_command("resend", "send a finished broadcast again, as a new run")
    res.add_argument("broadcast_id")
    res.add_argument(
        "--failed", action="store_true", help="only to the addresses that failed last time"
    )
    res.add_argument(
        "--include-unknown",
        action="store_true",
        help="with --failed, also where the outcome is unknown (the relay may have it)",
    )
    sch = tenant_command("schedule", "start a draft at a given time")
    sch.add_argument("broadcast_id")
    sch.add_argument("--at", required=True, help="ISO time; without an offset: the tenant's")
    ren = tenant_command("rename", "give a broadcast another name")
    ren.add_argument("broadcast_id")
    ren.add_argument("name")
    lst = tenant_command("list", "the tenant's broadcasts, newest first, with their counters")
    lst.add_argument("--state", choices=["sent", "pending"], help="sent, or waiting to be sent")
    st = tenant_command("status", "counters of a broadcast's latest run")
    st.add_argument("broadcast_id")
    st.add_argument("--watch", action="store_true", help="follow until it is finished")
    act = tenant_command("actions", "manual actions: list, or send / ignore one")
    act.add_argument("verb", nargs="?", choices=["send", "ignore"])
    act.add_argument("action_id", nargs="?", type=int)
    act.add_argument("--broadcast")
    act.add_argument("--state", choices=get_args(ActionState))
    act.add_argument("--to", help="a corrected address, with send")
    return root


async def execute(args: argparse.Namespace) -> dict[str, Any]:
    tenant = getattr(args, "tenant", None)
    match args.command:
        case "estimate":
            return await request(
                {
                    "type": "estimate_broadcast",
                    "tenant_id": tenant,
                    "criteria": criteria(args.where),
                    "channels": args.channel or ["email"],
                }
            )
        case "configure":
            settings = read_yaml(args.settings) or {}
            return await request(
                {"type": "configure_tenant", "tenant_id": tenant, "settings": settings}
            )
        case "create":
            spec = load_spec(args.spec)
            if args.contracts:
                spec["criteria"] = [
                    *spec.get("criteria", []),
                    {"field": "contract_id", "values": args.contracts.split(",")},
                ]
            return await request({"type": "create_broadcast", **spec})
        case "update":
            spec = load_spec(args.spec)
            spec.pop("broadcast_id", None)
            return await request(
                {"type": "update_broadcast", "broadcast_id": args.broadcast_id, **spec}
            )
        case "resend":
            return await request(
                {
                    "type": "resend_broadcast",
                    "tenant_id": tenant,
                    "broadcast_id": args.broadcast_id,
                    "only_failed": args.failed,
                    "include_unknown": args.include_unknown,
                }
            )
        case "preview":
            return await request(
                {
                    "type": "preview_broadcast",
                    "tenant_id": tenant,
                    "broadcast_id": args.broadcast_id,
                    "to": args.to,
                    "channel": args.channel,
                }
            )
        case "start" | "pause" | "resume" | "cancel":
            return await request(
                {
                    "type": f"{args.command}_broadcast",
                    "tenant_id": tenant,
                    "broadcast_id": args.broadcast_id,
                }
            )
        case "status":
            return await status(args)
        case "schedule":
            return await request(
                {
                    "type": "schedule_broadcast",
                    "tenant_id": tenant,
                    "broadcast_id": args.broadcast_id,
                    "at": args.at,
                }
            )
        case "rename":
            return await request(
                {
                    "type": "rename_broadcast",
                    "tenant_id": tenant,
                    "broadcast_id": args.broadcast_id,
                    "name": args.name,
                }
            )
        case "list":
            return {"broadcasts": await broadcasts_of(args.tenant, args.state)}
        case "actions" if args.verb:
            if args.action_id is None:
                raise Usage("actions send|ignore needs an ACTION_ID")
            command: dict[str, Any] = {
                "type": "resolve_action",
                "tenant_id": tenant,
                "action_id": args.action_id,
                "resolution": args.verb,
            }
            if args.to:
                command["address"] = args.to
            return await request(command)
        case "actions":
            listing: dict[str, Any] = {"type": "list_actions", "tenant_id": tenant}
            if args.broadcast:
                listing["broadcast_id"] = args.broadcast
            if args.state:
                listing["state"] = args.state
            return await request(listing)
    raise Usage(f"unknown command {args.command}")


def show(answer: dict[str, Any], as_json: bool, quiet: bool = False) -> None:
    if quiet:
        for key in ("broadcast_id", "action_id", "run_id"):
            if answer.get(key):
                print(answer[key])
                return
        return
    if as_json:
        print(json.dumps(answer, default=str, ensure_ascii=False))
        return
    for key, value in answer.items():
        if key in ("schema_version", "event_id", "occurred_at", "request_id"):
            continue
        print(f"{key:20} {json.dumps(value, default=str, ensure_ascii=False)}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command in ("up", "down"):
        return stack(args.command)
    if args.command == "demo":
        return subprocess.call([sys.executable, "-m", "deploy.local.demo"], cwd=REPO)
    if args.command == "import":
        return import_contracts(args)
    try:
        answer = asyncio.run(execute(args))
    except Usage as usage:
        print(f"broadcast: {usage}", file=sys.stderr)
        return USAGE
    except Refused as refused:
        show(refused.answer, args.json and not args.quiet)
        return REFUSED
    # OSError covers a refused connection to PostgreSQL; KafkaError a broker that cannot be
    # reached (aiokafka's bootstrap failure is not an OSError).
    except (TimeoutError, OSError, KafkaError) as error:
        print(f"no answer: is the stack up? (broadcast up) [{error}]", file=sys.stderr)
        return NO_ANSWER
    show(answer, args.json, args.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
