"""The one place that reads the wall clock; everything else receives a ``Clock``."""

from __future__ import annotations

from datetime import UTC, datetime


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)
