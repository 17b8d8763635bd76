"""The GSM 03.38 alphabet: the characters an SMS can carry in GSM-7 (7 bits each).

One character outside it switches a whole SMS to UCS-2, which halves what a part holds. Kept in
``spec`` because both the templates' ``unaccent`` filter and ``validate`` need it, and the engine's
part counting (``engine/sms.py``) reads it from here.
"""

from __future__ import annotations

__all__ = ["GSM7_BASIC", "GSM7_EXTENSION", "is_gsm7"]

# GSM 03.38 default alphabet in code order 0x00-0x7F, without 0x1B (the escape to the extension).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ"  # 0x00-0x1A
    "ÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"  # 0x1C-0x3F
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"  # 0x40-0x5F
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"  # 0x60-0x7F
)
# The extension table: each costs two septets (escape + code).
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")


def is_gsm7(char: str) -> bool:
    """Whether ``char`` travels in GSM-7 (basic or extension table)."""
    return char in GSM7_BASIC or char in GSM7_EXTENSION
