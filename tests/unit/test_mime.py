import base64
import email
import email.policy
import random
import re
import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from email.header import decode_header, make_header
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Any
from uuid import UUID

import dkim  # type: ignore[import-untyped]  # dkimpy ships no type information
import pytest

from services.composer.mime import (
    DkimKey,
    EmailSkeleton,
    HeaderInjection,
    InvalidAddress,
    ListUnsubscribe,
    build_email,
    skeleton,
)

RECIPIENT = UUID("5b0e6a52-8f3c-5d1e-9a47-1c2d3e4f5a6b")
SENT_AT = datetime(2026, 11, 23, 15, 0, 7, tzinfo=timezone(timedelta(hours=-5)))
SENDER = "avis@neige.example"
FRENCH_NAME = "Déneigement Côté inc."
FRENCH_SUBJECT = "Avis de déneigement — rue Saint-Étienne"
FRENCH_TEXT = "Bonjour Élise,\n\nLe déneigement de la rue Saint-Étienne aura lieu cette nuit.\n"
FRENCH_HTML = (
    "<html><body>\n<p>Bonjour Élise,</p>\n"
    "<p>Le déneigement de la rue Saint-Étienne aura lieu cette nuit, entre 23 h et 7 h. "
    "Merci de déplacer votre véhicule.</p>\n"
    "<p>Votre nom tel que reçu : &lt;script&gt;alert(1)&lt;/script&gt;</p>\n</body></html>\n"
)
UNSUBSCRIBE = ListUnsubscribe(
    url="https://liens.neige.example/u/6f1c2e0a?sig=Zm9vYmFy", mailto="desabonnement@neige.example"
)


def french_skeleton(**overrides: Any) -> EmailSkeleton:
    arguments: dict[str, Any] = {
        "sender_address": SENDER,
        "sender_name": FRENCH_NAME,
        "reply_to": "service@neige.example",
    }
    return skeleton(**(arguments | overrides))


def build(sender: EmailSkeleton | None = None, /, **overrides: Any) -> str:
    arguments: dict[str, Any] = {
        "recipient_id": RECIPIENT,
        "to": "elise.tremblay@example.com",
        "subject": FRENCH_SUBJECT,
        "text": FRENCH_TEXT,
        "html": FRENCH_HTML,
        "sent_at": SENT_AT,
    }
    return build_email(sender or french_skeleton(), **(arguments | overrides))


def parse(raw: str | bytes) -> EmailMessage:
    data = raw.encode("ascii") if isinstance(raw, str) else raw
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def content(message: EmailMessage, subtype: str) -> str:
    part = message.get_body((subtype,))
    assert part is not None
    # Bodies travel with CRLF line breaks, and the parser hands them back as they travelled.
    return str(part.get_content()).replace("\r\n", "\n")


def parts(message: EmailMessage) -> list[EmailMessage]:
    return list(message.iter_parts())  # type: ignore[arg-type]


def header_lines(raw: str) -> list[str]:
    return raw.split("\r\n\r\n", 1)[0].split("\r\n")


def field_lines(raw: str, name: str) -> list[str]:
    """The lines of header `name`, its continuation lines included."""
    lines = header_lines(raw)
    start = next(i for i, line in enumerate(lines) if line.startswith(name + ": "))
    end = start + 1
    while end < len(lines) and lines[end].startswith(" "):
        end += 1
    return lines[start:end]


def part_body_lines(raw: str) -> list[str]:
    """Every line of both encoded bodies, boundaries and part headers left out."""
    boundary = re.search(r'boundary="([^"]+)"', raw)
    assert boundary is not None
    sections = raw.split("--" + boundary.group(1))[1:-1]
    return [line for s in sections for line in s.split("\r\n\r\n", 1)[1].split("\r\n")]


# --- a French message, every header ---------------------------------------------------------


