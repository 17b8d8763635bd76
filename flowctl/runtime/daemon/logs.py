"""The daemon's log lines: plain text for a terminal, one JSON object per line for log shippers.

Both processes of a daemon (``flowctl run`` and its engine process) set up their logs here, so
that their lines read alike.
"""

from __future__ import annotations

import json
import logging
import sys
from collections import deque
from datetime import UTC, datetime
from typing import Any


class JsonFormatter(logging.Formatter):
    """One JSON object per line: what log shippers parse."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def setup_logging(fmt: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would drown the log
    logging.getLogger("httpcore").setLevel(logging.WARNING)


class RecentErrors(logging.Handler):
    """The last ``size`` warnings and errors of the ``flowctl`` loggers, for ``GET /v1/health`` and
    the console. Only what a log line says (time, level, logger, message): no traceback, no
    arguments kept apart, and a message cut at 500 characters; the daemon logs no secret."""

    def __init__(self, size: int = 20) -> None:
        super().__init__(logging.WARNING)
        self._items: deque[dict[str, Any]] = deque(maxlen=size)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not break the logging call
            message = str(record.msg)
        self._items.append(
            {
                "at": datetime.fromtimestamp(record.created, UTC),
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": message[:500],
            }
        )

    def items(self) -> list[dict[str, Any]]:
        """Newest first."""
        return list(reversed(self._items))

    def attach(self, logger: str = "flowctl") -> None:
        logging.getLogger(logger).addHandler(self)

    def detach(self, logger: str = "flowctl") -> None:
        logging.getLogger(logger).removeHandler(self)
