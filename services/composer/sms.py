"""What an SMS costs: its encoding, its length in that encoding and its segments. Pure.

A single character outside the GSM 03.38 alphabet switches the whole message to UCS-2, which
cuts a segment from 160 characters to 70: `normalise` removes the typographic characters that
would do so for no visible benefit.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Encoding = Literal["gsm7", "ucs2"]

# GSM 03.38 default alphabet in table order, without ESC (0x1B), which introduces the extension
# table. Note Ç (0x09) is there but ç is not, as in the standard.
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# The extension table: each is sent as ESC + code, two septets.
_GSM_EXTENSION = "\f^{}\\[~]|€"
_GSM = _GSM_BASIC | frozenset(_GSM_EXTENSION)
_EXTENSION_CHAR = re.compile(f"[{re.escape(_GSM_EXTENSION)}]")
# Outside the Basic Multilingual Plane: a surrogate pair, two UTF-16 code units.
_ASTRAL_CHAR = re.compile("[\U00010000-\U0010ffff]")

# One segment, or per segment of a concatenated message (the rest of a segment is its UDH).
_GSM_SINGLE, _GSM_PART = 160, 153
_UCS2_SINGLE, _UCS2_PART = 70, 67

_TYPOGRAPHY = {
    "\u00a0": " ",  # no-break space (French amounts, before : ; ! ?)
    "\u202f": " ",  # narrow no-break space
    "\u2009": " ",  # thin space
    "\u2018": "'",
    "\u2019": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u00ab": '"',  # «
    "\u00bb": '"',  # »
    "\u2011": "-",  # non-breaking hyphen
    "\u2013": "-",  # en dash
    "\u2014": "-",  # em dash
    "\u2212": "-",  # minus sign
    "\u2026": "...",
}
_TYPOGRAPHIC_CHAR = re.compile(f"[{''.join(_TYPOGRAPHY)}]")


@dataclass(frozen=True, slots=True)
class SmsSize:
    """`units` are septets for gsm7 (an extension character counts 2), UTF-16 code units for
    ucs2 (an emoji counts 2)."""

    encoding: Encoding
    units: int
    segments: int


def normalise(text: str) -> str:
    """`text` with typographic spaces, quotes, dashes and ellipses replaced by their plain ASCII
    forms. Letters are left alone: "ê" costs UCS-2, but changing it would misspell the word."""
    # Most messages have none of them: searching is cheaper than rebuilding the string.
    if not _TYPOGRAPHIC_CHAR.search(text):
        return text
    return _TYPOGRAPHIC_CHAR.sub(lambda found: _TYPOGRAPHY[found[0]], text)


def measure(text: str) -> SmsSize:
    """The encoding a gateway will use for `text`, its length and its segment count.

    An empty text is 0 units but 1 segment: a message is still sent and billed."""
    if _GSM_BASIC.issuperset(text):
        return SmsSize("gsm7", len(text), _segments(len(text), (), _GSM_SINGLE, _GSM_PART))
    if _GSM.issuperset(text):
        wide = _two_unit_starts(_EXTENSION_CHAR, text)
        units = len(text) + len(wide)
        return SmsSize("gsm7", units, _segments(units, wide, _GSM_SINGLE, _GSM_PART))
    wide = _two_unit_starts(_ASTRAL_CHAR, text)
    units = len(text) + len(wide)
    return SmsSize("ucs2", units, _segments(units, wide, _UCS2_SINGLE, _UCS2_PART))


def _two_unit_starts(pattern: re.Pattern[str], text: str) -> list[int]:
    """Where each two-unit character starts, in units: every earlier one shifted it by one."""
    return [found.start() + before for before, found in enumerate(pattern.finditer(text))]


def _segments(units: int, wide_starts: Sequence[int], single: int, part: int) -> int:
    if units <= single:
        return 1
    if not wide_starts:
        return -(-units // part)
    # Phones cannot join an escape sequence or a surrogate pair cut between two segments, so a
    # two-unit character that would straddle the boundary starts the next segment instead.
    starts = frozenset(wide_starts)
    segments, start = 0, 0
    while start < units:
        end = start + part
        if end - 1 in starts:
            end -= 1
        segments, start = segments + 1, end
    return segments