def test_french_message_parses_back_with_every_header() -> None:
    raw = build(list_unsubscribe=UNSUBSCRIBE)
    message = parse(raw)

    assert message["Subject"] == FRENCH_SUBJECT
    sender = message["From"].addresses[0]
    assert (sender.display_name, sender.addr_spec) == (FRENCH_NAME, SENDER)
    assert message["To"] == "elise.tremblay@example.com"
    assert message["Reply-To"] == "service@neige.example"
    assert message["Date"].datetime == SENT_AT
    assert message["Message-ID"] == f"<{RECIPIENT}@neige.example>"
    assert message["MIME-Version"] == "1.0"
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in parts(message)] == ["text/plain", "text/html"]
    assert [p.get_content_charset() for p in parts(message)] == ["utf-8", "utf-8"]
    assert [p["Content-Transfer-Encoding"] for p in parts(message)] == ["quoted-printable"] * 2
    assert content(message, "plain") == FRENCH_TEXT
    assert content(message, "html") == FRENCH_HTML
    assert "&lt;script&gt;" in content(message, "html")
    assert message.defects == [] and all(p.defects == [] for p in parts(message))

    assert raw.isascii()
    assert "\n" not in raw.replace("\r\n", "") and "\r" not in raw.replace("\r\n", "")
    assert max(len(line) for line in raw.split("\r\n")) <= 998
    assert max(len(line) for line in header_lines(raw)) <= 78
    assert max(len(line) for line in part_body_lines(raw)) <= 76


def test_bodies_come_back_exactly_without_an_added_line_break() -> None:
    message = parse(build(text="no final line break", html="<p>é</p>"))
    assert content(message, "plain") == "no final line break"
    assert content(message, "html") == "<p>é</p>"


def test_any_line_break_style_in_a_body_is_sent_as_crlf() -> None:
    raw = build(text="mac\rdos\r\nunix\n")
    assert content(parse(raw), "plain") == "mac\ndos\nunix\n"
    assert "\n" not in raw.replace("\r\n", "") and "\r" not in raw.replace("\r\n", "")


def test_an_empty_body_and_subject_parse_back_empty() -> None:
    message = parse(build(subject="", text="", html=""))
    assert message["Subject"] == ""
    assert (content(message, "plain"), content(message, "html")) == ("", "")
    assert message.defects == [] and all(p.defects == [] for p in parts(message))


# --- the same result as the standard library's EmailMessage ---------------------------------


def reference(sender_name: str, reply_to: str | None, subject: str, text: str, html: str) -> bytes:
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = Address(display_name=sender_name, addr_spec=SENDER)
    message["To"] = "client@example.com"
    if reply_to:
        message["Reply-To"] = reply_to
    message["Subject"] = subject
    message.set_content(text, cte="quoted-printable")
    message.add_alternative(html, subtype="html", cte="quoted-printable")
    return message.as_bytes()


def summary(raw: str | bytes) -> dict[str, Any]:
    message = parse(raw)
    sender = message["From"].addresses[0]
    return {
        "subject": message["Subject"],
        "from": (sender.display_name, sender.addr_spec),
        "to": message["To"],
        "reply_to": message["Reply-To"],
        "text": content(message, "plain"),
        "html": content(message, "html"),
        "defects": [message.defects, *(p.defects for p in parts(message))],
    }


