"""The command line of the local stack (run from the repo root):

python -m deploy.local.stack up [COMPONENT...]     # default: all, in table order
python -m deploy.local.stack down [COMPONENT...]   # default: all, in reverse order
python -m deploy.local.stack status
"""

import argparse
import sys
from collections.abc import Sequence

from .component import StackError
from .control import down, status, up


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.local.stack", description="Local infrastructure runner"
    )
    sub = parser.add_subparsers(dest="action", required=True)
    for action in ("up", "down"):
        sub.add_parser(action).add_argument("components", nargs="*", metavar="COMPONENT")
    sub.add_parser("status")
    args = parser.parse_args(argv)
    try:
        if args.action == "up":
            up(args.components)
        elif args.action == "down":
            down(args.components)
        else:
            return 0 if status() else 1
    except StackError as exc:
        print(f"stack: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
