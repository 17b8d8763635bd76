"""The filters flowctl adds to Jinja2: ``unaccent``, ``money``, ``date`` and ``phone``.

Plain functions of their arguments (no clock, no I/O); a bad input raises ``ValueError`` with a
message for the author, which the render turns into a ``TemplateError``.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import jinja2
from anyascii import anyascii

from flowctl.spec.gsm import is_gsm7

_D_STROKE = str.maketrans({"đ": "d", "Đ": "D"})


@functools.lru_cache(maxsize=8192)
def _strip_char(char: str) -> str:
    """One character without its marks (cached: SMS texts reuse a small alphabet).

    Letters lose their marks (Vietnamese exactly: ư -> u, Ầ -> A, đ -> d); what is still not ASCII
    stays when GSM-7 carries it (£, ß, Ø, €), else takes anyascii's transliteration: – -> -,
    … -> ..., “ ” -> ", ₫ -> d, so one symbol no longer turns a whole SMS into UCS-2.
    """
    if char.isascii():
        return char
    char = char.translate(_D_STROKE)
    kept = "".join(c for c in unicodedata.normalize("NFD", char) if not unicodedata.combining(c))
    kept = unicodedata.normalize("NFC", kept)
    if kept.isascii() or all(map(is_gsm7, kept)):
        return kept
    return "".join(c if c.isascii() or is_gsm7(c) else anyascii(c) for c in kept)


def unaccent(value: object) -> str:
    """Text to what GSM-7 carries: Vietnamese (and other Latin) letters without their marks, and
    other characters transliterated (anyascii), so brandname SMS stay GSM-7 and cost half."""
    if value is None:
        return ""
    text = str(value)
    if text.isascii():
        return text
    # đ/Đ are letters of their own, not d plus a mark, so NFD alone would keep them.
    return "".join(map(_strip_char, unicodedata.normalize("NFC", text)))


#: What ``money`` writes after the amount unless told otherwise (the same in email and SMS: W007
#: warns where it alone would make an SMS UCS-2).
MONEY_SYMBOL = "₫"


def money(value: object, symbol: str = MONEY_SYMBOL, sep: str = ".", decimals: int = 0) -> str:
    """``1500000`` -> ``1.500.000 ₫``; rounds half up to ``decimals`` (the đồng has no subunit)."""
    if value is None:
        return ""
    plain = type(decimals) is int and decimals == 0 and type(sep) is str  # the defaults' kinds
    if plain and type(value) is int and -_EXACT < value < _EXACT:  # the common case, without Decimal
        text = ("-" if value < 0 else "") + f"{abs(value):,}".replace(",", sep)
        return f"{text} {symbol}" if symbol else text
    amount = _to_decimal(value)
    try:
        rounded = amount.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
    except InvalidOperation:
        raise ValueError(f"money: {value!r} is too large to format") from None
    whole, _, fraction = f"{abs(rounded):f}".partition(".")
    head = len(whole) % 3 or 3
    grouped = sep.join([whole[:head], *(whole[i : i + 3] for i in range(head, len(whole), 3))])
    text = ("-" if rounded < 0 else "") + grouped
    if fraction:
        text += ("," if sep == "." else ".") + fraction
    return f"{text} {symbol}" if symbol else text


#: Integers below this are formatted exactly without ``Decimal`` (whose default precision is 28 digits).
_EXACT = 10**18


def _to_decimal(value: object) -> Decimal:
    if isinstance(value, jinja2.Undefined):
        str(value)  # a StrictUndefined raises its own, better message here
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        raise ValueError(f"money: expected a number, got {type(value).__name__} {value!r}")
    try:
        amount = Decimal(value.strip() if isinstance(value, str) else str(value))
    except InvalidOperation:
        raise ValueError(f"money: expected a number, got {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"money: expected a finite number, got {value!r}")
    return amount


_DATE_TOKENS = re.compile(r"yyyy|yy|dd|MM|mm|HH|ss")


def format_date(value: object, pattern: str = "dd/mm/yyyy") -> str:
    """Format a date, datetime or ISO 8601 string with a pattern of the tokens below.

    Tokens: ``dd`` day 01-31, ``MM`` month 01-12, ``yyyy`` year, ``yy`` 2-digit year, ``HH`` hour
    00-23, ``ss`` seconds, and ``mm``: minutes when the token before it is ``HH`` or the token after
    it is ``ss`` (as in Excel: ``dd/mm/yyyy HH:mm``), otherwise month. Everything else is copied.
    A pattern containing ``%`` is a strftime pattern instead. Times are shown in the value's own
    offset (no conversion); a date shows 00 for time tokens.
    """
    if value is None or value == "":
        return ""
    moment = _to_date(value)
    if "%" in pattern:
        return moment.strftime(pattern)
    hour, minute, second = (getattr(moment, a, 0) for a in ("hour", "minute", "second"))
    values = {
        "yyyy": f"{moment.year:04d}",
        "yy": f"{moment.year % 100:02d}",
        "dd": f"{moment.day:02d}",
        "MM": f"{moment.month:02d}",
        "HH": f"{hour:02d}",
        "ss": f"{second:02d}",
    }
    tokens = list(_DATE_TOKENS.finditer(pattern))
    out: list[str] = []
    pos = 0
    for i, match in enumerate(tokens):
        token = match.group()
        if token == "mm":
            after_hour = i > 0 and tokens[i - 1].group() == "HH"
            before_second = i + 1 < len(tokens) and tokens[i + 1].group() == "ss"
            token = "minute" if after_hour or before_second else "MM"
        out += [pattern[pos : match.start()], f"{minute:02d}" if token == "minute" else values[token]]
        pos = match.end()
    out.append(pattern[pos:])
    return "".join(out)


def _to_date(value: object) -> date:
    if isinstance(value, date):
        return value
    if isinstance(value, jinja2.Undefined):
        str(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"date: {value!r} is not an ISO date like 2026-03-29") from None
    raise ValueError(f"date: expected a date, got {type(value).__name__} {value!r}")


_PHONE_PUNCTUATION = re.compile(r"[\s.\-()/]")
_DIGITS = re.compile(r"[0-9]+")


def phone(value: object, style: str = "e164", country: str = "84") -> str:
    """Normalise a phone number: ``e164`` (``+84901234567``) or ``local`` (``0901 234 567``).

    A number without ``+`` or ``00`` is national in ``country``. ``local`` groups Vietnamese numbers
    only; numbers of other countries come back in E.164.
    """
    if value is None:
        return ""
    if isinstance(value, jinja2.Undefined):
        str(value)
    text = _PHONE_PUNCTUATION.sub("", str(value))
    if not text:
        return ""
    code = country.lstrip("+")
    international = text.startswith(("+", "00"))
    digits = text[1:] if text.startswith("+") else text[2:] if international else text
    if not _DIGITS.fullmatch(digits):
        raise ValueError(f"phone: {value!r} is not a phone number")
    if not international and digits.startswith("0"):
        digits = code + digits[1:]  # drop the trunk prefix
    elif not international and not (digits.startswith(code) and len(digits) >= len(code) + 9):
        digits = code + digits
    if style == "e164":
        return "+" + digits
    if style != "local":
        raise ValueError(f"phone: unknown style {style!r}, use 'e164' or 'local'")
    if not digits.startswith("84"):
        return "+" + digits
    national = "0" + digits[2:]
    if len(national) == 10:  # mobile: 0901 234 567
        return f"{national[:4]} {national[4:7]} {national[7:]}"
    if len(national) == 11 and national.startswith("02"):  # landline: 024 3123 4567
        return f"{national[:3]} {national[3:7]} {national[7:]}"
    return national


FILTERS: Mapping[str, Any] = {"unaccent": unaccent, "money": money, "date": format_date, "phone": phone}
