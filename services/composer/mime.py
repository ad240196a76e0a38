"""Building the RFC 5322 / MIME message of one email. Pure.

A run sends the same sender headers, signed with the same key, to every recipient: those are
prepared once in an `EmailSkeleton`. Each message is then plain string assembly around the C
encoders of `binascii` (quoted-printable bodies, base64 encoded-words); `EmailMessage` costs
about a hundred times more per message and has no place on this path.

What the output guarantees: 7-bit ASCII, CRLF line endings, header lines of at most 78
characters unless a single address or URL is longer (never 998), body lines of at most 76, and
a parse through `email.policy.default` that gives back every value given here, without defects.
Bodies are sent in canonical form: every line break of `text` and `html` (CRLF, CR or LF) is
sent as CRLF, so a reader gets CRLF line breaks; nothing else is added or removed (no trailing
line break is appended).
"""

import binascii
import re
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from uuid import UUID

import dkim as dkimpy  # type: ignore[import-untyped]  # dkimpy ships no type information
from dkim.crypto import UnparsableKeyError, parse_pem_private_key  # type: ignore[import-untyped]

CRLF = "\r\n"

# Everything str.splitlines() breaks on: a mail reader may honour any of them, so any of them
# in a header value could start a header of the recipient's choosing.
_LINE_BREAK = re.compile("[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")

# A dot-atom local part and a host name: what a header can carry without quoting. Quoted
# local parts and non-ASCII addresses (SMTPUTF8) are refused rather than half supported.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_ADDRESS = re.compile(rf"{_ATEXT}+(?:\.{_ATEXT}+)*@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
_PHRASE = re.compile(rf"{_ATEXT}+(?: {_ATEXT}+)*")
# Printable ASCII but space, '"', '<' and '>': what fits between the angle brackets of RFC 2369.
_URI = re.compile(r"[!#-;=?-~]+")

_FOLDED = 78  # RFC 5322 2.1.1: SHOULD not exceed 78 characters
_ENCODED = 76  # RFC 2047 2: a line holding an encoded-word is at most 76 characters
_LIMIT = 998  # RFC 5322 2.1.1: MUST not exceed
_BODY_LINE = 76  # RFC 2045 6.7: quoted-printable lines
_WORD_OVERHEAD = len("=?utf-8?b??=")

# Quoted-printable output only has '=' before two hex digits or a line break, so "=_" never
# occurs in a body and no body line can be mistaken for a boundary that contains it.
_BOUNDARY_PREFIX = "=_"
_TEXT_PART = (
    'Content-Type: text/plain; charset="utf-8"\r\n'
    "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
)
_HTML_PART = (
    'Content-Type: text/html; charset="utf-8"\r\n'
    "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
)
_ONE_CLICK = "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"

_SIGNED = (b"from", b"to", b"subject", b"date", b"message-id", b"mime-version", b"content-type")
_SIGNED_UNSUBSCRIBE = (b"list-unsubscribe", b"list-unsubscribe-post")
_SIGNED_REPLY_TO = (b"reply-to",)


class HeaderInjection(ValueError):
    """A rendered header value carried a line break."""


class InvalidAddress(ValueError):
    """An address a 7-bit header cannot carry as given: not a plain ASCII local@domain."""


def message_id(recipient_id: UUID, sender_address: str) -> str:
    """Deterministic: the same recipient always gets the same Message-ID, even when re-rendered."""
    domain = sender_address.rpartition("@")[2] or "localhost"
    return f"<{recipient_id}@{domain}>"


@dataclass(frozen=True)
class DkimKey:
    domain: str
    selector: str
    private_key: bytes  # PEM, RSA


@dataclass(frozen=True)
class ListUnsubscribe:
    """RFC 8058 one-click unsubscribe. `mailto` is an address or a whole mailto: URI."""

    url: str  # https one-click URL (RFC 8058)
    mailto: str | None = None


@dataclass(frozen=True)
class _Signer:
    domain: bytes
    selector: bytes
    private_key: bytes
    headers: tuple[bytes, ...]

    def signature(self, message: str, unsubscribe: bool) -> str:
        """The DKIM-Signature header line(s) for `message`, CRLF-terminated."""
        headers = self.headers + _SIGNED_UNSUBSCRIBE if unsubscribe else self.headers
        header: bytes = dkimpy.sign(
            message.encode("ascii"),
            self.selector,
            self.domain,
            self.private_key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=list(headers),
        )
        return header.decode("ascii")


@dataclass(frozen=True)
class EmailSkeleton:
    """What every message of one run and language shares, validated and rendered once."""

    sender_address: str
    sender_headers: str  # From and Reply-To, CRLF-terminated
    signer: _Signer | None


