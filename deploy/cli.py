"""`broadcast`: the operator's command line, through the same events as any other service.

Commands and queries publish on `broadcast.requests` and wait for their answer on
`broadcast.events` (shared.client); only `import` reads a view (targeting's, to wait until the
file is applied). `--client NAME` (default $BROADCAST_REQUEST_CLIENT) speaks as that request
client, on its own topic `broadcast.requests.NAME`: answered only for the tenants it holds, on
`broadcast.events.NAME`. `status --watch` polls `get_broadcast`, so it works for a client too.
`--lang fr|en` chooses the labels answers carry (states, outcomes).
Every command has `--help`; `--json` prints the answer as JSON for scripts. Exit codes: 0 done,
1 refused (the answer says why), 2 bad usage, 3 no answer in time (is the stack up?).
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

import asyncpg
import yaml
from aiokafka.errors import KafkaError

from shared.client import endpoints, progress, watch
from shared.client.commands import Commands
from shared.events import ActionState, Language, MessageState
from shared.requesters import RequestClientsError, topic_for

REPO = Path(__file__).resolve().parents[1]
REFUSED, USAGE, NO_ANSWER = 1, 2, 3
# Broadcasts per list_broadcasts page: its maximum, so a long list takes few requests.
LIST_PAGE = 200


class Usage(Exception):
    """A command line that cannot be turned into a request (exit code 2)."""


class Refused(Exception):
    def __init__(self, answer: dict[str, Any]) -> None:
        super().__init__(answer.get("message", "refused"))
        self.answer = answer


@contextlib.asynccontextmanager
async def session(client: str | None, timeout: float = 30.0) -> AsyncIterator[Commands]:
    """One producer and one answers log for several requests (`status --watch` polls), speaking
    as `client` (None: the platform)."""
    who = os.environ.get("USER", "operator")
    local = endpoints.local()
    async with contextlib.AsyncExitStack() as stack:
        # Connecting is bounded too: a stack that is down is no answer.
        async with asyncio.timeout(timeout):
            commands = await stack.enter_async_context(
                Commands(
                    local.kafka,
                    requested_by=who,
                    prefix="cli",
                    client=client,
                    security=local.kafka_security,
                )
            )
        yield commands


async def ask(commands: Commands, command: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    """The command's answer; Refused when it was rejected."""
    answer = await commands.ask(command, timeout)
    if answer["type"] == "broadcast.rejected":
        raise Refused(answer)
    return answer


async def request(
    client: str | None, command: dict[str, Any], timeout: float = 30.0
) -> dict[str, Any]:
    """Publish one command as `client` and return its answer; Refused when it was rejected."""
    async with asyncio.timeout(timeout), session(client, timeout) as commands:
        return await ask(commands, command, timeout)


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
    """A connection to the services' views, to wait for an import: the CLI never writes."""
    connection = await asyncpg.connect(endpoints.local().database_url)
    try:
        yield connection
    finally:
        await connection.close()


async def run_status(commands: Commands, args: argparse.Namespace) -> dict[str, Any]:
    """The broadcast's state and its latest run's counters, from get_broadcast (targeting
    keeps the tracker's counters as its events announce them)."""
    described = await ask(
        commands,
        {
            "type": "get_broadcast",
            "tenant_id": args.tenant,
            "broadcast_id": args.broadcast_id,
            "language": args.lang,
            "limit": 1,
        },
    )
    broadcast = described["broadcast"]
    run = broadcast["latest_run"] or {}
    # A run the tracker has not announced yet is running, with nothing counted.
    counters = {
        "contracts_targeted": 0,
        "messages_targeted": None,
        "delivered": 0,
        "failed": 0,
        "cancelled": 0,
        "contracts_reached": 0,
        "contracts_not_reached": 0,
        **(run.get("counters") or {}),
    }
    return {
        "run_id": run.get("run_id"),
        "run_number": run.get("run_number"),
        "state": run.get("state", "running"),
        "broadcast_state": broadcast["state"],
        "broadcast_state_label": broadcast["state_label"],
        "outcome": run.get("outcome"),
        "outcome_label": run.get("outcome_label"),
        "name": broadcast["name"],
        **counters,
    }


