"""Durations as people write them in flow files: ``30s``, ``15m``, ``2h``, ``3d``, ``1w``, ``1d12h``.

A leading ``-`` makes a negative offset (``-1d``: the day before an anniversary).
"""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_WHOLE = re.compile(r"^([-+]?)((?:\d+[smhdw])+)$")
_PART = re.compile(r"(\d+)([smhdw])")


class DurationError(ValueError):
    """A duration that is not ``<number><unit>`` pairs with units s, m, h, d, w."""

    def __init__(self, text: object) -> None:
        super().__init__(f"'{text}' is not a duration; write a number and a unit (s, m, h, d, w), e.g. 30m, 2h, 1d12h")
        self.text = text


def parse_duration(text: object) -> timedelta:
    """Parse ``1d12h`` to a timedelta; raise DurationError on anything else."""
    if not isinstance(text, str):
        raise DurationError(text)
    match = _WHOLE.match(text.strip())
    if not match:
        raise DurationError(text)
    sign, body = match.groups()
    seconds = sum(int(n) * _UNITS[u] for n, u in _PART.findall(body))
    return timedelta(seconds=-seconds if sign == "-" else seconds)


def format_duration(value: timedelta) -> str:
    """The shortest text that parses back to ``value`` (``1d12h``)."""
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0s"
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    parts = []
    for unit in ("w", "d", "h", "m", "s"):
        count, seconds = divmod(seconds, _UNITS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return sign + "".join(parts)
