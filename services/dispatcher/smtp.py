"""An SMTP relay reached through a pool of persistent aiosmtplib connections, pipelined
(RFC 2920, pipelining.py) when the server advertises it and in lockstep otherwise."""

import asyncio
from collections import deque

import aiosmtplib

from shared.events import MessageRendered

from . import pipelining
from .pipelining import CONNECTION_LOST, Transaction, reset, why
from .policy import Attempt, connection_failure, invalid_address, outcome_unknown, smtp_reply
from .settings import Settings


class SmtpRelay:
    """Sends one message per call over the least busy of `size` connections, opened lazily and
    kept open.

    A connection that failed is closed and reopened on its next use, so a relay that dropped
    connections recovers by itself.
    """

    def __init__(
        self,
        *,
        host: str,
        port: int,
        size: int,
        timeout: float,
        implicit_tls: bool = False,
        starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self._lanes = [
            _Lane(
                aiosmtplib.SMTP(
                    hostname=host,
                    port=port,
                    timeout=timeout,
                    use_tls=implicit_tls,
                    start_tls=starttls,
                    username=username,
                    password=password,
                )
            )
            for _ in range(size)
        ]

    @classmethod
    def from_settings(cls, settings: Settings) -> "SmtpRelay":
        password = settings.smtp_password
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            size=settings.smtp_connections,
            timeout=settings.smtp_timeout_seconds,
            implicit_tls=settings.smtp_implicit_tls,
            starttls=settings.smtp_starttls,
            username=settings.smtp_username,
            password=password.get_secret_value() if password else None,
        )

    async def send(self, message: MessageRendered) -> Attempt:
        """`message.body` is the whole RFC 5322 message, sent from `message.sender`."""
        recipient = message.address
        if "@" not in recipient or any(c in recipient for c in "\r\n <>"):
            return invalid_address(f"not an email address: {recipient!r}")
        lane = min(self._lanes, key=_Lane.load)
        outcome = asyncio.get_running_loop().create_future()
        body = message.body.encode()
        return await lane.send(Transaction(message.sender, recipient, body, outcome))

    async def close(self) -> None:
        """Sends what is queued, then says QUIT on every open connection."""
        for lane in self._lanes:
            await lane.close()


class _Lane:
    """One connection and the messages queued for it, sent in order by one task of its own: a
    message that waits can then follow the previous one's body in the same write."""

    def __init__(self, connection: aiosmtplib.SMTP) -> None:
        self._connection = connection
        self._waiting: deque[Transaction] = deque()
        self._queued = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._busy = False
        self._closing = False

    def load(self) -> int:
        return len(self._waiting) + self._busy

    async def send(self, transaction: Transaction) -> Attempt:
        self._waiting.append(transaction)
        self._queued.set()
        if self._task is None:
            self._task = asyncio.create_task(self._work())
        return await transaction.outcome

    async def close(self) -> None:
        self._closing = True
        self._queued.set()
        if self._task is not None:
            await self._task
        if self._connection.is_connected:
            try:
                await self._connection.quit()
            except aiosmtplib.SMTPException:
                self._connection.close()

    def _next(self) -> Transaction | None:
        """The next message whose sender still waits for it (a cancelled one is not sent)."""
        while self._waiting:
            transaction = self._waiting.popleft()
            if not transaction.outcome.done():
                return transaction
        return None

    async def _work(self) -> None:
        while True:
            await self._queued.wait()
            transaction = self._next()
            if transaction is None:
                if self._closing:
                    return
                self._queued.clear()
                continue
            self._busy = True
            try:
                await self._deliver(transaction)
            finally:
                self._busy = False

    async def _deliver(self, transaction: Transaction) -> None:
        connection = self._connection
        taken = [transaction]

        def following() -> tuple[Transaction, bytes] | None:
            while (waiting := self._next()) is not None:
                try:
                    envelope = pipelining.envelope(waiting.sender, waiting.recipient)
                except ValueError as error:  # what aiosmtplib's mail()/rcpt() would raise
                    waiting.outcome.set_exception(error)
                    continue
                taken.append(waiting)
                return waiting, envelope
            return None

        try:
            if not connection.is_connected:
                await connection.connect()
            await _greet(connection)
            if connection.supports_extension("pipelining"):
                envelope = pipelining.envelope(transaction.sender, transaction.recipient)
                await pipelining.send(connection, (transaction, envelope), following)
            else:
                transaction.settle(await _lockstep(connection, transaction))
        except CONNECTION_LOST as error:
            connection.close()
            transaction.settle(connection_failure(why(error)))
        except aiosmtplib.SMTPResponseException as error:
            await reset(connection)
            transaction.settle(smtp_reply(error.code, error.message))
        except Exception as error:
            # What nobody foresaw reaches each sender raised, as when senders held the
            # connection themselves: the hand-over takes it as an unknown outcome.
            connection.close()
            for taken_transaction in taken:
                if not taken_transaction.outcome.done():
                    taken_transaction.outcome.set_exception(error)


async def _lockstep(connection: aiosmtplib.SMTP, transaction: Transaction) -> Attempt:
    """One command at a time with aiosmtplib, for a server without PIPELINING."""
    try:
        await connection.mail(transaction.sender)
        await connection.rcpt(transaction.recipient)
    except CONNECTION_LOST as error:
        connection.close()
        return connection_failure(why(error))
    except aiosmtplib.SMTPResponseException as error:
        await reset(connection)
        return smtp_reply(error.code, error.message)
    # Once DATA starts, a lost connection leaves the outcome unknown (RFC 1047): the relay may
    # have queued the message before its reply was lost, so it is not sent again.
    try:
        reply = await connection.data(transaction.body)
        return smtp_reply(reply.code, reply.message)
    except CONNECTION_LOST as error:
        connection.close()
        return outcome_unknown(f"connection lost during DATA: {why(error)}")
    except aiosmtplib.SMTPResponseException as error:
        await reset(connection)
        return smtp_reply(error.code, error.message)


async def _greet(connection: aiosmtplib.SMTP) -> None:
    """EHLO (HELO if refused) once per connection, as aiosmtplib's `mail()` would, so that the
    server's extensions are known before the first message."""
    if connection.is_ehlo_or_helo_needed:
        try:
            await connection.ehlo()
        except aiosmtplib.SMTPHeloError:
            await connection.helo()