# The standard library ends every body with a line break; these inputs do, to compare the rest.
EQUIVALENCE_CASES = {
    "ascii": (
        "Snow Removal Inc",
        None,
        "Snow removal tonight",
        "Hello,\nTonight.\n",
        "<p>Hi</p>\n",
    ),
    "accents": (
        FRENCH_NAME,
        "service@neige.example",
        FRENCH_SUBJECT,
        FRENCH_TEXT,
        FRENCH_HTML,
    ),
    "emoji": (
        "Neige ❄️ Côté",
        None,
        "Tempête ❄️🌨️ ce soir — 🚗 à déplacer",
        "❄️ Déneigement 🚜\n",
        "<p>❄️ 🚜 😀</p>\n",
    ),
    "very long ascii subject": (
        "Snow, Removal & Sons",
        None,
        " ".join(["Important notice about the snow removal on your street tonight"] * 4),
        "x\n",
        "<p>x</p>\n",
    ),
    "very long accented subject": (
        'Déneigement "Côté"',
        None,
        " ".join(["Avis très important : déneigement de la rue Saint-Étienne ce soir"] * 4),
        "x\n",
        "<p>x</p>\n",
    ),
    "long unbroken subject": ("X", None, "a" * 120, "x\n", "<p>x</p>\n"),
    "long unbroken lines": (
        "X",
        None,
        "s",
        "a" * 500 + "é" * 200 + "=" * 50 + "\n",
        "<p>" + "déneigement" * 300 + "</p>\n",
    ),
    "trailing spaces and tabs": ("X", None, "s", "spaces   \ntab\t\nboth \t \n", "<p> </p>  \n"),
    "dot and From lines": (
        "X",
        None,
        "s",
        ".\n.leading dot\nFrom here on\n..\n",
        ".\n<p>x</p>\nFrom the city\n",
    ),
}


@pytest.mark.parametrize("case", EQUIVALENCE_CASES.values(), ids=EQUIVALENCE_CASES.keys())
def test_same_parsed_result_as_the_standard_library(
    case: tuple[str, str | None, str, str, str],
) -> None:
    sender_name, reply_to, subject, text, html = case
    ours = build(
        skeleton(sender_address=SENDER, sender_name=sender_name, reply_to=reply_to),
        to="client@example.com",
        subject=subject,
        text=text,
        html=html,
    )
    assert summary(ours) == summary(reference(sender_name, reply_to, subject, text, html))
    assert summary(ours)["subject"] == subject and summary(ours)["text"] == text
    assert max(len(line) for line in header_lines(ours)) <= 78
    assert max(len(line) for line in part_body_lines(ours)) <= 76


@pytest.mark.parametrize(
    "subject",
    [
        " leading blank",
        "tab\tinside",
        "=?utf-8?q?looks_encoded?=",
        "trailing blanks  ",
        "a  b",
        "word " * 30,
        "x" + " " * 100 + "y",
    ],
)
def test_subjects_a_reader_would_alter_when_sent_as_is_come_back_exactly(subject: str) -> None:
    raw = build(subject=subject)
    assert parse(raw)["Subject"] == subject
    assert max(len(line) for line in header_lines(raw)) <= 78
    assert all(line.strip() for line in header_lines(raw))


@pytest.mark.parametrize(
    ("subject", "lines"),
    [
        (
            "Snow removal on your street tonight: please move your car before 11 PM, thank you",
            [
                "Subject: Snow removal on your street tonight: please move your car before 11",
                " PM, thank you",
            ],
        ),
        ("a" * 69 + " tail", ["Subject: " + "a" * 69, " tail"]),  # a first line of exactly 78
    ],
)
def test_a_long_ascii_subject_is_folded_at_the_last_space_that_fits(
    subject: str, lines: list[str]
) -> None:
    raw = build(subject=subject)
    assert field_lines(raw, "Subject") == lines
    assert parse(raw)["Subject"] == subject


def test_a_subject_is_never_folded_between_its_field_name_and_its_first_word() -> None:
    subject = "a" * 75 + " tail"  # the first word does not fit after "Subject: "
    raw = build(subject=subject)
    assert parse(raw)["Subject"] == subject
    assert field_lines(raw, "Subject")[0] != "Subject:"
    assert max(len(line) for line in header_lines(raw)) <= 78


def test_encoded_words_hold_whole_characters_on_lines_of_at_most_76() -> None:
    subject = "é" * 60  # 120 bytes: a word cut at a byte count would split a character
    lines = field_lines(build(subject=subject), "Subject")
    words = re.findall(r"=\?utf-8\?b\?([^?]*)\?=", "".join(lines))
    assert len(words) == len(lines) > 2
    # RFC 2047 5: each encoded-word decodes alone to whole characters.
    assert "".join(base64.b64decode(word).decode("utf-8") for word in words) == subject
    assert max(len(line) for line in lines) <= 76


