"""How many SMS parts a text costs, so `validate` can warn before a carrier bills for three.

A text that fits the GSM 03.38 alphabet travels as GSM-7 (160 septets, 153 per part when split);
one character outside it (a Vietnamese diacritic, an emoji) switches the whole text to UCS-2
(70 UTF-16 units, 67 per part). Parts never split an escape sequence or a surrogate pair.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from flowctl.spec.gsm import GSM7_BASIC, GSM7_EXTENSION

__all__ = ["GSM7_BASIC", "GSM7_EXTENSION", "SmsInfo", "segments"]

_LIMITS = {"GSM-7": (160, 153), "UCS-2": (70, 67)}


@dataclass(frozen=True, kw_only=True, slots=True)
class SmsInfo:
    encoding: Literal["GSM-7", "UCS-2"]
    characters: int  # length in encoding units: septets for GSM-7, UTF-16 code units for UCS-2
    segments: int  # parts the text is sent as; 0 for an empty text


_BASIC_ONLY = frozenset(GSM7_BASIC)
_GSM7 = _BASIC_ONLY | frozenset(GSM7_EXTENSION)


def segments(text: str) -> SmsInfo:
    """Encoding, length and part count of ``text`` as a handset or SMS gateway would send it.

    A text of one part is counted without a look at each character in Python (every SMS the
    engine renders is counted; a Vietnamese one is UCS-2)."""
    if len(text) <= 160 and _BASIC_ONLY.issuperset(text):  # the common case: one plain GSM-7 part
        return SmsInfo(encoding="GSM-7", characters=len(text), segments=1 if text else 0)
    encoding: Literal["GSM-7", "UCS-2"]
    if _GSM7.issuperset(text):
        encoding = "GSM-7"
        total = len(text) + sum(text.count(c) for c in GSM7_EXTENSION)  # an escape and the character
    else:
        encoding = "UCS-2"
        # UTF-16 code units: an astral character is a surrogate pair (a lone surrogate is one unit)
        total = len(text.encode("utf-16-le", "surrogatepass")) // 2
    single, per_part = _LIMITS[encoding]
    if total == 0:
        return SmsInfo(encoding=encoding, characters=0, segments=0)
    if total <= single:
        return SmsInfo(encoding=encoding, characters=total, segments=1)
    if encoding == "GSM-7":
        costs = [2 if c in GSM7_EXTENSION else 1 for c in text]
    else:
        costs = [2 if ord(c) > 0xFFFF else 1 for c in text]
    parts, used = 1, 0
    for cost in costs:
        if used + cost > per_part:  # a two-unit character moves whole to the next part
            parts, used = parts + 1, 0
        used += cost
    return SmsInfo(encoding=encoding, characters=total, segments=parts)