def skeleton(
    *, sender_address: str, sender_name: str, reply_to: str | None, dkim: DkimKey | None = None
) -> EmailSkeleton:
    """Raises HeaderInjection on a line break in any value, InvalidAddress on an address that is
    not plain ASCII local@domain, ValueError on a DKIM key dkimpy cannot read."""
    sender_address = _address(sender_address, "From")
    headers = _from_header(_no_line_break(sender_name, "From"), sender_address)
    if reply_to:
        headers += f"Reply-To: {_address(reply_to, 'Reply-To')}{CRLF}"
    signed = _SIGNED + _SIGNED_REPLY_TO if reply_to else _SIGNED
    return EmailSkeleton(
        sender_address, headers, _signer(dkim, signed) if dkim is not None else None
    )


def build_email(
    skeleton: EmailSkeleton,
    *,
    recipient_id: UUID,
    to: str,
    subject: str,
    text: str,
    html: str,
    sent_at: datetime,
    list_unsubscribe: ListUnsubscribe | None = None,
) -> str:
    """The whole message: ASCII, CRLF line endings, multipart/alternative (text then html),
    DKIM-signed when the skeleton has a key. The same arguments give the same message, except
    for the signature's timestamp. Raises HeaderInjection on a line break in `to`, `subject` or
    the unsubscribe values, InvalidAddress on a `to` that is not plain ASCII local@domain."""
    boundary = _BOUNDARY_PREFIX + recipient_id.hex
    unsubscribe = _unsubscribe_headers(list_unsubscribe) if list_unsubscribe is not None else ""
    message = (
        f"{skeleton.sender_headers}To: {_address(to, 'To')}\r\n{_subject_header(subject)}"
        f"Date: {_date(sent_at)}\r\n"
        f"Message-ID: {message_id(recipient_id, skeleton.sender_address)}\r\n{unsubscribe}"
        f'MIME-Version: 1.0\r\nContent-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n'
        f"\r\n--{boundary}\r\n{_TEXT_PART}{_quoted_printable(text)}"
        f"\r\n--{boundary}\r\n{_HTML_PART}{_quoted_printable(html)}"
        f"\r\n--{boundary}--\r\n"
    )
    if skeleton.signer is None:
        return message
    return skeleton.signer.signature(message, list_unsubscribe is not None) + message


# --- header values ------------------------------------------------------------------------


# The last Date value formatted, with its key: every message of a batch, and all those of the
# same second, carry the same one (format_datetime: 4 µs, a tenth of the MIME build; 1 µs cached).
_last_date: tuple[tuple[datetime, object], str] | None = None


def _date(sent_at: datetime) -> str:
    global _last_date
    # The wall-clock second and the offset are everything format_datetime prints.
    key = (sent_at.replace(microsecond=0), sent_at.utcoffset())
    if _last_date is None or _last_date[0] != key:
        _last_date = (key, format_datetime(sent_at))
    return _last_date[1]


def _no_line_break(value: str, field: str) -> str:
    if _LINE_BREAK.search(value):
        raise HeaderInjection(f"{field} contains a line break")
    return value


def _address(value: str, field: str) -> str:
    # RFC 5321 4.5.3.1.3: a path is at most 256 octets, its angle brackets included.
    if len(value) > 254 or not _ADDRESS.fullmatch(_no_line_break(value, field)):
        raise InvalidAddress(f"{field} is not a plain ASCII local@domain address: {value!r}")
    return value


def _uri(value: str, field: str) -> str:
    if not _URI.fullmatch(_no_line_break(value, field)):
        raise ValueError(f"{field} is not a URI of printable ASCII: {value!r}")
    return value


def _plain(value: str) -> bool:
    """Whether `value` reads back unchanged when written as is: a leading blank is dropped by
    readers and "=?" would be decoded as an encoded-word."""
    return (
        value.isascii() and value.isprintable() and not value.startswith(" ") and "=?" not in value
    )


def _subject_header(subject: str) -> str:
    _no_line_break(subject, "Subject")
    if _plain(subject):
        line = "Subject: " + subject
        if len(line) <= _FOLDED:
            return line + CRLF
        folded = _fold_at_spaces(line)
        if folded is not None:
            return folded
    # Also for a long ASCII word that cannot be folded: encoded-words can be cut anywhere.
    return "Subject: " + "\r\n ".join(_encoded_words(subject, len("Subject: "))) + CRLF


def _from_header(name: str, address: str) -> str:
    if not name:
        return f"From: {address}{CRLF}"
    mailbox = f"<{address}>"
    if _plain(name) and _PHRASE.fullmatch(name):
        folded = _fold_at_spaces(f"From: {name}")
        if folded is not None:
            return _append(folded, mailbox, _FOLDED)
    if _plain(name):
        quoted = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if len("From: ") + len(quoted) <= _FOLDED:
            return _append(f"From: {quoted}{CRLF}", mailbox, _FOLDED)
    # More than one encoded-word is decoded as one text by RFC 2047 readers; Python's email
    # package alone puts a space between them. One word holds 42 UTF-8 bytes of a name.
    words = _encoded_words(name, len("From: "))
    return _append("From: " + "\r\n ".join(words) + CRLF, mailbox, _ENCODED)


