"""The daemon's log lines: plain text for a terminal, one JSON object per line for log shippers.

Both processes of a daemon (``flowctl run`` and its engine process) set up their logs here, so
that their lines read alike. With ``--log-format json`` every line either process writes on stderr
is one JSON object: the daemon's start and stop lines (``flowctl.run``), uvicorn's, warnings, and
an exception no thread caught, too. The ids a line is about are fields of the object, given as
``extra`` by the code that logs (:func:`ids`): ``change_seq``, ``record`` (``contact/7``),
``run_id``, ``automation``, ``config_version``, ``channel``, ``message_id`` (the outbox row's
Message-ID / Idempotency-Key), ``outbox_id``. Text lines show the message only, as before.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections import deque
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from flowctl.ports import OutboxRow

#: The attributes every LogRecord has: anything else on one came as ``extra`` and is a field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


def ids(
    *,
    change_seq: int | None = None,
    record: tuple[str, str] | None = None,
    run_id: str = "",
    automation: str = "",
    config_version: str = "",
    channel: str = "",
    message_id: str = "",
    outbox_id: int | None = None,
) -> dict[str, Any]:
    """The ``extra`` of a log call about these things (those given): ``log.info("…", extra=ids(…))``."""
    fields: dict[str, Any] = {
        "change_seq": change_seq,
        "record": f"{record[0]}/{record[1]}" if record else None,
        "run_id": run_id,
        "automation": automation,
        "config_version": config_version,
        "channel": channel,
        "message_id": message_id,
        "outbox_id": outbox_id,
    }
    return {k: v for k, v in fields.items() if v not in (None, "")}


def outbox_ids(row: OutboxRow) -> dict[str, Any]:
    """The ids of a log line about an outbox row: its channel, Message-ID, row, record and run."""
    return ids(
        channel=row.channel,
        message_id=row.key,
        outbox_id=row.id,
        record=(row.object, row.record_id),
        run_id=row.run_id,
    )


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the ids given as ``extra``, and the
    exception's traceback as a string when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,  # the daemon's two processes write to one stderr
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


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
    if fmt == "json":  # what Python would print on stderr itself goes through the log instead
        logging.captureWarnings(True)
        sys.excepthook = _uncaught
        threading.excepthook = _uncaught_in_thread


def _uncaught(kind: type[BaseException], error: BaseException, traceback: TracebackType | None) -> None:
    logging.getLogger("flowctl").critical("uncaught %s", kind.__name__, exc_info=(kind, error, traceback))


def _uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit or args.exc_value is None:
        return
    where = args.thread.name if args.thread is not None else "a thread"
    logging.getLogger("flowctl").critical(
        "uncaught %s in %s", args.exc_type.__name__, where, exc_info=(args.exc_type, args.exc_value, args.exc_traceback)
    )


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