@pytest.mark.parametrize(
    "name",
    [
        'Côté "le roi" du déneigement',
        "Smith, Jones & Co.",
        'Say "hi"\\',
        "=?x?=",
        " Leading and trailing blanks ",
        "Snow Removal and Landscaping Services of the Greater Montreal Area Incorporated",
    ],
)
def test_sender_names_come_back_exactly(name: str) -> None:
    raw = build(french_skeleton(sender_name=name))
    message = parse(raw)
    assert message["From"].addresses[0].display_name == name
    assert message["From"].addresses[0].addr_spec == SENDER
    assert message["From"].defects == ()
    assert max(len(line) for line in header_lines(raw)) <= 78


def test_a_long_sender_name_is_split_into_encoded_words_rfc_2047_readers_join() -> None:
    name = "Société de déneigement et d'entretien paysager Côté & Tremblay inc. — Québec"
    raw = build(french_skeleton(sender_name=name)).encode("ascii")
    as_sent = email.message_from_bytes(raw, policy=email.policy.compat32)["From"]
    # RFC 2047 6.2: blanks between encoded-words are not part of the text, and mail readers
    # drop them; Python's address parser alone keeps them (one space where the words meet).
    assert str(make_header(decode_header(as_sent))) == f"{name} <{SENDER}>"
    assert as_sent.count("=?utf-8?b?") == 2


def test_a_name_too_long_to_quote_on_one_line_is_sent_as_encoded_words() -> None:
    name = "Snow Removal, Landscaping & Services of the Greater Montreal Area, Incorporated"
    raw = build(french_skeleton(sender_name=name))
    as_sent = email.message_from_bytes(raw.encode("ascii"), policy=email.policy.compat32)["From"]
    assert str(make_header(decode_header(as_sent))) == f"{name} <{SENDER}>"
    assert max(len(line) for line in header_lines(raw)) <= 78


@pytest.mark.parametrize(
    ("name", "lengths"),
    [
        ("Neige " + "x" * 45, [78]),  # the address fits on the name's line exactly
        ("Neige " + "x" * 46, [58, 21]),  # one more character: it goes on a line of its own
        (" ".join(["Neige"] * 26), [77, 78, 27]),  # the last of three lines has room for it
    ],
)
def test_the_sender_address_shares_the_last_line_of_the_name_when_it_fits(
    name: str, lengths: list[int]
) -> None:
    raw = build(french_skeleton(sender_name=name))
    lines = field_lines(raw, "From")
    assert [len(line) for line in lines] == lengths
    assert lines[-1].endswith(f" <{SENDER}>")
    assert parse(raw)["From"].addresses[0].display_name == name


def test_no_sender_name_gives_a_bare_address() -> None:
    message = parse(build(french_skeleton(sender_name="")))
    assert message["From"] == SENDER


@pytest.mark.parametrize(
    "line", ["a" * 74 + " ", "a" * 75 + " ", "a" * 74 + "\t", "a" * 75 + "\t", "a" * 73 + "é\t"]
)
def test_a_blank_ending_a_full_line_keeps_the_line_within_76(line: str) -> None:
    raw = build(text=line + "\nnext\n")
    assert content(parse(raw), "plain") == line + "\nnext\n"
    assert max(len(line) for line in part_body_lines(raw)) <= 76


def test_random_bodies_come_back_exactly_with_short_7bit_lines() -> None:
    alphabet = "ab =.\t\r\n-_éÉ—❄️😀\x00\x7f\u2028"
    generator = random.Random(5)
    for _ in range(150):
        text = "".join(generator.choices(alphabet, k=generator.randrange(0, 300)))
        raw = build(text=text, html=text[::-1])
        message = parse(raw)
        assert content(message, "plain") == text.replace("\r\n", "\n").replace("\r", "\n")
        assert content(message, "html") == text[::-1].replace("\r\n", "\n").replace("\r", "\n")
        assert raw.isascii()
        assert max(len(line) for line in part_body_lines(raw)) <= 76


