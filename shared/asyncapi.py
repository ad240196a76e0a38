"""The AsyncAPI documents of the four services, as FastStream generates them from the code.

python -m shared.asyncapi write   # regenerate docs/asyncapi/<service>.yaml
python -m shared.asyncapi check   # exit 1 when a committed document is out of date
"""

import importlib
import sys
from pathlib import Path

import yaml

from shared.requesters import Requesters

SERVICES = ("targeting", "composer", "dispatcher", "tracker")
DOCS = Path(__file__).resolve().parent.parent / "docs" / "asyncapi"


def generate(service: str) -> str:
    module = importlib.import_module(f"services.{service}.app")
    settings = importlib.import_module(f"services.{service}.settings").Settings
    # Fixed values, so the document does not depend on the environment it is generated in. Local
    # mode: nothing runs, so the development secrets do no harm.
    app = module.create_app(
        settings(
            kafka_bootstrap_servers="kafka:9092",
            BROADCAST_REQUEST_CLIENTS=Requesters(),
            BROADCAST_LOCAL_MODE=True,
        )
    )
    # Sorted keys: FastStream's channel order varies from one process to the next.
    document = app.schema.to_specification().to_jsonable()
    return yaml.safe_dump(document, sort_keys=True, allow_unicode=True, width=100)


def stale() -> list[str]:
    return [
        service
        for service in SERVICES
        if not (DOCS / f"{service}.yaml").exists()
        or (DOCS / f"{service}.yaml").read_text() != generate(service)
    ]


def main(argv: list[str]) -> int:
    if argv == ["write"]:
        DOCS.mkdir(parents=True, exist_ok=True)
        for service in SERVICES:
            (DOCS / f"{service}.yaml").write_text(generate(service))
        print(f"wrote {len(SERVICES)} documents to {DOCS}")
        return 0
    if argv == ["check"]:
        out_of_date = stale()
        for service in out_of_date:
            print(f"docs/asyncapi/{service}.yaml is out of date: run `make asyncapi`")
        return 1 if out_of_date else 0
    print("usage: python -m shared.asyncapi write|check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
