"""Two end-to-end runs side by side: each figure before and after, and after / before.

    .venv/bin/python -m bench.compare BEFORE.json AFTER.json

For before/after figures measured on the same machine the same day; `bench.e2e --compare
BEFORE.json` prints the same after its own table. Runs written before a figure existed show
"-" for it.
"""

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.report import figures, fmt


def comparison(
    before: Mapping[str, Any], after: Mapping[str, Any]
) -> list[tuple[str, Any, Any, float | None]]:
    """(label, before, after, after / before) for every figure either run has."""
    old, new = dict(figures(before)), dict(figures(after))
    # dicts keep the table's order: the after run's figures, then any only the before run has.
    labels = [*new, *(label for label in old if label not in new)]
    rows = []
    for label in labels:
        b, a = old.get(label), new.get(label)
        ratio = None
        if isinstance(a, int | float) and isinstance(b, int | float) and b:
            ratio = round(a / b, 2)
        rows.append((label, b, a, ratio))
    return rows


def print_comparison(before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
    print(f"{'':<32}{'before':>14}{'after':>14}{'after/before':>14}")
    for label, b, a, ratio in comparison(before, after):
        shown = "-" if ratio is None else f"{ratio:.2f}"
        print(f"{label:<32}{fmt(b):>14}{fmt(a):>14}{shown:>14}")


def read_run(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    print_comparison(read_run(args.before), read_run(args.after))
    return 0


if __name__ == "__main__":
    sys.exit(main())
