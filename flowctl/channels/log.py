"""The ``log`` channel: prints one line per message and keeps it; nothing leaves the machine.

The lines go to stdout, apart from the daemon's own log on stderr (a JSON log stays all JSON).

It is the channel every action falls back to when the config defines no better one, so a fresh
config runs without any service. ``sent`` holds the most recent messages for inspection and tests.
"""

from __future__ import annotations

import sys
import threading
from typing import TextIO

from flowctl.channels.base import Receipt, shorten
from flowctl.ports import OutboxRow

#: How many messages ``LogSender.sent`` keeps (the oldest are dropped first).
KEEP = 10_000


def describe(row: OutboxRow) -> str:
    """``[log] send_sms via sms contact/7 → +84901234567: Chuc mung sinh nhat…``"""
    payload = row.payload
    recipient = str(payload.get("to") or row.recipient or payload.get("assignee") or payload.get("url") or "")
    summary = next((str(payload[k]) for k in ("subject", "title", "text") if payload.get(k)), "")
    if not summary and payload.get("attachments"):
        summary = ", ".join(str(a.get("filename", "")) for a in payload["attachments"])
    line = f"[log] {row.action} via {row.channel} {row.object}/{row.record_id}"
    if recipient:
        line += f" → {shorten(recipient, 60)}"
    if summary:
        line += f": {shorten(summary)}"
    return line


class LogSender:
    """Prints one readable line per message to ``stream`` (stdout by default) and keeps the row."""

    concurrency = 1
    local = True  # a crash reprints at most one claim's lines; nothing outside sees a copy

    def __init__(self, stream: TextIO | None = None, *, keep: int = KEEP) -> None:
        self.stream = stream
        self.keep = keep
        self.sent: list[OutboxRow] = []
        self._lock = threading.Lock()

    def send(self, row: OutboxRow) -> Receipt:
        line = describe(row)
        with self._lock:
            stream = self.stream if self.stream is not None else sys.stdout
            print(line, file=stream, flush=True)
            self.sent.append(row)
            if len(self.sent) > self.keep:
                del self.sent[: len(self.sent) - self.keep]
        return Receipt("logged")

    def send_many(self, rows: list[OutboxRow]) -> list[Receipt]:
        """Every row's line in one write (a claim of the ``log`` channel's rows)."""
        text = "".join(describe(row) + "\n" for row in rows)
        with self._lock:
            stream = self.stream if self.stream is not None else sys.stdout
            stream.write(text)
            stream.flush()
            self.sent.extend(rows)
            if len(self.sent) > self.keep:
                del self.sent[: len(self.sent) - self.keep]
        return [Receipt("logged") for _ in rows]

    def clear(self) -> None:
        with self._lock:
            self.sent.clear()