# --- the boundary --------------------------------------------------------------------------


def test_a_body_quoting_the_boundary_cannot_end_its_part() -> None:
    boundary = f"=_{RECIPIENT.hex}"
    hostile = f"--{boundary}\n--{boundary}--\n=_ =_x\n"
    raw = build(text=hostile, html=hostile)
    message = parse(raw)
    assert (content(message, "plain"), content(message, "html")) == (hostile, hostile)
    # Quoted-printable writes "=" only before two hex digits or a line break, never before "_".
    assert all("=_" not in line for line in part_body_lines(raw))
    assert raw.count(f"\r\n--{boundary}") == 3


def test_each_recipient_gets_its_own_boundary() -> None:
    other = UUID("0b0e6a52-8f3c-5d1e-9a47-1c2d3e4f5a6b")
    first, second = parse(build()), parse(build(recipient_id=other))
    assert first.get_boundary() != second.get_boundary()


def test_same_inputs_give_the_same_bytes() -> None:
    # build() makes a new skeleton each time: nothing depends on the skeleton's identity.
    assert build(list_unsubscribe=UNSUBSCRIBE) == build(list_unsubscribe=UNSUBSCRIBE)


# --- header injection and addresses --------------------------------------------------------

BREAKS = ["\r", "\n", "\r\n", "\u2028", "\x85"]


@pytest.mark.parametrize("line_break", BREAKS)
@pytest.mark.parametrize("field", ["subject", "to"])
def test_a_line_break_in_a_message_header_is_refused(field: str, line_break: str) -> None:
    value = {"subject": "Avis", "to": "a@example.com"}[field]
    with pytest.raises(HeaderInjection, match="line break"):
        build(**{field: value + line_break + "Bcc: everyone@example.com"})


@pytest.mark.parametrize("line_break", BREAKS)
@pytest.mark.parametrize("field", ["url", "mailto"])
def test_a_line_break_in_an_unsubscribe_value_is_refused(field: str, line_break: str) -> None:
    values = {"url": "https://x.example/u", "mailto": "u@x.example"}
    values[field] += line_break + "Bcc: everyone@example.com"
    with pytest.raises(HeaderInjection):
        build(list_unsubscribe=ListUnsubscribe(**values))


@pytest.mark.parametrize("line_break", BREAKS)
@pytest.mark.parametrize("field", ["sender_name", "reply_to", "sender_address"])
def test_a_line_break_in_a_sender_header_is_refused(field: str, line_break: str) -> None:
    values = {"sender_name": "Neige", "reply_to": "r@x.example", "sender_address": SENDER}
    with pytest.raises(HeaderInjection):
        french_skeleton(**{field: values[field] + line_break + "Bcc: everyone@example.com"})


@pytest.mark.parametrize(
    "address",
    [
        "a@example.com, b@example.com",
        "Élise <e@example.com>",
        "élise@example.com",
        '"quoted"@example.com',
        "nobody",
        "",
        "a" * 250 + "@example.com",
    ],
)
def test_an_address_a_header_cannot_carry_as_is_is_refused(address: str) -> None:
    with pytest.raises(InvalidAddress):
        build(to=address)
    with pytest.raises(InvalidAddress):
        french_skeleton(reply_to=address or "x")


def test_the_longest_address_is_254_characters() -> None:
    domain = "b" * 63 + "." + "c" * 63 + "." + "d" * 57 + ".com"
    longest = "a" * 64 + "@" + domain
    assert len(longest) == 254
    assert parse(build(to=longest))["To"] == longest
    with pytest.raises(InvalidAddress):
        build(to="a" + longest)