def _append(header: str, token: str, width: int) -> str:
    """`header` (CRLF-terminated) with ` token` on its last line, or on a new one if too long."""
    last_line = len(header) - 2 - (header.rfind("\n", 0, -2) + 1)
    separator = " " if last_line + 1 + len(token) <= width else "\r\n "
    return header[:-2] + separator + token + CRLF


def _fold_at_spaces(line: str) -> str | None:
    """`line` folded before spaces into lines of at most 78 characters, CRLF-terminated; None
    when a word is too long to fit or a line would hold nothing but blanks."""
    lines = []
    first = line.index(": ") + 2  # never fold between the field name and its first word
    while len(line) > _FOLDED:
        cut = line.rfind(" ", first + 1, _FOLDED + 1)
        if cut < 0 or not line[:cut].strip(" "):
            return None
        lines.append(line[:cut])
        line, first = line[cut:], 1
    if not line.strip(" "):
        return None
    lines.append(line)
    return CRLF.join(lines) + CRLF


def _encoded_words(value: str, used: int) -> list[str]:
    """RFC 2047 B encoded-words of whole UTF-8 characters: the first fits a line after `used`
    columns, the others a continuation line of their own."""
    data = value.encode("utf-8")
    words = []
    start = 0
    room = _room(_ENCODED - used)
    while True:
        end = min(start + room, len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:  # UTF-8 continuation byte
            end -= 1
        encoded = binascii.b2a_base64(data[start:end], newline=False).decode("ascii")
        words.append(f"=?utf-8?b?{encoded}?=")
        if end == len(data):
            return words
        start, room = end, _room(_ENCODED - 1)


def _room(columns: int) -> int:
    """Bytes one base64 encoded-word carries in `columns`: at least 4, so any character fits."""
    return max((columns - _WORD_OVERHEAD) // 4 * 3, 4)


def _unsubscribe_headers(unsubscribe: ListUnsubscribe) -> str:
    uris = [f"<{_uri(unsubscribe.url, 'List-Unsubscribe')}>"]
    if unsubscribe.mailto:
        mailto = _uri(unsubscribe.mailto, "List-Unsubscribe")
        uris.append(f"<{mailto}>" if mailto.startswith("mailto:") else f"<mailto:{mailto}>")
    header = "List-Unsubscribe: " + ", ".join(uris)
    if len(header) > _FOLDED:
        header = "List-Unsubscribe: " + ",\r\n ".join(uris)
    if max(len(line) for line in header.split(CRLF)) > _LIMIT:
        raise ValueError("List-Unsubscribe is longer than a header line can be")
    return header + CRLF + _ONE_CLICK


# --- bodies -------------------------------------------------------------------------------


def _quoted_printable(content: str) -> str:
    """`content` as UTF-8 quoted-printable with CRLF line breaks and lines of at most 76."""
    if "\r" in content:
        # A lone CR would pass through b2a_qp unencoded: a bare CR on the wire.
        content = content.replace("\r\n", "\n").replace("\r", "\n")
    # Encoding LF-only text makes b2a_qp use LF for its soft breaks too (it copies the style of
    # the first line break it sees), so one replace turns every line break into CRLF.
    # One call for the whole body: caching the template's constant lines apart was measured
    # slower (bench/README.md, composer hot path).
    encoded = binascii.b2a_qp(content.encode("utf-8"))
    if " \n" in content or "\t\n" in content:
        encoded = _rewrap_escaped_blanks(encoded)
    return encoded.replace(b"\n", b"\r\n").decode("ascii")


def _rewrap_escaped_blanks(encoded: bytes) -> bytes:
    """b2a_qp escapes a blank ending a line after placing it, without checking the length: a
    blank in column 75 or 76 gives a 77 or 78 character line ending in =20 or =09. Such a line
    is cut with a soft break before that escape."""
    return b"\n".join(
        line if len(line) <= _BODY_LINE else line[:-3] + b"=\n" + line[-3:]
        for line in encoded.split(b"\n")
    )


# --- DKIM ---------------------------------------------------------------------------------


def _signer(key: DkimKey, headers: tuple[bytes, ...]) -> _Signer:
    """dkimpy takes the PEM and parses it again on every signature (about 3% of its cost with a
    2048-bit key); parsing it here once still makes a bad key fail the run, not each message."""
    _no_line_break(key.domain, "DKIM domain")
    _no_line_break(key.selector, "DKIM selector")
    try:
        parse_pem_private_key(key.private_key)
    except UnparsableKeyError as error:
        raise ValueError(f"DKIM private key: {error}") from error
    return _Signer(
        key.domain.encode("ascii"), key.selector.encode("ascii"), key.private_key, headers
    )
