"""The command line of the local stack (run from the repo root):

python -m deploy.local.stack up [COMPONENT...]     # default: all, in table order
python -m deploy.local.stack down [COMPONENT...]   # default: all, in reverse order
python -m deploy.local.stack status
python -m deploy.local.stack kafka-env PRINCIPAL  # a secure broker's client variables, to eval
"""

import argparse
import shlex
import sys
from collections.abc import Sequence

from .component import StackError
from .config import kafka_dir
from .control import down, status, up
from .kafka_secure import Secrets, principals


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.local.stack", description="Local infrastructure runner"
    )
    sub = parser.add_subparsers(dest="action", required=True)
    for action in ("up", "down"):
        sub.add_parser(action).add_argument("components", nargs="*", metavar="COMPONENT")
    sub.add_parser("status")
    sub.add_parser(
        "kafka-env", help="export lines for a tool speaking as PRINCIPAL to the secure broker"
    ).add_argument("principal", choices=principals())
    args = parser.parse_args(argv)
    try:
        if args.action == "up":
            up(args.components)
        elif args.action == "down":
            down(args.components)
        elif args.action == "kafka-env":
            variables = Secrets(kafka_dir()).client_env("BROADCAST_", args.principal)
            print("\n".join(f"export {k}={shlex.quote(v)}" for k, v in variables.items()))
        else:
            return 0 if status() else 1
    except StackError as exc:
        print(f"stack: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
