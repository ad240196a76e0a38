import pytest

from shared.paging import InvalidCursor, decode_cursor, encode_cursor, page


def test_a_cursor_gives_back_its_position() -> None:
    cursor = encode_cursor("2026-12-02T10:00:00+00:00", "8d0f6a8e-1111-4a4a-9b9b-000000000001")
    assert "=" not in cursor  # URL-safe, no padding to escape
    assert decode_cursor(cursor, str, str) == [
        "2026-12-02T10:00:00+00:00",
        "8d0f6a8e-1111-4a4a-9b9b-000000000001",
    ]
    assert decode_cursor(encode_cursor(7), int) == [7]


@pytest.mark.parametrize(
    ("cursor", "types"),
    [
        ("not base64 at all!", (int,)),
        (encode_cursor(7), (str,)),  # another query's cursor
        (encode_cursor(7, 8), (int,)),
        (encode_cursor("x"), (int,)),
        ("e30", (int,)),  # {}: JSON, but not a position
        ("dHJ1ZQ", (int,)),  # true: a bool is not a position
        (encode_cursor(2**40), (int,)),  # more than an integer column holds
        (encode_cursor(-(2**31) - 1), (int,)),
    ],
)
def test_a_cursor_not_given_by_the_query_is_refused(cursor: str, types: tuple[type, ...]) -> None:
    with pytest.raises(InvalidCursor) as refused:
        decode_cursor(cursor, *types)
    assert refused.value.field == "cursor"


def test_a_page_says_whether_another_follows() -> None:
    rows = list(range(1, 6))
    assert page(rows[:3], 3, lambda r: (r,)) == ([1, 2, 3], None)
    items, cursor = page(rows[:4], 3, lambda r: (r,))
    assert items == [1, 2, 3]
    assert cursor is not None and decode_cursor(cursor, int) == [3]
    assert page([], 3, lambda r: (r,)) == ([], None)