# What a refusal says becomes the detail of the recipient's delivery failure (render.py).
@pytest.mark.parametrize(
    ("overrides", "error", "header"),
    [
        ({"to": "nobody"}, InvalidAddress, "To"),
        ({"to": "a@example.com\nBcc: b@example.com"}, HeaderInjection, "To"),
        ({"subject": "Avis\nBcc: b@example.com"}, HeaderInjection, "Subject"),
        (
            {"list_unsubscribe": ListUnsubscribe("https://x.example/u v")},
            ValueError,
            "List-Unsubscribe",
        ),
        (
            {"list_unsubscribe": ListUnsubscribe("https://x.example/u\n")},
            HeaderInjection,
            "List-Unsubscribe",
        ),
        (
            {"list_unsubscribe": ListUnsubscribe("https://x.example/u", "u@x.example\n")},
            HeaderInjection,
            "List-Unsubscribe",
        ),
    ],
)
def test_a_refused_message_value_names_its_header(
    overrides: dict[str, Any], error: type[ValueError], header: str
) -> None:
    with pytest.raises(error, match=f"^{header} "):
        build(**overrides)


@pytest.mark.parametrize(
    ("overrides", "error", "named"),
    [
        ({"sender_address": "nobody"}, InvalidAddress, "From"),
        ({"sender_name": "Neige\nBcc: b@example.com"}, HeaderInjection, "From"),
        ({"reply_to": "nobody"}, InvalidAddress, "Reply-To"),
        ({"dkim": DkimKey("neige.example\n", "courriel", b"")}, HeaderInjection, "DKIM domain"),
        ({"dkim": DkimKey("neige.example", "courriel\n", b"")}, HeaderInjection, "DKIM selector"),
    ],
)
def test_a_refused_sender_value_names_what_it_is(
    overrides: dict[str, Any], error: type[ValueError], named: str
) -> None:
    with pytest.raises(error, match=f"^{named} "):
        french_skeleton(**overrides)


def test_a_refused_address_is_quoted_in_the_refusal() -> None:
    with pytest.raises(InvalidAddress, match="'nobody'"):
        build(to="nobody")


# --- List-Unsubscribe ----------------------------------------------------------------------


