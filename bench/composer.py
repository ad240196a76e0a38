"""The composer's hot path in one process, no Kafka: `python -m bench.composer`.

`hot_path` is what one composer process does per recipient: parse the `recipient.targeted`
JSON, build the recipient's values, render subject, HTML and the text derived from it, build
the MIME message, serialise the `message.rendered` event. The run is compiled once, as the
composer does; every recipient has its own name, address and balance (bench/invoice.py).
`hot_path_dkim` is the same for a tenant that signs (RSA-2048, dkimpy). `build_email` is the
MIME build alone on pre-rendered values, and `email_message_reference` the same message built
with the standard library's EmailMessage, as the composer did before.

Best and median of `--repeats` passes. Prints one JSON document and writes it to
bench/results/composer-latest.json.
"""

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Any

from bench import invoice
from bench.probes import machine
from bench.report import write_json
from services.composer.context import context
from services.composer.mime import ListUnsubscribe, build_email
from services.composer.render import CompiledRun, render
from shared.clock import Clock, utc_now
from shared.events import MessageRendered, RecipientTargeted

DISTINCT = 1000  # distinct recipients, cycled: enough to defeat any caching


def rate(step: Callable[[int], object], count: int, repeats: int) -> dict[str, Any]:
    step(0)  # first-call caches are not part of the rate
    seconds, cpu_seconds = [], []
    for _ in range(repeats):
        started, cpu_started = time.perf_counter(), time.thread_time()
        for i in range(count):
            step(i % DISTINCT)
        seconds.append(time.perf_counter() - started)
        cpu_seconds.append(time.thread_time() - cpu_started)
    best, median = min(seconds), statistics.median(seconds)
    return {
        "messages": count,
        "best_per_s": round(count / best),
        "median_per_s": round(count / median),
        "best_us_per_message": round(best / count * 1e6, 1),
        # CPU time of this thread: what a busy machine's other processes do not inflate.
        "best_cpu_us_per_message": round(min(cpu_seconds) / count * 1e6, 1),
    }


def hot_path(compiled: CompiledRun, clock: Clock = utc_now) -> Callable[[int], object]:
    records = [invoice.recipient(i).model_dump_json().encode() for i in range(DISTINCT)]
    now = clock()

    def step(i: int) -> object:
        output = render(compiled, RecipientTargeted.model_validate_json(records[i]), now)
        assert isinstance(output, MessageRendered), output
        return output.model_dump_json()

    return step


def rendered_inputs(compiled: CompiledRun, clock: Clock = utc_now) -> list[dict[str, Any]]:
    """build_email's per-message arguments, rendered before the clock starts."""
    now = clock()
    templates = compiled.email["fr"]
    inputs = []
    for i in range(DISTINCT):
        recipient = invoice.recipient(i)
        values = context(compiled.values, recipient, "fr", now)
        assert templates.text is not None
        inputs.append(
            {
                "recipient_id": recipient.recipient_id,
                "to": recipient.address,
                "subject": templates.subject.render(values),
                "text": templates.text.render(values),
                "html": templates.html.render(values),
                "sent_at": now,
                "list_unsubscribe": ListUnsubscribe(str(values["unsubscribe_url"])),
            }
        )
    return inputs


def reference(message: dict[str, Any]) -> str:
    """The same message built with the standard library, one EmailMessage per message."""
    built = EmailMessage(policy=policy.SMTP)
    local, _, domain = invoice.SENDER["address"].partition("@")
    built["From"] = Address(display_name=invoice.SENDER["name"], username=local, domain=domain)
    built["To"] = message["to"]
    built["Subject"] = message["subject"]
    built["Date"] = message["sent_at"]
    built["Message-ID"] = f"<{message['recipient_id']}@{domain}>"
    built["List-Unsubscribe"] = f"<{message['list_unsubscribe'].url}>"
    built["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    built.set_content(message["text"], cte="quoted-printable")
    built.add_alternative(message["html"], subtype="html", cte="quoted-printable")
    return built.as_bytes().decode("ascii")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--dkim-messages", type=int, default=300)
    parser.add_argument("--reference-messages", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    compiled = invoice.compiled_run()
    assert compiled.skeleton is not None
    frame = compiled.skeleton
    inputs = rendered_inputs(compiled)
    key = invoice.rsa_key()
    result = {
        "command": " ".join(["python -m bench.composer", *(argv or sys.argv[1:])]),
        "at": utc_now().isoformat(timespec="seconds"),
        "machine": machine(),
        "message_bytes": len(build_email(frame, **inputs[0])),
        "hot_path": rate(hot_path(compiled), args.messages, args.repeats),
        "hot_path_dkim": (
            rate(hot_path(invoice.compiled_run(key)), args.dkim_messages, args.repeats)
            if key
            else "skipped: no openssl to generate a key"
        ),
        "build_email": rate(lambda i: build_email(frame, **inputs[i]), args.messages, args.repeats),
        "email_message_reference": rate(
            lambda i: reference(inputs[i]), args.reference_messages, args.repeats
        ),
    }
    write_json(result, "composer-latest.json")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
