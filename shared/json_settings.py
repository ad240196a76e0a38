"""Settings held as a JSON object in one environment variable (BROADCAST_REQUEST_CLIENTS,
BROADCAST_TOPIC_PARTITIONS): how the text is read, and the error that names the variable."""

import json
from typing import Any


def json_object(
    variable: str, text: str | None, expected: str, error: type[ValueError]
) -> dict[str, Any] | None:
    """The object `variable` holds; None when it is unset or blank. Anything else raises
    `error`, naming the variable and saying what was `expected` (a phrase with an example)."""
    if text is None or not text.strip():
        return None
    try:
        raw = json.loads(text)
    except ValueError as problem:
        raise error(f"{variable}: not JSON ({problem})") from None
    if not isinstance(raw, dict):
        raise error(f"{variable}: expected {expected}")
    return raw
