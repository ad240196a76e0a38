"""A tiny SMTP server for the relay's unit tests: records every read as it arrived (so a test
sees how commands were grouped), answers each read's commands in one write as Postfix does, and
can refuse a command or drop the connection at a chosen point, once."""

import asyncio
from dataclasses import dataclass, field
from typing import Literal

DropPoint = Literal["DATA", "BODY", "SILENT"]


@dataclass
class Responder:
    pipelining: bool = True
    # Replies instead of the default for a command, keyed by its verb ("MAIL", "RCPT", "DATA"
    # for the reply to the body); each is used once.
    refusals: dict[str, str] = field(default_factory=dict)
    # Drop the connection on receiving DATA (before 354) or the body (before its reply), or
    # stop answering once the body arrived (SILENT), once.
    drop: DropPoint | None = None
    # Answer 354 to DATA even when no recipient was accepted (a broken server).
    always_354: bool = False
    reads: list[bytes] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    connections: int = 0
    port: int = 0
    _server: asyncio.Server | None = None

    async def __aenter__(self) -> "Responder":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()

    def _reply(self, verb: str, default: str) -> str:
        return self.refusals.pop(verb, default)

    def _drop(self, point: DropPoint) -> bool:
        if self.drop == point:
            self.drop = None
            return True
        return False

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.write(b"220 responder ESMTP\r\n")
        pending = b""
        body: bytes | None = None  # the body read so far, while in DATA
        envelope_ok = rcpt_ok = False
        try:
            while chunk := await reader.read(65536):
                self.reads.append(chunk)
                pending += chunk
                out: list[str] = []
                while True:
                    if body is not None:
                        end = pending.find(b"\r\n.\r\n")
                        if end == -1 and not pending.startswith(b".\r\n"):
                            break
                        size = 0 if end == -1 else end + 2
                        self.bodies.append(_unstuff(pending[:size]))
                        pending = pending[size + 3 :]
                        body = None
                        if self._drop("BODY"):
                            writer.close()
                            return
                        if self._drop("SILENT"):
                            # A stalled server: nothing more is answered on this connection.
                            while await reader.read(65536):
                                pass
                            return
                        out.append(self._reply("DATA", "250 2.0.0 queued"))
                        continue
                    line, sep, rest = pending.partition(b"\r\n")
                    if not sep:
                        break
                    pending = rest
                    reply = self._command(line.decode())
                    verb = line[:4].decode().upper()
                    if verb == "MAIL":
                        envelope_ok = reply.startswith("250")
                        rcpt_ok = False
                    if verb == "RCPT":
                        rcpt_ok = envelope_ok and reply.startswith("250")
                    if verb == "DATA":
                        if self._drop("DATA"):
                            writer.close()
                            return
                        if not envelope_ok:
                            reply = "503 5.5.1 Error: need MAIL command"
                        elif not rcpt_ok:
                            reply = "554 5.5.1 Error: no valid recipients"
                        if self.always_354:
                            reply = "354 go ahead"
                        if reply.startswith("354"):
                            body = b""
                    out.append(reply)
                    if verb == "QUIT":
                        writer.write(_lines(out))
                        writer.close()
                        return
                if out:
                    writer.write(_lines(out))
        except ConnectionError:
            pass
        finally:
            writer.close()

    def _command(self, line: str) -> str:
        self.commands.append(line)
        verb = line[:4].upper()
        if verb == "EHLO":
            extensions = ["PIPELINING", "8BITMIME"] if self.pipelining else ["8BITMIME"]
            lines = ["250-responder", *(f"250-{e}" for e in extensions[:-1])]
            return "\r\n".join([*lines, f"250 {extensions[-1]}"])
        if verb == "MAIL":
            return self._reply("MAIL", "250 2.1.0 Ok")
        if verb == "RCPT":
            return self._reply("RCPT", "250 2.1.5 Ok")
        if verb == "DATA":
            return "354 End data with <CR><LF>.<CR><LF>"
        if verb == "QUIT":
            return "221 2.0.0 Bye"
        return "250 2.0.0 Ok"  # HELO, RSET, NOOP


def _lines(replies: list[str]) -> bytes:
    return "".join(f"{r}\r\n" for r in replies).encode()


def _unstuff(data: bytes) -> bytes:
    """The message as the server stores it: each line's doubled leading dot made single."""
    return b"".join(
        line[1:] if line.startswith(b"..") else line for line in data.splitlines(keepends=True)
    )
