"""How the console shows numbers and times: Jinja2 filters."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def money(value: Any) -> str:
    """``15000000`` as ``15,000,000``; anything not a number as itself ('' for none)."""
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, int | float):
        return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"
    return str(value)


def when(value: Any) -> str:
    """An ISO time as ``2026-03-10 10:00:05`` (its offset left out: the Config's zone)."""
    if not value:
        return ""
    text = str(value)
    return text[:19].replace("T", " ") if len(text) >= 19 and text[10] == "T" else text


FILTERS: Mapping[str, Callable[[Any], str]] = {"money": money, "when": when}
