"""Runs for the read API and the console: a page of runs, newest first, and one run with its trace.

Each trace entry carries ``text``, the line ``flowctl runs show`` prints for it
(``engine.render.trace_lines``), so the console shows what the terminal shows.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any, get_args

from flowctl.engine.render import trace_lines
from flowctl.engine.state import Run, RunStatus
from flowctl.ports import Inspection, RecordState, RunFilter
from flowctl.runtime.reads.common import check_choice, check_limit, decode_cursor, iso, page
from flowctl.sources.errors import BadRequest, NotFound
from flowctl.spec import model as m

RUN_STATUSES: tuple[str, ...] = get_args(RunStatus)


def run_item(run: Run, zone: tzinfo) -> dict[str, Any]:
    """A run as a list shows it (no trace)."""
    return {
        "id": run.id,
        "automation": run.automation,
        "kind": run.kind,
        "name": run.name,
        "object": run.object,
        "record_id": run.record_id,
        "status": run.status,
        "node": run.node,
        "waiting_for": run.waiting_for,
        "steps": run.steps,
        "started_at": iso(run.started_at, zone),
        "updated_at": iso(run.updated_at, zone),
        "config_version": run.config_version,
    }


def run_detail(run: Run, zone: tzinfo) -> dict[str, Any]:
    """A run with its trace, each entry with its ``text`` line as ``flowctl runs show`` prints it."""
    trace = []
    for entry, text in zip(run.trace, trace_lines(run, zone), strict=True):
        item = entry.to_json()
        item["at"] = iso(entry.at, zone)
        item["text"] = text
        trace.append(item)
    return {**run_item(run, zone), "trace": trace}


def list_runs(
    store: Inspection,
    bundle: m.Bundle,
    zone: tzinfo,
    *,
    status: str = "",
    automation: str = "",
    object: str = "",
    record_id: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    cursor: str = "",
) -> dict[str, Any]:
    check_choice(status, "status", RUN_STATUSES)
    check_limit(limit)
    if record_id and not object:
        raise BadRequest("record needs object: a record id names a record of one object type")
    if object and object not in bundle.objects:
        raise BadRequest(f"object: unknown object type {object[:80]!r} (known: {', '.join(sorted(bundle.objects))})")
    for name, at in (("since", since), ("until", until)):
        if at is not None and at.tzinfo is None:
            raise BadRequest(f"{name} needs its UTC offset (e.g. 2026-03-01T09:00:00+07:00)")
    before = decode_cursor(cursor, (int, str))
    filter = RunFilter(
        status=status, automation=automation, object=object, record_id=record_id, since=since, until=until
    )
    found = store.runs_page(filter, None if before is None else (before[0], before[1]), limit)
    last = (found[-1].seq, found[-1].id) if found else None
    return page([run_item(r, zone) for r in found], len(found), limit, last)


def one_run(store: RecordState, zone: tzinfo, run_id: str) -> dict[str, Any]:
    run = store.run(run_id)
    if run is None:
        raise NotFound(f"no run {run_id[:200]!r}")
    return run_detail(run, zone)
