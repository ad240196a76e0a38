"""One bad record never stops a partition: infrastructure failures are told from a record's own.

A batch that fails because the database, the broker or the network failed is retried whole,
after the error backoff (`BackoffOnError`): nothing is wrong with its records. Any other failure
belongs to a record: a value the database refuses, a template that divides by zero, a bug that
one input triggers. Retrying such a batch fails the same way forever and holds every tenant
whose records share its partitions. So the batch is replayed record by record, which the
handlers' idempotency makes harmless (a crash replays batches the same way), and each record
that fails again becomes its own outcome through `on_poison`: a `rejected` answer, a failed
message with its manual action, or a dead letter. Then the batch is acknowledged.
"""

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
from aiokafka.errors import KafkaError, KafkaTimeoutError, KafkaUnavailableError, ProducerClosed

T = TypeVar("T")
log = logging.getLogger(__name__)

Handler = Callable[[list[T]], Awaitable[None]]
OnPoison = Callable[[T, Exception], Awaitable[None]]

# PostgreSQL classes 08 (connection), 53 (insufficient resources), 57 (operator intervention:
# shutdown, cannot connect now, cancelled) and 40 (transaction rollback: deadlock,
# serialization); the driver's own interface errors (a closed pool or connection) and internal
# client errors: asyncpg 0.32's pool raises one while it reconnects to a server coming back
# (seen with PostgreSQL SIGKILLed mid-broadcast, tests/faults/test_outcomes.py).
_DATABASE_DOWN: tuple[type[Exception], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InsufficientResourcesError,
    asyncpg.OperatorInterventionError,
    asyncpg.TransactionRollbackError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)
# aiokafka marks what a retry can fix; these three it does not mark, yet they only say the
# broker could not be reached or the producer is shutting down.
_BROKER_DOWN: tuple[type[Exception], ...] = (
    KafkaTimeoutError,
    KafkaUnavailableError,
    ProducerClosed,
)


class RetryLater(Exception):
    """Raised by a handler for a condition that time fixes, such as a record that overtook
    another it depends on: the batch is retried, like after an outage."""


def is_transient(error: BaseException) -> bool:
    """True when retrying later can succeed: the database, the broker or the network failed
    (OSError covers refused and reset connections and timeouts), or the handler said so
    (RetryLater). False when the record itself is at fault, including a record too large for
    the broker."""
    if isinstance(error, (OSError, RetryLater, *_DATABASE_DOWN, *_BROKER_DOWN)):
        return True
    return isinstance(error, KafkaError) and bool(getattr(error, "retriable", False))


def isolating(on_poison: OnPoison[T]) -> Callable[[Handler[T]], Handler[T]]:
    """Wrap a batch handler so that a record failing on its own goes to `on_poison` and the
    rest of its batch is handled; a transient failure still fails the whole batch."""

    def wrap(handle: Handler[T]) -> Handler[T]:
        # FastStream reads the body's type from the handler's signature (through `wraps`) and
        # passes it by the parameter's name.
        name = next(iter(inspect.signature(handle).parameters))

        @functools.wraps(handle)
        async def handled(*args: Any, **kwargs: Any) -> None:
            batch: list[T] = args[0] if args else kwargs[name]
            try:
                await handle(batch)
                return
            except Exception as error:
                if is_transient(error):
                    raise
                log.warning(
                    "a batch of %d failed (%s); replaying it record by record",
                    len(batch),
                    type(error).__name__,
                )
            for record in batch:
                try:
                    await handle([record])
                except Exception as error:
                    if is_transient(error):
                        raise
                    await on_poison(record, error)

        return handled

    return wrap


def in_a_few_words(error: BaseException, limit: int = 200) -> str:
    """The error's type and message, cut to `limit` characters: enough to act on, never a
    whole template or payload echoed back."""
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
