"""Runs and effects as text people read (a tree) and as JSON machines read."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, tzinfo
from typing import Any

from flowctl.engine.state import Effect, Run, TraceEntry

_MARK = {
    "enter": "→",
    "condition": "?",
    "decision": "⇒",
    "effect": "✉",
    "wait": "⏸",
    "timer": "⏰",
    "event": "⚡",
    "end": "■",
    "error": "✗",
    "skip": "·",
}


def _values(values: Any) -> str:
    if not values:
        return ""
    return " [" + ", ".join(f"{k}={json.dumps(v, ensure_ascii=False, default=str)}" for k, v in values.items()) + "]"


def render_entry(entry: TraceEntry) -> str:
    mark = _MARK.get(entry.kind, "-")
    text = f"{mark} {entry.node}: {entry.kind}"
    if entry.detail:
        text += f" {entry.detail}"
    text += _values(entry.values)
    if entry.result is not None:
        text += f" → {entry.result}"
    return text


def render_run(run: Run, zone: tzinfo | None = None) -> str:
    """A run as a tree: a head line, then one line per trace entry with its time.

    The first entry and every entry on a new day show the date too (``2026-03-04 09:00:00``),
    the others only the time, so a run that waited through a year still reads in order. With
    ``zone``, times are shown in it and dated entries carry the offset (``09:00:00+07:00``).
    """
    head = f"{run.automation} on {run.object} {run.record_id} [{run.status}] ({run.id})"
    return "\n".join([head, *trace_lines(run, zone)])


def trace_lines(run: Run, zone: tzinfo | None = None) -> list[str]:
    """The lines of ``render_run`` after its head, one per trace entry (the console shows them too)."""
    lines = []
    day = ""
    for i, entry in enumerate(run.trace):
        branch = "└─" if i == len(run.trace) - 1 else "├─"
        at = entry.at if zone is None else datetime.fromisoformat(entry.at).astimezone(zone).isoformat("T", "seconds")
        when = at[11:19]
        if at[:10] != day:
            day = at[:10]
            when = f"{day} {when}" + ("" if zone is None else at[19:])
        lines.append(f"  {branch} {when} {render_entry(entry)}")
    return lines


def render_runs(runs: Iterable[Run]) -> str:
    return "\n".join(render_run(run) for run in runs)


def render_effect(effect: Effect) -> str:
    params = {k: v for k, v in effect.params.items() if k not in ("html", "attachments")}
    extra = ""
    if "attachments" in effect.params:
        extra = " + " + ", ".join(a["filename"] for a in effect.params["attachments"])
    body = json.dumps(params, ensure_ascii=False, default=str)
    via = f" via {effect.channel}" if effect.channel else ""
    return f"{effect.action}{via} for {effect.object} {effect.record_id}: {body}{extra}"


def run_json(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "automation": run.automation,
        "object": run.object,
        "record_id": run.record_id,
        "status": run.status,
        "node": run.node,
        "config_version": run.config_version,
        "started_at": run.started_at,
        "trace": [entry.to_json() for entry in run.trace],
    }


def effect_json(effect: Effect) -> dict[str, Any]:
    return {"key": effect.key, "run_id": effect.run_id, **effect.to_json()}
