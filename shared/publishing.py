"""The publishing side of a topic, as our code uses it.

Our own protocol instead of FastStream's `DefaultPublisher`, whose import path is internal: a
handler depends on "something that publishes a record with a key", which the broker's publishers
and the tests' fakes both are.
"""

from typing import Any, Protocol


class Publisher(Protocol):
    # No `**options`: a protocol taking any keyword only matches publishers that do, and
    # FastStream's take a fixed set (partition, headers, ...), so none of them would match.
    async def publish(self, message: Any, *, key: bytes | None = None) -> Any: ...
