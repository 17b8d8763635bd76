"""Phone numbers as the numbering plans have them (libphonenumber's metadata, via phonenumbers).

A ``phone`` field holds a number some plan can dial: ``0901234567`` and ``+84 90 123 4567`` are
one Vietnamese mobile; ``123456`` and the eleven-digit mobiles Vietnam retired in 2018
(``01686123456``, now ``0386123456``) are refused. A number without ``+`` and a country code is
read in the Config's ``phone_region`` (VN unless set). Values are stored as written; a channel
that needs one form normalises when it sends (``e164``).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import phonenumbers

__all__ = ["DEFAULT_REGION", "e164", "known_regions", "phone_hint", "phone_problem"]

#: The region a national number (no ``+``) is read in when Config names none.
DEFAULT_REGION = "VN"


@functools.lru_cache(maxsize=4096)
def _parse(text: str, region: str) -> phonenumbers.PhoneNumber | None:
    """The number ``text`` dials, when a plan has it (cached: the same numbers recur)."""
    import phonenumbers  # lazy: start-up time (its metadata takes ~90 ms to import; most commands never read a phone)

    try:
        number = phonenumbers.parse(text, region or DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        return None
    return number if phonenumbers.is_valid_number(number) else None


def phone_problem(value: object, region: str = DEFAULT_REGION) -> str:
    """Why ``value`` is not a phone number a plan has ('' when it is one)."""
    if not isinstance(value, str) or not value.strip():
        return f"'{value}' is not a phone number"
    text = value.strip()
    if _parse(text, region) is not None:
        return ""
    region = region or DEFAULT_REGION
    local = "" if text.startswith("+") else f", read in region {region}"
    digits = "".join(c for c in text if c.isdigit())
    retired = (
        "; Vietnam's eleven-digit mobile numbers became ten-digit in 2018 (0168 → 038, 0120 → 070, …)"
        if region == "VN" and len(digits) == 11 and digits.startswith("01")
        else ""
    )
    return f"'{value}' is not a phone number any numbering plan has{local} ({phone_hint(region)}){retired}"


@functools.cache
def phone_hint(region: str) -> str:
    """How to write a number of ``region``, from its own plan: ``e.g. 0912345678 or +84912345678``."""
    import phonenumbers  # lazy: start-up time (see _parse)

    number = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    if number is None:
        return "write it with its country code, e.g. +84901234567"
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL).replace(" ", "")
    international = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return f"write it as dialled in {region}, e.g. {national}, or with its country code, e.g. {international}"


def e164(value: object, region: str = DEFAULT_REGION) -> str:
    """``+84901234567`` for any way of writing it; '' when ``value`` is no valid number."""
    import phonenumbers  # lazy: start-up time (see _parse)

    number = _parse(str(value).strip(), region) if value is not None else None
    if number is None:
        return ""
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


@functools.cache
def known_regions() -> frozenset[str]:
    """The regions the numbering plans cover (``VN``, ``TH``, …)."""
    import phonenumbers  # lazy: start-up time (see _parse)

    return frozenset(phonenumbers.SUPPORTED_REGIONS)
