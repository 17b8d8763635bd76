"""Public fakes for the ports, for flowctl's own tests and for anyone who embeds flowctl.

Each stands in for a real adapter that does I/O, and behaves as the port's contract says:

- ``FrozenClock``: a ``Clock`` that moves only when told to, and may be shared with a daemon's threads.
- ``MemoryStore``: the ``Store`` in memory. It passes the same contract suite as SQLite and PostgreSQL.
- ``RecordingSender``: a channel ``Sender`` that accepts every message and remembers it.
- ``write_config``: a configuration directory from a mapping of relative paths to YAML texts.

Example::

    clock = FrozenClock(datetime(2027, 3, 1, 9, tzinfo=UTC))
    worker = Worker(MemoryStore(), Engines(Engine(bundle)), clock)
    clock.advance(timedelta(days=1))
"""

from __future__ import annotations

import textwrap
import threading
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path

from flowctl.channels.base import Receipt
from flowctl.ports import OutboxRow
from flowctl.store.memory import MemoryStore

__all__ = ["FrozenClock", "MemoryStore", "RecordingSender", "write_config"]


class FrozenClock:
    """A ``Clock`` that stays at the time a test sets; ``set`` and ``advance`` move it (thread-safe)."""

    def __init__(self, at: datetime) -> None:
        self._at = _aware(at)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._at

    def set(self, at: datetime) -> None:
        """Jump to ``at``, forward or back (as a stepped wall clock would)."""
        at = _aware(at)
        with self._lock:
            self._at = at

    def advance(self, by: timedelta | float) -> datetime:
        """Move forward by ``by`` (a timedelta, or seconds); returns the new time."""
        step = by if isinstance(by, timedelta) else timedelta(seconds=by)
        with self._lock:
            self._at += step
            return self._at


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError(f"FrozenClock needs a time with its offset, got {at.isoformat()} (add tzinfo=UTC)")
    return at


class RecordingSender:
    """A channel ``Sender`` that accepts every message and keeps it in ``sent``, in the order sent."""

    concurrency = 1

    def __init__(self) -> None:
        self.sent: list[OutboxRow] = []
        self._lock = threading.Lock()

    def send(self, row: OutboxRow) -> Receipt:
        with self._lock:
            self.sent.append(row)
        return Receipt(detail="recorded")


def write_config(directory: Path, files: Mapping[str, str]) -> Path:
    """Write ``files`` (relative path → YAML text, dedented) under ``directory`` and return it."""
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return directory