def test_list_unsubscribe_headers_are_exact_when_given() -> None:
    message = parse(build(list_unsubscribe=UNSUBSCRIBE))
    assert message["List-Unsubscribe"] == (
        "<https://liens.neige.example/u/6f1c2e0a?sig=Zm9vYmFy>, "
        "<mailto:desabonnement@neige.example>"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_list_unsubscribe_without_mailto_and_with_a_long_url() -> None:
    url = "https://liens.neige.example/u/" + "a" * 300
    message = parse(build(list_unsubscribe=ListUnsubscribe(url, "mailto:u@x.example?subject=u")))
    assert message["List-Unsubscribe"] == f"<{url}>, <mailto:u@x.example?subject=u>"
    message = parse(build(list_unsubscribe=ListUnsubscribe("https://x.example/u")))
    assert message["List-Unsubscribe"] == "<https://x.example/u>"


def test_a_short_list_unsubscribe_is_one_line() -> None:
    raw = build(list_unsubscribe=ListUnsubscribe("https://x.example/u", "u@x.example"))
    assert field_lines(raw, "List-Unsubscribe") == [
        "List-Unsubscribe: <https://x.example/u>, <mailto:u@x.example>"
    ]


def test_a_list_unsubscribe_line_can_reach_998_characters_but_no_more() -> None:
    url = "https://x.example/" + "a" * 960
    raw = build(list_unsubscribe=ListUnsubscribe(url))
    assert [len(line) for line in field_lines(raw, "List-Unsubscribe")] == [998]
    with pytest.raises(ValueError, match=r"^List-Unsubscribe is longer than a header line"):
        build(list_unsubscribe=ListUnsubscribe(url + "a"))


def test_no_list_unsubscribe_headers_unless_given() -> None:
    message = parse(build())
    assert "List-Unsubscribe" not in message and "List-Unsubscribe-Post" not in message
    assert message["MIME-Version"] == "1.0"


# --- DKIM ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_key() -> tuple[bytes, bytes]:
    """(PEM private key, base64 DER public key)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    private = subprocess.run([openssl, "genrsa", "1024"], capture_output=True, check=True).stdout
    public = subprocess.run(
        [openssl, "rsa", "-pubout", "-outform", "DER"],
        input=private,
        capture_output=True,
        check=True,
    ).stdout
    return private, base64.b64encode(public)


def dns(public_key: bytes) -> Callable[..., bytes]:
    def txt(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"courriel._domainkey.neige.example."
        return b"v=DKIM1; k=rsa; p=" + public_key

    return txt


def signature_tags(raw: bytes) -> dict[str, str]:
    value = parse(raw)["DKIM-Signature"]
    return dict(tag.strip().split("=", 1) for tag in value.split(";") if tag.strip())


def signed(private_key: bytes, **overrides: Any) -> bytes:
    key = DkimKey(domain="neige.example", selector="courriel", private_key=private_key)
    return build(french_skeleton(dkim=key), **overrides).encode("ascii")


def test_a_signed_message_verifies_and_signs_the_headers_it_has(
    rsa_key: tuple[bytes, bytes],
) -> None:
    private, public = rsa_key
    raw = signed(private, list_unsubscribe=UNSUBSCRIBE)
    assert raw.startswith(b"DKIM-Signature: ")
    assert dkim.verify(raw, dnsfunc=dns(public))
    tags = signature_tags(raw)
    assert (tags["c"], tags["d"], tags["s"]) == ("relaxed/relaxed", "neige.example", "courriel")
    assert tags["h"].replace(" ", "").split(":") == [
        "from", "to", "subject", "date", "message-id", "mime-version", "content-type",
        "reply-to", "list-unsubscribe", "list-unsubscribe-post",
    ]  # fmt: skip


def test_without_unsubscribe_or_reply_to_those_headers_are_not_signed(
    rsa_key: tuple[bytes, bytes],
) -> None:
    private, public = rsa_key
    key = DkimKey(domain="neige.example", selector="courriel", private_key=private)
    raw = build(french_skeleton(reply_to=None, dkim=key)).encode("ascii")
    assert dkim.verify(raw, dnsfunc=dns(public))
    assert signature_tags(raw)["h"].replace(" ", "").split(":") == [
        "from", "to", "subject", "date", "message-id", "mime-version", "content-type",
    ]  # fmt: skip


def test_a_tampered_subject_fails_verification(rsa_key: tuple[bytes, bytes]) -> None:
    private, public = rsa_key
    raw = signed(private, subject="Avis ordinaire")
    tampered = raw.replace(b"Subject: Avis ordinaire", b"Subject: Avis urgent")
    assert tampered != raw
    assert not dkim.verify(tampered, dnsfunc=dns(public))


def test_a_key_dkimpy_cannot_read_fails_the_skeleton() -> None:
    with pytest.raises(ValueError, match="DKIM"):
        french_skeleton(dkim=DkimKey("neige.example", "courriel", b"not a key"))


def test_the_date_header_keeps_the_offset_given() -> None:
    utc = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse(build(sent_at=utc))["Date"] == "Fri, 02 Jan 2026 03:04:05 +0000"
    assert parse(build())["Date"] == "Mon, 23 Nov 2026 15:00:07 -0500"


def test_the_date_header_changes_with_the_second_and_the_offset_not_the_microseconds() -> None:
    utc = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    east = utc.astimezone(timezone(timedelta(hours=1)))  # the same instant, another offset
    dates = [
        parse(build(sent_at=at))["Date"]
        for at in (utc, utc.replace(microsecond=999_999), east, utc + timedelta(seconds=1), utc)
    ]
    assert dates == [
        "Fri, 02 Jan 2026 03:04:05 +0000",
        "Fri, 02 Jan 2026 03:04:05 +0000",
        "Fri, 02 Jan 2026 04:04:05 +0100",
        "Fri, 02 Jan 2026 03:04:06 +0000",
        "Fri, 02 Jan 2026 03:04:05 +0000",
    ]
