"""A record's timeline: the record as its last accepted write left it, the stages it went
through, its runs, its messages and its pending timers. A deleted record has one too (its
``deleted`` is true) until the recycle bin forgets it.

The stage history is what the store kept as the engine moved the record (``stage_entries``):
each stage entered, oldest first, whatever moved it (the create, a move, a trigger, a rule, an
action), with when and the input that caused it: ``key`` is ``c<seq>`` for a change or an event
(its ``seq`` given too), ``t:<id>`` for a timer. A record whose history the store does not have
(last moved before schema revision 0009) shows its current stage as the one entry, with ``at``,
``key`` and ``seq`` null; one moved both before and since lists the stages entered since.
``notes`` are what ``add_note`` actions wrote on the record, newest first, each with the run
that wrote it (and its automation, when that run is among the newest listed).
"""

from __future__ import annotations

from datetime import tzinfo
from typing import Any, Protocol

from flowctl.ports import Inspection, OutboxFilter, RecordState, RunFilter
from flowctl.runtime.api.readback import read_written, record_json
from flowctl.runtime.reads.common import iso
from flowctl.runtime.reads.outbox import row_item
from flowctl.runtime.reads.runs import run_item
from flowctl.sources.errors import NotFound
from flowctl.spec import model as m

#: The newest runs and messages a timeline shows; older ones are in ``/v1/runs?object=&record=``.
TIMELINE_ITEMS = 100
#: The stages a timeline lists, oldest first: a record moved more often than this is a loop.
STAGE_ENTRIES = 1000


class TimelineStore(Inspection, RecordState, Protocol):
    def open_changes(self, object: str, id: str) -> list[Any]: ...


def timeline(store: TimelineStore, bundle: m.Bundle, zone: tzinfo, object: str, record_id: str) -> dict[str, Any]:
    if object not in bundle.objects:
        raise NotFound(f"unknown object type {object[:80]!r} (known: {', '.join(sorted(bundle.objects))})")
    record, pending = read_written(store, object, record_id)  # a deleted one too, until it is purged
    if record is None:
        raise NotFound(f"{object} {record_id[:200]} does not exist")
    stages: list[dict[str, Any]] = [
        {"stage": e.stage, "pipeline": e.pipeline, "at": iso(e.at, zone), "key": e.key, "seq": _seq(e.key)}
        for e in store.stage_entries(object, record_id, STAGE_ENTRIES)
    ]
    if not stages and record.stage:
        stages.append({"stage": record.stage, "pipeline": record.pipeline, "at": None, "key": None, "seq": None})
    runs = store.runs_page(RunFilter(object=object, record_id=record_id), None, TIMELINE_ITEMS)
    messages = store.outbox_page(OutboxFilter(object=object, record_id=record_id), None, TIMELINE_ITEMS)
    timers = [
        {"id": t.id, "kind": t.kind, "node": t.node, "due": iso(t.due, zone), "run_id": t.run_id}
        for run in store.active_runs(object, record_id)
        for t in store.timers_of(run.id)
    ]
    automations = {r.id: r.automation for r in runs}
    return {
        "record": {**record_json(record, pending=pending), "deleted": record.deleted},
        "stages": stages,
        "notes": [
            {"at": iso(n.at, zone), "text": n.text, "run_id": n.run_id, "automation": automations.get(n.run_id, "")}
            for n in store.notes(object, record_id, TIMELINE_ITEMS)
        ],
        "runs": [run_item(r, zone) for r in runs],
        "messages": [row_item(r, zone) for r in messages],
        "timers": sorted(timers, key=lambda t: (t["due"] or "", t["id"])),
    }


def _seq(key: str) -> int | None:
    """The seq of the change an input key names (``c42``: change 42); None for a timer's or a
    care occurrence's key."""
    return int(key[1:]) if key[:1] == "c" and key[1:].isdigit() else None


def timeline_lines(found: dict[str, Any]) -> list[str]:
    """The timeline as text, a section per part (``flowctl records timeline``)."""
    record = found["record"]
    lines = [f"{record['object']}/{record['id']}" + (f" [{record['stage']}]" if record.get("stage") else "")]
    lines[0] += " (deleted: in the recycle bin)" if record.get("deleted") else ""
    lines.append("stages:")
    lines += [f"  {s['at'] or '(before 0009)'}  {s['pipeline']}/{s['stage']}" for s in found["stages"]] or ["  -"]
    lines.append("notes:")
    lines += [f"  {n['at']}  {n['text']}  ({n['run_id']})" for n in found["notes"]] or ["  -"]
    lines.append("runs:")
    lines += [f"  {r['started_at']}  {r['automation']}  {r['status']}  {r['id']}" for r in found["runs"]] or ["  -"]
    lines.append("messages:")
    lines += [f"  {m['created_at']}  {m['channel']}  {m['status']}  {m['summary']}" for m in found["messages"]] or [
        "  -"
    ]
    lines.append("timers:")
    lines += [f"  {t['due']}  {t['kind']} {t['node']}  ({t['run_id']})" for t in found["timers"]] or ["  -"]
    return lines
