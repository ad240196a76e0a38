"""Cursors and pages for the queries' answers. Pure: no I/O.

A cursor is opaque to the caller: the keyset position after the last item of a page, as
URL-safe base64 of a JSON list, so a page continues where the previous one ended even when
items were added meanwhile. A service fetches `limit + 1` rows: the extra one says whether
another page follows, without counting.
"""

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


class InvalidCursor(ValueError):
    """The cursor was not produced by this query (edited, truncated, or another query's)."""

    field = "cursor"


def encode_cursor(*position: str | int) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, *types: type) -> list[Any]:
    """The position `encode_cursor` was given; InvalidCursor unless it holds one value of each
    of `types`, in order."""
    try:
        position = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidCursor("not a cursor this query gave") from None
    if (
        not isinstance(position, list)
        or len(position) != len(types)
        # bool is an int to isinstance, and never a position.
        or any(type(v) is not t for v, t in zip(position, types, strict=True))
        # Positions are compared with integer columns: one PostgreSQL cannot hold is not ours
        # (it would fail the query as an internal error instead of naming the cursor).
        or any(type(v) is int and not -(2**31) <= v < 2**31 for v in position)
    ):
        raise InvalidCursor("not a cursor this query gave")
    return position


def page(
    rows: Sequence[T], limit: int, position: Callable[[T], tuple[str | int, ...]]
) -> tuple[list[T], str | None]:
    """The first `limit` rows and the cursor of the next page (None when `rows`, fetched with
    `limit + 1`, holds no more)."""
    items = list(rows[:limit])
    if len(rows) <= limit or not items:
        return items, None
    return items, encode_cursor(*position(items[-1]))
