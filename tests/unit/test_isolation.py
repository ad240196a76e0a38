"""A record that fails on its own becomes its own outcome; an outage fails the batch."""

import asyncpg
import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError, RequestTimedOutError

from services.composer.runs import RunNotKnownYet
from shared.isolation import in_a_few_words, is_transient, isolating
from shared.kafka import ECHO_LIMIT, echo


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(),
        TimeoutError(),
        asyncpg.ConnectionDoesNotExistError("gone"),
        asyncpg.CannotConnectNowError("starting"),
        asyncpg.AdminShutdownError("shutting down"),
        asyncpg.TooManyConnectionsError("full"),
        asyncpg.DeadlockDetectedError("deadlock"),
        asyncpg.InterfaceError("pool is closed"),
        asyncpg.InternalClientError("PoolConnectionHolder.connect() called while another"),
        KafkaConnectionError(),
        RequestTimedOutError(),
    ],
    ids=type,
)
def test_outages_are_transient(error: Exception) -> None:
    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        ZeroDivisionError(),
        RecursionError(),
        OverflowError("date value out of range"),
        asyncpg.CharacterNotInRepertoireError("invalid byte sequence for encoding UTF8: 0x00"),
        asyncpg.NumericValueOutOfRangeError("bigint out of range"),
        MessageSizeTooLargeError(),
        ValueError(),
        KeyError("x"),
    ],
    ids=type,
)
def test_a_records_own_faults_are_not(error: Exception) -> None:
    assert not is_transient(error)


async def test_a_poison_record_is_set_aside_and_the_others_are_handled() -> None:
    handled: list[int] = []
    poisoned: list[tuple[int, str]] = []

    async def on_poison(record: int, error: Exception) -> None:
        poisoned.append((record, type(error).__name__))

    @isolating(on_poison)
    async def handle(batch: list[int]) -> None:
        for record in batch:
            if record == 3:
                raise ZeroDivisionError
        handled.extend(batch)

    await handle([1, 2, 3, 4])
    assert handled == [1, 2, 4]  # replayed one by one once the batch failed
    assert poisoned == [(3, "ZeroDivisionError")]


async def test_an_outage_fails_the_whole_batch_for_a_retry() -> None:
    async def on_poison(record: int, error: Exception) -> None:
        raise AssertionError("an outage is nobody's poison")

    @isolating(on_poison)
    async def handle(batch: list[int]) -> None:
        raise asyncpg.CannotConnectNowError("the database system is starting up")

    with pytest.raises(asyncpg.CannotConnectNowError):
        await handle([1, 2])


async def test_an_outage_during_the_replay_fails_the_batch_too() -> None:
    calls: list[list[int]] = []

    async def on_poison(record: int, error: Exception) -> None:
        raise AssertionError("not reached")

    @isolating(on_poison)
    async def handle(batch: list[int]) -> None:
        calls.append(batch)
        if len(calls) == 1:
            raise ValueError("a bad record, it seems")
        raise ConnectionResetError

    with pytest.raises(ConnectionResetError):
        await handle([1, 2])
    assert calls == [[1, 2], [1]]


async def test_the_wrapper_keeps_the_handlers_signature() -> None:
    async def on_poison(record: int, error: Exception) -> None:
        pass

    async def handle(batch: list[int]) -> None:
        """Docs."""

    wrapped = isolating(on_poison)(handle)
    # FastStream reads the body's type from the signature: the wrapper must not hide it.
    assert wrapped.__wrapped__ is handle  # type: ignore[attr-defined]
    assert wrapped.__doc__ == "Docs."


def test_echoed_input_is_bounded_and_serialisable() -> None:
    assert echo(None) is None
    assert echo("court") == "court"
    long = echo("x" * 600_000)
    assert long is not None and len(long) == ECHO_LIMIT and long.endswith("…")
    # A lone surrogate cannot be written as UTF-8 JSON: it is replaced.
    assert echo("req-\ud800") == "req-?"
    assert echo(b"\xff\xfeok") == "\ufffd\ufffdok"
    assert len(echo(b"\x01" * 200_000) or "") == ECHO_LIMIT


def test_an_error_in_a_few_words() -> None:
    assert in_a_few_words(ZeroDivisionError("division by zero")) == (
        "ZeroDivisionError: division by zero"
    )
    assert in_a_few_words(RecursionError()) == "RecursionError"
    assert len(in_a_few_words(ValueError("v" * 10_000))) == 200


def test_a_run_not_known_yet_is_retried_not_failed() -> None:
    # A recipient overtook its run's definition: waiting fixes it.
    assert is_transient(RunNotKnownYet("definition of runs [...] not received"))
