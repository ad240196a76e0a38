"""Messages over an aiosmtplib connection with RFC 2920 PIPELINING: MAIL, RCPT and DATA in one
write and their three replies read together; on 354 the body, followed in the same write by the
next message's MAIL, RCPT and DATA when one is waiting (RFC 2920 lets the message content open a
group), then the final reply and the next envelope's replies.

aiosmtplib keeps connecting, EHLO, STARTTLS, AUTH and reply parsing; only the order of writes and
reads changes. Its protocol parses one reply per `read_response()` and leaves the rest of what
arrived in its buffer, so each reply is first taken from that buffer (`_read_response_from_buffer`,
the parser `read_response` itself uses) and only then awaited. aiosmtplib's protocol drops
whatever arrives while no read is pending, and also once a reply is parsed until its reader
resumes: a server that answers each pipelined command in a write of its own (aiosmtpd does;
Postfix batches them) would lose the next reply and the relay would wait out its timeout. So,
for as long as `send` runs, the connection's protocol is a `KeptReplies`, which buffers those.

Against smtp-sink this divides the relay's CPU per message by 2.5 to 3.3 (bench/README.md,
"SMTP pipelining"; the envelope behind the body alone saves about 13 %).
"""

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass

import aiosmtplib
from aiosmtplib.email import quote_address
from aiosmtplib.protocol import (
    COMMAND_INJECTION_REGEX,
    MAX_RESPONSE_LENGTH,
    PERIOD_REGEX,
    SMTPProtocol,
    normalize_message_line_endings,
)

from .policy import Attempt, connection_failure, outcome_unknown, smtp_reply


class KeptReplies(SMTPProtocol):
    """aiosmtplib's protocol, keeping the replies it would drop while `pipelining` is set: those
    arriving after a reply was parsed and before its reader resumed, or between two reads.
    The next `next_reply` takes them from the buffer first."""

    pipelining = False

    def data_received(self, data: bytes) -> None:
        waiter = self._response_waiter
        if (
            self.pipelining
            and waiter is not None
            and (waiter.done() or not self._response_pending)
            and len(self._buffer) + len(data) <= MAX_RESPONSE_LENGTH
        ):
            self._buffer.extend(data)
            return
        super().data_received(data)


def keeping_replies(protocol: SMTPProtocol) -> KeptReplies:
    """The connection's protocol, made a `KeptReplies`. aiosmtplib builds its protocol itself
    (`SMTP._create_connection`) and offers no hook for another class; the subclass only adds a
    method, so the object's class is switched in place, once per connection."""
    if not isinstance(protocol, KeptReplies):
        protocol.__class__ = KeptReplies
    assert isinstance(protocol, KeptReplies)
    return protocol


CONNECTION_LOST = (
    aiosmtplib.SMTPServerDisconnected,
    aiosmtplib.SMTPConnectError,
    aiosmtplib.SMTPTimeoutError,
    OSError,
)

# A reply aiosmtplib cannot parse leaves the pairing of replies to commands unknown: the
# connection is treated as lost.
_BROKEN = (*CONNECTION_LOST, aiosmtplib.SMTPResponseException)
_CLOSING = 421
# An address made only of these characters is what `quote_address` returns it as, inside <>,
# and skips its `email.utils` parse: `envelope()` of two such addresses went from 85 to 3.5 us
# (`python -m timeit`, this machine under load).
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~@-]+")
_START_INPUT = 354


def envelope(sender: str, recipient: str) -> bytes:
    """MAIL, RCPT and DATA as one group. Raises what aiosmtplib's `mail()`/`rcpt()` raise for an
    address they would not send (unparsable, not ASCII), before anything is written."""
    commands = (
        b"MAIL FROM:" + _quoted(sender).encode("ascii"),
        b"RCPT TO:" + _quoted(recipient).encode("ascii"),
    )
    for command in commands:
        if COMMAND_INJECTION_REGEX.search(command):
            raise ValueError("Command arg contains a prohibited control character")
    return commands[0] + b"\r\n" + commands[1] + b"\r\nDATA\r\n"


def _quoted(address: str) -> str:
    return f"<{address}>" if _PLAIN_ADDRESS.fullmatch(address) else quote_address(address)


