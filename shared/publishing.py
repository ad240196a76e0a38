"""The publishing side of a topic, as our code uses it.

Our own protocol instead of FastStream's `DefaultPublisher`, whose import path is internal: a
handler depends on "something that publishes a record with a key", which the broker's publishers
and the tests' fakes both are.
"""

from typing import Any, Protocol


class Publisher(Protocol):
    # `no_confirm` spelled out rather than `**options`: FastStream's publisher takes no
    # arbitrary keywords, so a protocol asking for them is one it does not meet (mypy).
    async def publish(
        self, message: Any, *, key: bytes | None = None, no_confirm: bool = False
    ) -> Any: ...
