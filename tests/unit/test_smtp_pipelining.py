"""The SMTP relay against a responder that records how commands arrive: pipelined when the server
advertises PIPELINING, lockstep otherwise, and every outcome exact (RFC 1047 included)."""

import asyncio
import re
import socket

import aiosmtplib
import pytest
from aiosmtplib.email import quote_address
from aiosmtplib.protocol import PERIOD_REGEX, SMTPProtocol, normalize_message_line_endings

from services.dispatcher.pipelining import data_payload, envelope, keeping_replies, next_reply
from services.dispatcher.policy import Attempt
from services.dispatcher.smtp import SmtpRelay
from tests.unit.rendered import rendered
from tests.unit.smtp_responder import Responder

BODY = "Subject: hi\r\n\r\nBonjour\r\n"
GROUP = b"MAIL FROM:<avis@example.org>\r\nRCPT TO:<a@example.org>\r\nDATA\r\n"


def relay(server: Responder, timeout: float = 5.0) -> SmtpRelay:
    return SmtpRelay(host="127.0.0.1", port=server.port, size=1, timeout=timeout)


async def send(server: Responder, *bodies: str) -> list[Attempt]:
    """Each body as one message on one pooled connection, in order."""
    smtp = relay(server)
    try:
        return [await smtp.send(rendered("email", "a@example.org", body)) for body in bodies]
    finally:
        await smtp.close()


async def send_together(server: Responder, *addresses: str) -> list[Attempt | BaseException]:
    """One message per address, all handed to a one-connection relay at once, so each one
    waits behind the previous; then one more, alone, to show the connection still serves."""
    smtp = relay(server)
    try:
        sends = [smtp.send(rendered("email", a, BODY)) for a in addresses]
        attempts = await asyncio.gather(*sends, return_exceptions=True)
        return [*attempts, await smtp.send(rendered("email", "a@example.org", BODY))]
    finally:
        await smtp.close()


def verdicts(attempts: list[Attempt]) -> list[tuple[str, int | None]]:
    return [(a.verdict, a.code) for a in attempts]


async def test_mail_rcpt_and_data_go_in_one_write_and_the_body_in_the_next() -> None:
    async with Responder() as server:
        attempts = await send(server, BODY, BODY)
    assert verdicts(attempts) == [("accepted", 250)] * 2
    assert server.bodies == [BODY.encode()] * 2
    assert server.connections == 1
    # Greeting, EHLO; then per message the envelope group, then the body.
    group_reads = [r for r in server.reads if r.startswith(b"MAIL")]
    assert group_reads == [GROUP, GROUP]
    assert server.reads.count(BODY.encode() + b".\r\n") == 2


async def test_a_waiting_message_follows_the_previous_body_in_the_same_write() -> None:
    async with Responder() as server:
        attempts = await send_together(server, "a@example.org", "a@example.org", "a@example.org")
    assert verdicts(attempts) == [("accepted", 250)] * 4  # type: ignore[arg-type]
    assert server.bodies == [BODY.encode()] * 4
    assert server.connections == 1
    assert server.reads.count(BODY.encode() + b".\r\n" + GROUP) == 2
    assert "RSET" not in server.commands


async def test_a_loss_after_a_body_fails_the_envelope_behind_it() -> None:
    async with Responder(drop="BODY") as server:
        first, second, after = await send_together(server, "a@example.org", "a@example.org")
    assert isinstance(first, Attempt) and isinstance(second, Attempt)
    assert (first.verdict, first.reason) == ("unknown", "unknown_outcome")
    assert (second.verdict, second.code, second.reason) == ("temporary", None, "temporary_failure")
    assert isinstance(after, Attempt) and after.verdict == "accepted"
    assert server.connections == 2


async def test_a_refused_body_does_not_disturb_the_envelope_behind_it() -> None:
    async with Responder(refusals={"DATA": "554 5.7.1 rejected"}) as server:
        first, second, _ = await send_together(server, "a@example.org", "a@example.org")
    assert isinstance(first, Attempt) and isinstance(second, Attempt)
    assert ((first.verdict, first.code), second.verdict) == (("permanent", 554), "accepted")
    assert server.bodies == [BODY.encode()] * 3
    assert "RSET" not in server.commands


async def test_a_refused_envelope_is_reset_before_the_next_message() -> None:
    async with Responder(refusals={"RCPT": "550 5.1.1 user unknown"}) as server:
        first, second, _ = await send_together(server, "a@example.org", "a@example.org")
    assert isinstance(first, Attempt) and isinstance(second, Attempt)
    assert ((first.verdict, first.code), second.verdict) == (("permanent", 550), "accepted")
    assert server.commands.count("RSET") == 1
    assert server.bodies == [BODY.encode()] * 2


