from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowctl.engine.sms import SmsInfo, segments
from flowctl.spec.config import load_bundle
from flowctl.spec.templating import compile_template


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", SmsInfo(encoding="GSM-7", characters=0, segments=0)),
        ("a" * 160, SmsInfo(encoding="GSM-7", characters=160, segments=1)),
        ("a" * 161, SmsInfo(encoding="GSM-7", characters=161, segments=2)),
        ("a" * 306, SmsInfo(encoding="GSM-7", characters=306, segments=2)),
        ("a" * 307, SmsInfo(encoding="GSM-7", characters=307, segments=3)),
        ("ú" * 70, SmsInfo(encoding="UCS-2", characters=70, segments=1)),
        ("ú" * 71, SmsInfo(encoding="UCS-2", characters=71, segments=2)),
        ("ú" * 134, SmsInfo(encoding="UCS-2", characters=134, segments=2)),
        ("ú" * 135, SmsInfo(encoding="UCS-2", characters=135, segments=3)),
    ],
)
def test_segment_limits(text: str, expected: SmsInfo) -> None:
    assert segments(text) == expected


@pytest.mark.parametrize("char", list("€[]{}\\^~|"))
def test_extension_characters_count_two(char: str) -> None:
    assert segments(char) == SmsInfo(encoding="GSM-7", characters=2, segments=1)
    assert segments(char * 80).segments == 1
    assert segments(char * 81).segments == 2


def test_extension_character_is_not_split_across_parts() -> None:
    # '€' would straddle parts 1 and 2, so it moves whole into part 2 and pushes the last 'a' into
    # a third part, where dividing 306 septets by 153 would say two.
    text = "a" * 152 + "€" + "a" * 152
    assert segments(text).characters == 306
    assert segments(text).segments == 3


def test_gsm_accented_latin_stays_gsm() -> None:
    assert segments("Café à Paris: ñ ü ø å Ç £ ¥ @ _").encoding == "GSM-7"


def test_vietnamese_is_ucs2_until_unaccented() -> None:
    text = "Chúc mừng sinh nhật Đặng Thị Ánh!"
    assert segments(text).encoding == "UCS-2"
    plain = compile_template("{{ text | unaccent }}").render({"text": text})
    assert plain == "Chuc mung sinh nhat Dang Thi Anh!"
    assert segments(plain) == SmsInfo(encoding="GSM-7", characters=len(plain), segments=1)


def test_emoji_counts_two_utf16_units() -> None:
    assert segments("🎂") == SmsInfo(encoding="UCS-2", characters=2, segments=1)
    assert segments("🎂" * 35).segments == 1
    assert segments("🎂" * 36).segments == 2


def test_lowercase_c_cedilla_is_not_gsm() -> None:
    # GSM 03.38 has only the capital Ç; ç forces UCS-2.
    assert segments("ç").encoding == "UCS-2"


def test_unaccent_transliterates_symbols_so_the_text_stays_gsm7() -> None:
    text = "Chào “Lan” – đơn #12: 1.500.000 ₫… xem ngay → shop"
    plain = compile_template("{{ text | unaccent }}").render({"text": text})
    assert plain == 'Chao "Lan" - don #12: 1.500.000 d... xem ngay > shop'
    assert segments(plain).encoding == "GSM-7"


def test_unaccent_keeps_vietnamese_exact_and_what_gsm7_carries() -> None:
    render = compile_template("{{ text | unaccent }}").render
    assert render({"text": "Đặng Thị Ánh, Nguyễn Văn Ượng, ở Huế"}) == "Dang Thi Anh, Nguyen Van Uong, o Hue"
    assert render({"text": "£5 €5 ß Ø Æ ¿"}) == "£5 €5 ß Ø Æ ¿"  # GSM-7 has them: nothing to gain
    assert render({"text": "🎂"}) == ":birthday:"


def test_w007_spares_vietnamese_texts_and_unaccented_or_vnd_money() -> None:
    broken = Path(__file__).parent / "broken" / "W007-sms-ucs2-symbol"
    found = [(i.line, i.message) for i in load_bundle(broken).issues if i.code == "W007"]
    # not the Vietnamese text (22), nor unaccent and money('VND') (24), nor a filter block (25)
    assert [line for line, _ in found] == [11, 23]
    assert "money filter writes '₫'" in found[0][1]
    assert "'–' (U+2013), '…' (U+2026)" in found[1][1]


def _counted_by_hand(text: str) -> tuple[str, int, int]:
    """The rule of the module's docstring, one character at a time: what ``segments`` must say."""
    from flowctl.engine.sms import GSM7_BASIC, GSM7_EXTENSION

    if all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text):
        encoding, costs, (single, per_part) = "GSM-7", [2 if c in GSM7_EXTENSION else 1 for c in text], (160, 153)
    else:
        encoding, costs, (single, per_part) = "UCS-2", [2 if ord(c) > 0xFFFF else 1 for c in text], (70, 67)
    total = sum(costs)
    if total <= single:
        return encoding, total, 1 if total else 0
    parts, used = 1, 0
    for cost in costs:
        if used + cost > per_part:
            parts, used = parts + 1, 0
        used += cost
    return encoding, total, parts


@given(st.text(alphabet="aZ09 @£€[]^{}|~\\\f\nđĐăêôơưÀáạçú🎂😀\ud800", max_size=400))
def test_segments_counts_as_the_rule_says_one_character_at_a_time(text: str) -> None:
    # the one-part shortcuts (a set test, UTF-16 length) agree with counting each character,
    # lone surrogates (JSON can carry one) included
    info = segments(text)
    assert (info.encoding, info.characters, info.segments) == _counted_by_hand(text)
