import pytest

from services.composer.sms import SmsSize, measure, normalise

GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
EMOJI = "\U0001f600"  # 😀, outside the BMP: a surrogate pair


def test_the_whole_basic_alphabet_is_gsm7() -> None:
    assert len(GSM_BASIC) == 127  # 128 codes less ESC
    assert measure(GSM_BASIC) == SmsSize("gsm7", 127, 1)


@pytest.mark.parametrize(
    ("length", "segments"),
    [(1, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3), (460, 4)],
)
def test_gsm7_segments(length: int, segments: int) -> None:
    assert measure("a" * length) == SmsSize("gsm7", length, segments)


def test_empty_text_is_one_segment() -> None:
    assert measure("") == SmsSize("gsm7", 0, 1)


@pytest.mark.parametrize("char", ["^", "{", "}", "\\", "[", "~", "]", "|", "€", "\f"])
def test_extension_characters_count_two_septets(char: str) -> None:
    assert measure(char) == SmsSize("gsm7", 2, 1)
    assert measure("a" * 158 + char) == SmsSize("gsm7", 160, 1)
    assert measure("a" * 159 + char) == SmsSize("gsm7", 161, 2)


def test_an_extension_character_does_not_straddle_two_segments() -> None:
    # 152 septets, then € would take septets 153 and 154: it starts segment 2 instead.
    text = "a" * 152 + "€" + "a" * 152
    assert measure(text) == SmsSize("gsm7", 306, 3)  # ceil(306 / 153) would say 2
    # Moved, it costs segment 1 one septet, not two: the rest still fills segment 2 exactly.
    assert measure("a" * 152 + "€" + "a" * 151) == SmsSize("gsm7", 305, 2)
    # One character earlier it fits in segment 1, and the total fits in two.
    assert measure("a" * 151 + "€" + "a" * 153) == SmsSize("gsm7", 306, 2)
    # At the start of segment 2 it is not straddling anything.
    assert measure("a" * 153 + "€" + "a" * 151) == SmsSize("gsm7", 306, 2)


def test_straddling_in_a_later_segment() -> None:
    # Segment 1: 153 plain; segment 2: 152 plain, then { moves to segment 3.
    text = "a" * 305 + "{" + "a" * 152
    assert measure(text) == SmsSize("gsm7", 459, 4)  # ceil(459 / 153) would say 3
    assert measure("a" * 304 + "{" + "a" * 153) == SmsSize("gsm7", 459, 3)


def test_french_accents_that_gsm7_has() -> None:
    assert measure("Votre déneigement à Montréal est prévu").encoding == "gsm7"
    assert measure("éèàùìòÉÇ").encoding == "gsm7"


@pytest.mark.parametrize(
    "word", ["Fenêtre", "château", "île", "hôtel", "sûr", "Noël", "maïs", "ça"]
)
def test_french_accents_that_gsm7_lacks_switch_to_ucs2(word: str) -> None:
    assert measure(word) == SmsSize("ucs2", len(word), 1)


@pytest.mark.parametrize(
    ("length", "segments"),
    [(70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4)],
)
def test_ucs2_segments(length: int, segments: int) -> None:
    text = "ê" * length
    assert measure(text) == SmsSize("ucs2", length, segments)


def test_emoji_count_two_units() -> None:
    assert measure(EMOJI) == SmsSize("ucs2", 2, 1)
    assert measure(EMOJI * 35) == SmsSize("ucs2", 70, 1)
    assert measure(EMOJI * 36) == SmsSize("ucs2", 72, 2)
    assert measure("Merci " + EMOJI) == SmsSize("ucs2", 8, 1)


def test_a_surrogate_pair_is_not_split_across_segments() -> None:
    # 66 units, then the emoji would take units 67 and 68: it starts segment 2.
    text = "ê" * 66 + EMOJI + "ê" * 66
    assert measure(text) == SmsSize("ucs2", 134, 3)  # ceil(134 / 67) would say 2
    assert measure("ê" * 65 + EMOJI + "ê" * 67) == SmsSize("ucs2", 134, 2)
    # 67 is odd: a segment holds 33 emoji, not 33.5.
    assert measure(EMOJI * 66) == SmsSize("ucs2", 132, 2)
    assert measure(EMOJI * 67) == SmsSize("ucs2", 134, 3)


def test_an_extension_character_in_a_ucs2_message_is_one_unit() -> None:
    assert measure("€ê") == SmsSize("ucs2", 2, 1)


def test_normalise_typography() -> None:
    assert normalise("l\u2019hiver") == "l'hiver"
    assert normalise("\u2018oui\u2019") == "'oui'"
    assert normalise("\u201coui\u201d") == '"oui"'
    assert normalise("\u00ab\u00a0oui\u00a0\u00bb") == '" oui "'
    assert normalise("9 h \u2013 17 h \u2014 fin") == "9 h - 17 h - fin"
    assert normalise("Attendez\u2026") == "Attendez..."
    assert normalise("Question\u202f?") == "Question ?"


def test_normalise_leaves_letters_alone() -> None:
    text = "Fenêtre à Montréal, çà et là, Noël, ÉTÉ"
    assert normalise(text) == text
    plain = "Rien à changer."
    assert normalise(plain) is plain


def test_a_french_amount_becomes_gsm7_once_normalised() -> None:
    amount = "Solde : 1\u00a0234,56\u00a0$"
    assert measure(amount).encoding == "ucs2"
    assert normalise(amount) == "Solde : 1 234,56 $"
    assert measure(normalise(amount)) == SmsSize("gsm7", 18, 1)


def test_a_typical_french_reminder_fits_one_gsm7_segment() -> None:
    text = normalise(
        "Bonjour, votre d\u00e9neigement au 12 rue Principale est pr\u00e9vu le 1er d\u00e9cembre "
        "2026 \u00e0 9\u00a0h\u00a005. Solde\u00a0: 1\u00a0234,56\u00a0$. R\u00e9pondez STOP "
        "pour vous d\u00e9sabonner."
    )
    size = measure(text)
    assert size.encoding == "gsm7"
    assert size.segments == 1