async def test_an_address_aiosmtplib_would_refuse_fails_only_its_own_send() -> None:
    async with Responder() as server:
        first, second, third, _ = await send_together(
            server, "a@example.org", "a\x01@example.org", "a@example.org"
        )
    assert isinstance(second, ValueError)
    assert isinstance(first, Attempt) and isinstance(third, Attempt)
    assert (first.verdict, third.verdict) == ("accepted", "accepted")
    assert server.bodies == [BODY.encode()] * 3


async def test_no_reply_to_a_body_within_the_timeout_leaves_its_outcome_unknown() -> None:
    async with Responder(drop="SILENT") as server:
        smtp = relay(server, timeout=0.3)
        first, second = await asyncio.gather(
            smtp.send(rendered("email", "a@example.org", BODY)),
            smtp.send(rendered("email", "b@example.org", BODY)),
        )
        third = await smtp.send(rendered("email", "c@example.org", BODY))
        await smtp.close()
    assert (first.verdict, first.reason) == ("unknown", "unknown_outcome")
    assert "Timed out" in first.detail
    assert (second.verdict, second.code) == ("temporary", None)
    assert third.verdict == "accepted"
    assert server.connections == 2


async def test_closing_sends_what_is_queued_then_quits() -> None:
    async with Responder() as server:
        smtp = relay(server)
        sends = [
            asyncio.create_task(smtp.send(rendered("email", f"{n}@example.org", BODY)))
            for n in "abc"
        ]
        await asyncio.sleep(0)
        await smtp.close()
        assert [(await s).verdict for s in sends] == ["accepted"] * 3
    assert server.commands[-1] == "QUIT"
    assert len(server.bodies) == 3


async def test_a_message_whose_sender_gave_up_waiting_is_not_sent() -> None:
    async with Responder() as server:
        smtp = relay(server)
        first = asyncio.create_task(smtp.send(rendered("email", "a@example.org", BODY)))
        second = asyncio.create_task(smtp.send(rendered("email", "b@example.org", BODY)))
        await asyncio.sleep(0)  # both queued, the first on its way
        second.cancel()
        assert (await first).verdict == "accepted"
        await smtp.close()
    assert second.cancelled()
    assert not any(c.startswith("RCPT TO:<b@") for c in server.commands)


async def test_without_pipelining_each_command_waits_for_its_reply() -> None:
    async with Responder(pipelining=False) as server:
        attempts = await send(server, BODY, BODY)
    assert verdicts(attempts) == [("accepted", 250)] * 2
    assert server.bodies == [BODY.encode()] * 2
    assert [r for r in server.reads if r.startswith((b"MAIL", b"RCPT"))] == [
        b"MAIL FROM:<avis@example.org>\r\n",
        b"RCPT TO:<a@example.org>\r\n",
    ] * 2


@pytest.mark.parametrize(
    ("refusals", "expected"),
    [
        ({"MAIL": "550 5.7.1 sender refused"}, ("permanent", 550, "refused")),
        ({"MAIL": "451 4.3.0 try later"}, ("temporary", 451, "temporary_failure")),
        ({"RCPT": "550 5.1.1 user unknown"}, ("permanent", 550, "refused")),
        ({"RCPT": "553 5.1.3 bad address"}, ("permanent", 553, "invalid_address")),
        ({"RCPT": "450 4.2.0 mailbox busy"}, ("temporary", 450, "temporary_failure")),
        ({"DATA": "554 5.7.1 rejected"}, ("permanent", 554, "refused")),
        ({"DATA": "451 4.3.0 queue full"}, ("temporary", 451, "temporary_failure")),
    ],
)
async def test_a_refusal_is_the_messages_outcome_and_the_next_message_goes_through(
    refusals: dict[str, str], expected: tuple[str, int, str]
) -> None:
    async with Responder(refusals=dict(refusals)) as server:
        first, second = await send(server, BODY, BODY)
    assert (first.verdict, first.code, first.reason) == expected
    assert second.verdict == "accepted"
    # A refused envelope is reset (a refused body ends its transaction by itself), on the same
    # connection, and only the bodies after a 354 were taken.
    assert ("RSET" in server.commands) == ("DATA" not in refusals)
    assert server.connections == 1
    assert server.bodies == [BODY.encode()] * (2 if "DATA" in refusals else 1)


async def test_a_server_closing_with_421_is_not_reset_but_reconnected() -> None:
    async with Responder(refusals={"MAIL": "421 4.3.2 shutting down"}) as server:
        first, second = await send(server, BODY, BODY)
    assert (first.verdict, first.code) == ("temporary", 421)
    assert second.verdict == "accepted"
    assert "RSET" not in server.commands
    assert server.connections == 2


