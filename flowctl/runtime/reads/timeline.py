"""A record's timeline: the record as its last accepted write left it, the stages it went
through, its runs, its messages and its pending timers.

The stage history comes from the record's processed writes (put with a stage, move), in order;
when rules moved the record since, its stage now ends the list without a write (``seq`` null).
The store keeps no notes yet: ``notes`` is empty.
"""

from __future__ import annotations

from datetime import tzinfo
from typing import Any, Protocol

from flowctl.ports import Inspection, OutboxFilter, RecordState, RunFilter
from flowctl.runtime.api.readback import read_record, record_json
from flowctl.runtime.reads.common import iso
from flowctl.runtime.reads.outbox import row_item
from flowctl.runtime.reads.runs import run_item
from flowctl.sources.errors import NotFound
from flowctl.spec import model as m

#: The newest runs and messages a timeline shows; older ones are in ``/v1/runs?object=&record=``.
TIMELINE_ITEMS = 100


class TimelineStore(Inspection, RecordState, Protocol):
    def open_changes(self, object: str, id: str) -> list[Any]: ...


def timeline(store: TimelineStore, bundle: m.Bundle, zone: tzinfo, object: str, record_id: str) -> dict[str, Any]:
    if object not in bundle.objects:
        raise NotFound(f"unknown object type {object[:80]!r} (known: {', '.join(sorted(bundle.objects))})")
    record, pending = read_record(store, object, record_id)
    if record is None:
        raise NotFound(f"{object} {record_id[:200]} does not exist")
    stages: list[dict[str, Any]] = []
    for change in store.record_changes(object, record_id):
        if change.status != "done" or change.op not in ("put", "move") or not change.stage:
            continue
        pipeline = change.pipeline or (stages[-1]["pipeline"] if stages else record.pipeline)
        if not stages or (stages[-1]["stage"], stages[-1]["pipeline"]) != (change.stage, pipeline):
            at = change.received_at
            stages.append({"stage": change.stage, "pipeline": pipeline, "at": iso(at, zone), "seq": change.seq})
    if record.stage and (
        not stages or (stages[-1]["stage"], stages[-1]["pipeline"]) != (record.stage, record.pipeline)
    ):
        stages.append({"stage": record.stage, "pipeline": record.pipeline, "at": None, "seq": None})
    runs = store.runs_page(RunFilter(object=object, record_id=record_id), None, TIMELINE_ITEMS)
    messages = store.outbox_page(OutboxFilter(object=object, record_id=record_id), None, TIMELINE_ITEMS)
    timers = [
        {"id": t.id, "kind": t.kind, "node": t.node, "due": iso(t.due, zone), "run_id": t.run_id}
        for run in store.active_runs(object, record_id)
        for t in store.timers_of(run.id)
    ]
    return {
        "record": record_json(record, pending=pending),
        "stages": stages,
        "notes": [],
        "runs": [run_item(r, zone) for r in runs],
        "messages": [row_item(r, zone) for r in messages],
        "timers": sorted(timers, key=lambda t: (t["due"] or "", t["id"])),
    }