def data_payload(message: bytes) -> bytes:
    """The message as DATA carries it: CRLF line endings, a final CRLF, lines starting with "."
    doubled, then the terminating ".". The same bytes aiosmtplib's `data()` writes; a body that
    is already CRLF with no leading dot (the composer's) skips both regular expressions."""
    crlf = message.count(b"\r\n")
    if message.count(b"\r") != crlf or message.count(b"\n") != crlf:
        message = normalize_message_line_endings(message)
    elif not message.endswith(b"\r\n"):
        message += b"\r\n"
    if message.startswith(b".") or b"\n." in message:
        message = PERIOD_REGEX.sub(b"..", message)
    return message + b".\r\n"


@dataclass(eq=False)
class Transaction:
    """One message waiting for its connection, and where its outcome goes."""

    sender: str
    recipient: str
    body: bytes
    outcome: "asyncio.Future[Attempt]"

    def settle(self, attempt: Attempt) -> None:
        if not self.outcome.done():
            self.outcome.set_result(attempt)


async def send(
    connection: aiosmtplib.SMTP,
    first: tuple[Transaction, bytes],
    following: Callable[[], tuple[Transaction, bytes] | None],
) -> None:
    """Send `first` (a transaction and its envelope), then, while `following()` gives one, each
    next transaction with its envelope behind the previous body; settle each one sent.

    The connection is connected, greeted, and its server advertised PIPELINING. A refused MAIL
    or RCPT is that message's outcome (the DATA refusal behind it is read and dropped), then RSET,
    and the chain ends. A connection lost before a message's body was written is a connection
    failure (safe to retry); once its body was written, its outcome is unknown (RFC 1047), and
    the envelope behind it is a connection failure (its body was never sent). The connection is
    closed after a loss, a timeout, an unparsable reply or a 421, so the next message
    reconnects."""
    kept = None if connection.protocol is None else keeping_replies(connection.protocol)
    if kept is not None:
        kept.pipelining = True
    try:
        await _chain(connection, first, following)
    finally:
        if kept is not None:
            kept.pipelining = False


async def _chain(
    connection: aiosmtplib.SMTP,
    first: tuple[Transaction, bytes],
    following: Callable[[], tuple[Transaction, bytes] | None],
) -> None:
    protocol = connection.protocol
    current, group = first
    while True:
        try:
            if protocol is None:
                raise aiosmtplib.SMTPServerDisconnected("Server not connected")
            if group:
                protocol.write(group)
            replies = [await next_reply(protocol, connection.timeout) for _ in range(3)]
        except _BROKEN as error:
            connection.close()
            current.settle(connection_failure(why(error)))
            return
        mail, rcpt, data = replies
        refused = next((r for r in (mail, rcpt) if r.code not in (250, 251)), None)
        if refused is not None or data.code != _START_INPUT:
            outcome = refused or data
            if data.code == _START_INPUT or _CLOSING in (r.code for r in replies):
                # A server that opened DATA without a valid envelope waits for a body we will
                # not send; one that said 421 is closing: either way the connection is done.
                connection.close()
            else:
                await reset(connection)
            current.settle(smtp_reply(outcome.code, outcome.message))
            return
        after = following()
        group = data_payload(current.body)
        try:
            # `write` refuses before writing anything on a closing transport.
            protocol.write(group if after is None else group + after[1])
        except CONNECTION_LOST as error:
            connection.close()
            for transaction in (current, after and after[0]):
                if transaction is not None:
                    transaction.settle(connection_failure(why(error)))
            return
        try:
            final = await next_reply(protocol, connection.timeout)
        except _BROKEN as error:
            connection.close()
            current.settle(outcome_unknown(f"connection lost during DATA: {why(error)}"))
            if after is not None:
                after[0].settle(connection_failure(why(error)))
            return
        # After the final reply, whatever it is, the server has no transaction open
        # (RFC 5321 4.1.1.4): the envelope behind it needs no RSET.
        current.settle(smtp_reply(final.code, final.message))
        if after is None:
            if final.code == _CLOSING:
                connection.close()
            return
        current, group = after[0], b""


def why(error: BaseException) -> str:
    """An exception in a few words, for an attempt's detail."""
    return f"{type(error).__name__}: {error}"


async def next_reply(protocol: SMTPProtocol, timeout: float | None) -> aiosmtplib.SMTPResponse:
    """The next reply: one already received and buffered, or the next to arrive."""
    buffered = protocol._read_response_from_buffer()
    if buffered is not None:
        return buffered
    return await protocol.read_response(timeout=timeout)


async def reset(connection: aiosmtplib.SMTP) -> None:
    """Leave the connection ready for the next message after a refused transaction."""
    try:
        await connection.rset()
    except (aiosmtplib.SMTPException, OSError):
        connection.close()