async def test_a_server_opening_data_without_a_recipient_gets_no_body() -> None:
    async with Responder(refusals={"RCPT": "550 5.1.1 user unknown"}, always_354=True) as server:
        first, second = await send(server, BODY, BODY)
    assert (first.verdict, first.code) == ("permanent", 550)
    assert second.verdict == "accepted"
    assert server.bodies == [BODY.encode()]
    assert server.connections == 2


@pytest.mark.parametrize("pipelining", [True, False])
async def test_a_connection_lost_after_the_body_leaves_the_outcome_unknown(
    pipelining: bool,
) -> None:
    async with Responder(pipelining=pipelining, drop="BODY") as server:
        first, second = await send(server, BODY, BODY)
    assert (first.verdict, first.reason) == ("unknown", "unknown_outcome")
    assert second.verdict == "accepted"
    assert server.connections == 2


async def test_a_connection_lost_before_354_is_a_failure_safe_to_retry() -> None:
    async with Responder(drop="DATA") as server:
        first, second = await send(server, BODY, BODY)
    assert (first.verdict, first.code, first.reason) == ("temporary", None, "temporary_failure")
    assert second.verdict == "accepted"
    assert server.bodies == [BODY.encode()]
    assert server.connections == 2


async def test_lines_starting_with_a_dot_are_doubled_and_a_final_crlf_added() -> None:
    body = ".first\r\nmiddle\r\n.\r\n..two\r\nlast"
    async with Responder() as server:
        (attempt,) = await send(server, body)
    assert attempt.verdict == "accepted"
    assert server.bodies == [body.encode() + b"\r\n"]
    assert b"..first\r\nmiddle\r\n..\r\n...two\r\nlast\r\n.\r\n" in b"".join(server.reads)


@pytest.mark.parametrize(
    "body",
    [
        b"a\r\nb\r\n",
        b"a\r\nb",
        b"a\nb\n",
        b"a\rb\r\n.c\n",
        b".\r\n",
        b"",
        b"x\r\n\r\n.\r\n..\r\n",
        b"mixed\r\nline\nends\r",
    ],
)
def test_the_data_payload_is_the_bytes_aiosmtplib_would_write(body: bytes) -> None:
    expected = PERIOD_REGEX.sub(b"..", normalize_message_line_endings(body)) + b".\r\n"
    assert data_payload(body) == expected


def test_the_envelope_refuses_what_aiosmtplib_would_refuse() -> None:
    assert envelope("a@b.org", "c@d.org") == b"MAIL FROM:<a@b.org>\r\nRCPT TO:<c@d.org>\r\nDATA\r\n"
    with pytest.raises(UnicodeEncodeError):
        envelope("é@b.org", "c@d.org")
    with pytest.raises(ValueError, match=re.escape("prohibited control character")):
        envelope("a\x00@b.org", "c@d.org")


@pytest.mark.parametrize(
    "address",
    [
        "a@b.org",
        "a..b@c.org",
        ".a@b.org",
        "a@b@c.org",
        "a'b{c}|d=e#f!g?h^i`j~k&l*m/n$o%p+q-r_s@x-y.org",
        "@b.org",
        '"a b"@c.org',
        "Name <a@b.org>",
        "a(comment)@b.org",
    ],
)
def test_addresses_are_quoted_as_aiosmtplib_quotes_them(address: str) -> None:
    expected = f"MAIL FROM:{quote_address(address)}\r\nRCPT TO:{quote_address(address)}\r\n"
    assert envelope(address, address) == expected.encode() + b"DATA\r\n"


@pytest.mark.parametrize("kept", [True, False], ids=["kept", "aiosmtplib's own"])
async def test_a_reply_arriving_before_the_previous_one_is_picked_up_is_kept(kept: bool) -> None:
    """A server answering each pipelined command in a write of its own (aiosmtpd): the second
    reply arrives while the first is parsed but not yet picked up. aiosmtplib's protocol drops
    it (the relay then waited out its timeout); `KeptReplies` keeps it for the next read."""
    ours, theirs = socket.socketpair()
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.connect_accepted_socket(lambda: SMTPProtocol(loop=loop), ours)
    try:
        if kept:
            keeping_replies(protocol).pipelining = True
        first = asyncio.create_task(protocol.read_response(timeout=1))
        await asyncio.sleep(0)  # the read is pending
        protocol.data_received(b"250 2.1.0 Ok\r\n")
        protocol.data_received(b"250 2.1.5 Ok\r\n")
        assert (await first).code == 250
        if kept:
            assert (await next_reply(protocol, 0.2)).message == "2.1.5 Ok"
        else:
            with pytest.raises(aiosmtplib.SMTPReadTimeoutError):
                await next_reply(protocol, 0.2)
    finally:
        transport.close()
        theirs.close()
