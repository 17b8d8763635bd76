"""What every read shares: opaque cursors, the limit, times in the Config's zone, and the filters'
checks. A bad value is a :class:`~flowctl.sources.errors.BadRequest` naming the parameter, so
the API answers 400 and the console shows why.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flowctl.runtime.api.requests import MAX_LIST
from flowctl.sources.errors import BadRequest
from flowctl.spec import model as m


def zone_of(bundle: m.Bundle) -> tzinfo:
    """The zone answers give their times in: the Config's ``timezone`` (UTC when unknown)."""
    name = bundle.config.timezone
    try:
        return ZoneInfo(name) if name and name != "UTC" else UTC
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def iso(value: datetime | str | None, zone: tzinfo) -> str | None:
    """``value`` as ISO 8601 with its offset in ``zone`` (a bare ISO string is UTC); None stays None."""
    if value is None or value == "":
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(zone).isoformat()


def check_limit(limit: int, name: str = "limit") -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST:
        raise BadRequest(f"{name} must be a whole number from 1 to {MAX_LIST}, not {limit!r}")
    return limit


def check_choice(value: str, name: str, allowed: Collection[str]) -> str:
    if value and value not in allowed:
        raise BadRequest(f"{name} must be one of {', '.join(sorted(allowed))}, not {value[:80]!r}")
    return value


def encode_cursor(*key: Any) -> str:
    """The opaque ``next`` of a page: the last item's sort key, as url-safe base64 of JSON."""
    return base64.urlsafe_b64encode(json.dumps(list(key), separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, types: Sequence[type]) -> tuple[Any, ...] | None:
    """The key a ``next`` of :func:`encode_cursor` holds ('' : None), checked against ``types``."""
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key = json.loads(raw)
    except (binascii.Error, ValueError):
        key = None
    if (
        not isinstance(key, list)
        or len(key) != len(types)
        or not all(isinstance(v, t) and not isinstance(v, bool) for v, t in zip(key, types, strict=True))
    ):
        raise BadRequest(f"cursor is not one this API gave (pass the previous page's next as is): {cursor[:80]!r}")
    return tuple(key)


def page(items: list[dict[str, Any]], found: int, limit: int, key: tuple[Any, ...] | None) -> dict[str, Any]:
    """A list answer: ``next`` only when the page is full (``found`` rows were read for ``limit``)."""
    return {"items": items, "next": encode_cursor(*key) if key is not None and found >= limit else None}
