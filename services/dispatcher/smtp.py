"""An SMTP relay reached through a pool of persistent aiosmtplib connections, pipelined
(RFC 2920, pipelining.py) when the server advertises it and in lockstep otherwise."""

import asyncio
import logging

import aiosmtplib

from shared.events import MessageRendered

from . import pipelining
from .pipelining import CONNECTION_LOST, reset
from .policy import Attempt, connection_failure, invalid_address, outcome_unknown, smtp_reply
from .settings import Settings

log = logging.getLogger("dispatcher")


class SmtpRelay:
    """Sends one message per call over one of `size` connections, opened lazily and kept open.

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
        self._idle: asyncio.Queue[aiosmtplib.SMTP] = asyncio.Queue()
        for _ in range(size):
            self._idle.put_nowait(
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
        self._size = size

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
        connection = await self._idle.get()
        try:
            return await self._send_on(connection, message.sender, recipient, message.body.encode())
        finally:
            self._idle.put_nowait(connection)

    async def _send_on(
        self, connection: aiosmtplib.SMTP, sender: str, recipient: str, message: bytes
    ) -> Attempt:
        try:
            if not connection.is_connected:
                await connection.connect()
            await _greet(connection)
            if connection.supports_extension("pipelining"):
                return await pipelining.send(
                    connection,
                    pipelining.envelope(sender, recipient),
                    pipelining.data_payload(message),
                )
            await connection.mail(sender)
            await connection.rcpt(recipient)
        except CONNECTION_LOST as error:
            connection.close()
            return connection_failure(f"{type(error).__name__}: {error}")
        except aiosmtplib.SMTPResponseException as error:
            await reset(connection)
            return smtp_reply(error.code, error.message)
        return await self._data(connection, message)

    async def _data(self, connection: aiosmtplib.SMTP, message: bytes) -> Attempt:
        """Once DATA starts, a lost connection leaves the outcome unknown (RFC 1047): the relay
        may have queued the message before its reply was lost, so it is not sent again."""
        try:
            reply = await connection.data(message)
            return smtp_reply(reply.code, reply.message)
        except CONNECTION_LOST as error:
            connection.close()
            return outcome_unknown(f"connection lost during DATA: {type(error).__name__}: {error}")
        except aiosmtplib.SMTPResponseException as error:
            await reset(connection)
            return smtp_reply(error.code, error.message)

    async def close(self) -> None:
        for _ in range(self._size):
            connection = await self._idle.get()
            if connection.is_connected:
                try:
                    await connection.quit()
                except aiosmtplib.SMTPException:
                    connection.close()


async def _greet(connection: aiosmtplib.SMTP) -> None:
    """EHLO (HELO if refused) once per connection, as aiosmtplib's `mail()` would, so that the
    server's extensions are known before the first message."""
    if connection.is_ehlo_or_helo_needed:
        try:
            await connection.ehlo()
        except aiosmtplib.SMTPHeloError:
            await connection.helo()
