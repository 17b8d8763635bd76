"""The daemon's health for the console and ``GET /v1/health``: how far behind the worker is (the
oldest open change's age), how many changes are open, the engine, the last reload and the last
warnings and errors logged.

``status`` is ``ok`` when the daemon is ready (``/readyz``), ``degraded`` when ready with problems
(a channel missing its ``${ENV}``), else ``unready``; ``problems`` says why.
"""

from __future__ import annotations

from datetime import tzinfo
from typing import Any

from flowctl.runtime.api.view import ServiceView
from flowctl.runtime.reads.common import iso


def health(svc: ServiceView, zone: tzinfo) -> dict[str, Any]:
    counts = svc.store.queue_counts()
    now = svc.clock.now()
    oldest = counts.get("oldest_received_at")
    problems = list(svc.readiness())
    degraded = [] if problems else list(svc.degraded())
    report = svc.health_report()
    reload = report.get("last_reload")
    return {
        "status": "unready" if problems else ("degraded" if degraded else "ok"),
        "problems": problems or degraded,
        "lag_seconds": max((now - oldest).total_seconds(), 0.0) if oldest is not None else 0.0,
        "open_changes": int(counts.get("changes_pending", 0)) + int(counts.get("changes_claimed", 0)),
        "outbox": {k.removeprefix("outbox_"): v for k, v in counts.items() if k.startswith("outbox_")},
        "timers": counts.get("timers", 0),
        "engine": dict(report.get("engine") or {}),
        "last_reload": None if reload is None else {**reload, "at": iso(reload.get("at"), zone)},
        "recent_errors": [{**e, "at": iso(e.get("at"), zone)} for e in report.get("recent_errors", [])],
    }
