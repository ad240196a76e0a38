"""One message over an aiosmtplib connection with RFC 2920 PIPELINING: MAIL, RCPT and DATA in
one write, their three replies read together, then the body and its final reply.

aiosmtplib keeps connecting, EHLO, STARTTLS, AUTH and reply parsing; only the order of writes and
reads changes. Its protocol parses one reply per `read_response()` and leaves the rest of what
arrived in its buffer, so each reply is first taken from that buffer (`_read_response_from_buffer`,
the parser `read_response` itself uses) and only then awaited. No other await happens while
replies are outstanding: the protocol drops whatever arrives while no read is pending.

Two writes and two round trips per message instead of five and four: against smtp-sink the
relay's CPU per message falls by about half (bench/README.md, "SMTP pipelining").
"""

import re

import aiosmtplib
from aiosmtplib.email import quote_address
from aiosmtplib.protocol import (
    COMMAND_INJECTION_REGEX,
    PERIOD_REGEX,
    SMTPProtocol,
    normalize_message_line_endings,
)

from .policy import Attempt, connection_failure, outcome_unknown, smtp_reply

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


async def send(connection: aiosmtplib.SMTP, envelope: bytes, payload: bytes) -> Attempt:
    """Send one message on a connected, greeted connection whose server advertised PIPELINING.

    A refused MAIL or RCPT is the message's outcome (the DATA refusal that follows is read and
    dropped), then RSET. A connection lost before the body was written is a connection failure
    (safe to retry); after, the outcome is unknown (RFC 1047). The connection is closed after a
    loss, a timeout, an unparsable reply or a 421, so the next message reconnects."""
    protocol = connection.protocol
    if protocol is None:
        return connection_failure("SMTPServerDisconnected: Server not connected")
    try:
        protocol.write(envelope)
        replies = [await _reply(protocol, connection.timeout) for _ in range(3)]
    except _BROKEN as error:
        connection.close()
        return connection_failure(f"{type(error).__name__}: {error}")
    mail, rcpt, data = replies
    refused = next((r for r in (mail, rcpt) if r.code not in (250, 251)), None)
    if refused is not None or data.code != _START_INPUT:
        outcome = refused or data
        if data.code == _START_INPUT or _CLOSING in (r.code for r in replies):
            # A server that opened DATA without a valid envelope waits for a body we will not
            # send; one that said 421 is closing: either way the connection is done.
            connection.close()
        else:
            await reset(connection)
        return smtp_reply(outcome.code, outcome.message)
    try:
        protocol.write(payload)
    except CONNECTION_LOST as error:
        # `write` refuses before writing anything on a closing transport.
        connection.close()
        return connection_failure(f"{type(error).__name__}: {error}")
    try:
        final = await _reply(protocol, connection.timeout)
    except _BROKEN as error:
        connection.close()
        return outcome_unknown(f"connection lost during DATA: {type(error).__name__}: {error}")
    if final.code == _CLOSING:
        connection.close()
    elif final.code != 250:
        await reset(connection)
    return smtp_reply(final.code, final.message)


async def _reply(protocol: SMTPProtocol, timeout: float | None) -> aiosmtplib.SMTPResponse:
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