async def broadcasts_of(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The seed's list: name, creation and send dates, targeted / delivered / failed, every
    page of list_broadcasts."""
    query: dict[str, Any] = {
        "type": "list_broadcasts",
        "tenant_id": args.tenant,
        "state": args.state,
        "language": args.lang,
        "limit": LIST_PAGE,
    }
    listed = []
    async with session(args.client) as commands:
        while True:
            answer = await ask(commands, query)
            for summary in answer["broadcasts"]:
                # A broadcast never started has no run: nothing targeted, nothing counted.
                counters = (summary["latest_run"] or {}).get("counters") or {}
                listed.append(
                    {
                        key: summary[key]
                        for key in ("broadcast_id", "name", "state", "state_label", "created_at")
                    }
                    | {
                        "started_at": summary["started_at"],
                        "targeted": counters.get("messages_targeted"),
                        "delivered": counters.get("delivered", 0),
                        "failed": counters.get("failed", 0),
                        # The seed's three counters: contracts targeted, reached, not reached.
                        "contracts_targeted": counters.get("contracts_targeted", 0),
                        "contracts_reached": counters.get("contracts_reached", 0),
                        "contracts_not_reached": counters.get("contracts_not_reached", 0),
                    }
                )
            if answer["next_cursor"] is None:
                return listed
            query["cursor"] = answer["next_cursor"]


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


def finished(found: dict[str, Any]) -> bool:
    """The latest run is complete and the broadcast's lifecycle knows it (a resend may follow)."""
    return found["state"] == "completed" and found["broadcast_state"] in ("completed", "cancelled")


async def status(args: argparse.Namespace) -> dict[str, Any]:
    async with session(args.client) as commands:
        while True:
            found = await run_status(commands, args)
            if found["run_id"] is None and found["broadcast_state"] != "scheduled":
                raise Refused(
                    {"reason": "not_started", "message": f"it is {found['broadcast_state']}"}
                )
            if not args.watch or finished(found):
                if args.watch and not args.json:
                    print()
                return found
            if not args.json and found["run_id"] is not None:
                done = found["delivered"] + found["failed"] + found["cancelled"]
                where = "paused" if found["broadcast_state"] == "paused" else "in progress"
                line = f"{progress.bar(done, found['messages_targeted'])} {where}"
                progress.redraw(line, sys.stdout)
            await asyncio.sleep(1)


def import_contracts(args: argparse.Namespace) -> int:
    """Publish the file like any producer, then wait until targeting's read model has it, so
    that the next command (an estimate) counts it."""
    from services.targeting.importer import import_file

    if not args.file.is_file():
        print(f"{args.file}: no such file", file=sys.stderr)
        return USAGE
    local = endpoints.local()
    imported = import_file(args.file, args.tenant, local.kafka, local.kafka_security)

    async def applied() -> int:
        async with read_models() as connection:
            return await watch.until_contracts(
                connection, args.tenant, imported.contracts, min_version=imported.version
            )

    try:
        asyncio.run(applied())
    except TimeoutError:
        print("imported, but targeting has not applied it yet", file=sys.stderr)
        return NO_ANSWER
    show({"imported": imported.contracts, "refused": imported.refused}, args.json)
    return REFUSED if imported.refused else 0


def client_name(name: str) -> str | None:
    """--client's value: a request client's name, or none (empty: the platform's topic)."""
    if not name:
        return None
    try:
        topic_for(name)
    except RequestClientsError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return name


def stack(*words: str) -> int:
    return subprocess.call([sys.executable, "-m", "deploy.local.stack", *words], cwd=REPO)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="broadcast", description=__doc__.splitlines()[0])
    root.add_argument("--json", action="store_true", help="print answers as JSON")
    root.add_argument(
        "--lang", choices=get_args(Language), default="fr", help="labels' language (fr)"
    )
    root.add_argument(
        "--client",
        type=client_name,
        default=os.environ.get("BROADCAST_REQUEST_CLIENT", ""),
        help="speak as this request client, on its own request and answers topics (default: "
        "$BROADCAST_REQUEST_CLIENT, else the platform)",
    )
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
    pre = tenant_command(
        "preview",
        "send the draft, for one sample contract, to one address (--to); or only show it "
        "rendered (--show), nothing sent",
    )
    pre.add_argument("broadcast_id")
    pre.add_argument("--to", help="the address the preview is sent to")
    pre.add_argument("--show", action="store_true", help="print the rendered message instead")
    pre.add_argument(
        "--contract",
        help="the contract it is rendered for (default: a sample one with --show, else the "
        "first the criteria match)",
    )
    pre.add_argument("--channel", choices=["email", "sms"], default="email")
    pre.add_argument(
        "--lang",
        dest="language",
        choices=["fr", "en"],
        help="with --show, the language (default: the contract's, else the broadcast's first)",
    )
    for name, text in (
        ("start", "send a draft"),
        ("pause", "hold a running broadcast"),
        ("resume", "release a paused broadcast; nobody gets the message twice"),
        ("cancel", "stop a draft, scheduled, running or paused broadcast"),
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
    msg = tenant_command("messages", "the per-message log of a broadcast's run, one page")
    msg.add_argument("broadcast_id")
    msg.add_argument("--run", type=int, help="run number (default: the latest)")
    msg.add_argument("--state", choices=get_args(MessageState))
    msg.add_argument("--limit", type=int, default=100, help="messages per page (at most 500)")
    msg.add_argument("--cursor", help="the next_cursor of the previous page")
    tenant_command("variables", "the variables a template may use, with their labels")
    tenant_command("criteria", "the criteria fields and values, with their labels")
    act = tenant_command("actions", "manual actions: list, or send / ignore one")
    act.add_argument("verb", nargs="?", choices=["send", "ignore"])
    act.add_argument("action_id", nargs="?", type=int)
    act.add_argument("--broadcast")
    act.add_argument("--state", choices=get_args(ActionState))
    act.add_argument("--to", help="a corrected address, with send")
    ree = tenant_command(
        "reenable", "let an address a bounce, a complaint or a STOP suppressed be targeted again"
    )
    ree.add_argument("address")
    ree.add_argument("--channel", choices=["email", "sms"], default="email")
    ree.add_argument("--reason", default="", help="why, kept with the suppression's history")
    return root


async def execute(args: argparse.Namespace) -> dict[str, Any]:
    tenant = getattr(args, "tenant", None)
    match args.command:
        case "estimate":
            return await request(
                args.client,
                {
                    "type": "estimate_broadcast",
                    "tenant_id": tenant,
                    "criteria": criteria(args.where),
                    "channels": args.channel or ["email"],
                },
            )
        case "configure":
            settings = read_yaml(args.settings) or {}
            return await request(
                args.client, {"type": "configure_tenant", "tenant_id": tenant, "settings": settings}
            )
        case "create":
            spec = load_spec(args.spec)
            if args.contracts:
                spec["criteria"] = [
                    *spec.get("criteria", []),
                    {"field": "contract_id", "values": args.contracts.split(",")},
                ]
            return await request(args.client, {"type": "create_broadcast", **spec})
        case "update":
            spec = load_spec(args.spec)
            spec.pop("broadcast_id", None)
            return await request(
                args.client, {"type": "update_broadcast", "broadcast_id": args.broadcast_id, **spec}
            )
        case "resend":
            return await request(
                args.client,
                {
                    "type": "resend_broadcast",
                    "tenant_id": tenant,
                    "broadcast_id": args.broadcast_id,
                    "only_failed": args.failed,
                    "include_unknown": args.include_unknown,
                },
            )
        case "preview":
            return await request(args.client, preview_command(args))
        case "start" | "pause" | "resume" | "cancel":
            return await request(
                args.client,
                {
                    "type": f"{args.command}_broadcast",
                    "tenant_id": tenant,
                    "broadcast_id": args.broadcast_id,
                },
            )
        case "status":
            return await status(args)
        case "schedule":
            return await request(
                args.client,
                {
                    "type": "schedule_broadcast",
                    "tenant_id": tenant,
                    "broadcast_id": args.broadcast_id,
                    "at": args.at,
                },
            )
        case "rename":
            return await request(
                args.client,
                {
                    "type": "rename_broadcast",
                    "tenant_id": tenant,
                    "broadcast_id": args.broadcast_id,
                    "name": args.name,
                },
            )
        case "list":
            return {"broadcasts": await broadcasts_of(args)}
        case "messages":
            query: dict[str, Any] = {
                "type": "list_messages",
                "tenant_id": tenant,
                "broadcast_id": args.broadcast_id,
                "run_number": args.run,
                "state": args.state,
                "limit": args.limit,
                "cursor": args.cursor,
                "language": args.lang,
            }
            return await request(args.client, query)
        case "variables" | "criteria":
            kind = "list_variables" if args.command == "variables" else "describe_criteria"
            return await request(
                args.client, {"type": kind, "tenant_id": tenant, "language": args.lang}
            )
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
            return await request(args.client, command)
        case "reenable":
            return await request(
                args.client,
                {
                    "type": "reenable_contact",
                    "tenant_id": tenant,
                    "channel": args.channel,
                    "address": args.address,
                    "reason": args.reason,
                },
            )
        case "actions":
            listing: dict[str, Any] = {"type": "list_actions", "tenant_id": tenant}
            if args.broadcast:
                listing["broadcast_id"] = args.broadcast
            if args.state:
                listing["state"] = args.state
            return await request(args.client, listing)
    raise Usage(f"unknown command {args.command}")


def preview_command(args: argparse.Namespace) -> dict[str, Any]:
    """`preview --show`: render only (render_preview); else send to `--to` (preview_broadcast)."""
    if args.show == bool(args.to):
        raise Usage("preview needs either --to ADDRESS (send it) or --show (print it)")
    command: dict[str, Any] = {
        "type": "render_preview" if args.show else "preview_broadcast",
        "tenant_id": args.tenant,
        "broadcast_id": args.broadcast_id,
        "channel": args.channel,
    }
    if args.to:
        command["to"] = args.to
    if args.contract:
        command["contract_id"] = args.contract
    if args.language:
        if not args.show:
            raise Usage("--lang goes with --show: a preview sent is in its contract's language")
        command["language"] = args.language
    return command


def rendered_text(answer: dict[str, Any]) -> str:
    """A broadcast.rendered answer as a person reads it: the email's subject, text and HTML, or
    the SMS with what it costs."""
    who = answer["contract_id"] or "the sample contract"
    head = f"{answer['channel']} in {answer['language']} for {who}, nothing sent"
    if answer.get("sms"):
        sms = answer["sms"]
        cost = (
            f"{sms['segments']} segment(s) of at most {sms['max_segments']}, {sms['encoding']}, "
            f"{sms['units']} units"
        )
        return f"{head}\n\n{sms['text']}\n\n({cost})"
    email = answer["email"]
    cut = "\n[text cut]" if email["text_cut"] else ""
    return (
        f"{head}\n\nSubject: {email['subject']}\n\n{email['text']}{cut}\n"
        f"--- HTML ---\n{email['html']}"
    )


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
    if answer.get("type") == "broadcast.rendered":
        print(rendered_text(answer))
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
