"""A stand-in for ``flowctl.runtime.reads.Reads`` until the read side lands: the same answers,
read with the store's existing Inspection and RecordState methods, unindexed where those have no
filter (it filters in memory). The console uses ``Reads`` when it is importable.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from flowctl.engine.graph import flow_edges, node_label
from flowctl.engine.render import render_entry
from flowctl.runtime.api.readback import read_record, record_json
from flowctl.runtime.api.view import ServiceView
from flowctl.sources.errors import BadRequest, Conflict, NotFound


def _iso(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _page(items: list[Any], limit: int, cursor: str) -> dict[str, Any]:
    start = int(cursor) if cursor.isdigit() else 0
    if cursor and not cursor.isdigit():
        raise BadRequest(f"cursor '{cursor}' is not one this list gave")
    chunk = items[start : start + limit]
    return {"items": chunk, "next": str(start + limit) if start + limit < len(items) else None}


def run_item(run: Any) -> dict[str, Any]:
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
        "started_at": run.started_at,
        "updated_at": run.updated_at,
        "config_version": run.config_version,
    }


def outbox_item(row: Any) -> dict[str, Any]:
    payload: Mapping[str, Any] = row.payload or {}
    summary = str(payload.get("subject") or payload.get("text") or payload.get("body") or "")[:80]
    return {
        "id": row.id,
        "channel": row.channel,
        "action": row.action,
        "object": row.object,
        "record_id": row.record_id,
        "run_id": row.run_id,
        "status": row.status,
        "attempts": row.attempts,
        "next_attempt_at": _iso(row.next_attempt_at),
        "last_error": row.last_error,
        "created_at": _iso(row.created_at),
        "sent_at": _iso(row.sent_at),
        "recipient": row.recipient,
        "summary": summary,
    }


class InterimReads:
    """``Reads``' answers over ``svc.store`` (the daemon's whole Store)."""

    def __init__(self, svc: ServiceView) -> None:
        self.svc = svc

    @property
    def store(self) -> Any:
        return self.svc.store

    def runs(
        self,
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
        runs = self.store.list_runs(limit=1000, status=status, object=object, record_id=record_id)
        items = [
            run_item(r)
            for r in runs
            if (not automation or automation in r.automation)
            and (since is None or (r.started_at and datetime.fromisoformat(r.started_at) >= since))
            and (until is None or (r.started_at and datetime.fromisoformat(r.started_at) < until))
        ]
        return _page(items, limit, cursor)

    def run(self, run_id: str) -> dict[str, Any]:
        run = self.store.run(run_id)
        if run is None:
            raise NotFound(f"no run {run_id}")
        trace = [{**e.to_json(), "text": render_entry(e)} for e in run.trace]
        return {**run_item(run), "trace": trace}

    def outbox(
        self,
        *,
        status: str = "",
        channel: str = "",
        object: str = "",
        record_id: str = "",
        limit: int = 50,
        cursor: str = "",
    ) -> dict[str, Any]:
        rows = self.store.list_outbox(limit=1000, status=status)
        items = [
            outbox_item(r)
            for r in rows
            if (not channel or r.channel == channel)
            and (not object or r.object == object)
            and (not record_id or r.record_id == record_id)
        ]
        return _page(items, limit, cursor)

    def retry(self, row_id: int) -> dict[str, Any]:
        row = self.store.outbox_row(row_id)
        if row is None:
            raise NotFound(f"no outbox message {row_id}")
        if row.status in ("sent", "cancelled"):
            raise Conflict(f"outbox message {row_id} is {row.status}")
        self.store.retry_outbox(row_id, self.svc.clock.now())
        return outbox_item(self.store.outbox_row(row_id))

    def cancel(self, row_id: int) -> dict[str, Any]:
        raise Conflict("cancelling a message needs the read side (flowctl.runtime.reads)")

    def care(self) -> dict[str, Any]:
        items: list[dict[str, Any]] = []
        for name, process in self.svc.bundle.care.items():
            items.append(
                {"name": name, "object": process.object, "next_firing": None, "next_7_days": [], "last_ticks": []}
            )
        return {"items": items, "next": None}

    def deployments(self, *, limit: int = 50, cursor: str = "") -> dict[str, Any]:
        current = self.store.current_version()
        items = [
            {
                "id": v.id,
                "applied_at": _iso(v.applied_at),
                "commit": v.commit,
                "author": v.author,
                "message": v.message,
                "current": current is not None and v.id == current.id,
            }
            for v in self.store.versions(limit=500)
        ]
        return _page(items, limit, cursor)

    def deployment_diff(self, from_id: str, to_id: str) -> dict[str, Any]:
        old, new = self.store.version(from_id), self.store.version(to_id)
        if old is None or new is None:
            raise NotFound(f"no version {from_id if old is None else to_id}")
        documents = []
        for key in sorted(set(old.documents) | set(new.documents)):
            kind, _, name = key.partition("/")
            a, b = old.documents.get(key), new.documents.get(key)
            change = "added" if a is None else "removed" if b is None else "changed" if a != b else ""
            if change:
                documents.append({"kind": kind, "name": name, "change": change, "diff": []})
        return {"from": from_id, "to": to_id, "documents": documents}

    def board(self, pipeline: str, *, cards: int = 20, owner: str = "", q: str = "") -> dict[str, Any]:
        spec = self.svc.bundle.pipelines.get(pipeline)
        if spec is None:
            raise NotFound(f"no pipeline {pipeline}")
        stages = []
        for stage in spec.stages:
            every = self._stage_records(pipeline, stage.id, owner, q)
            page = _page(every, cards, "")
            amounts = [c["amount"] for c in every if isinstance(c["amount"], int | float)]
            stages.append(
                {
                    "id": stage.id,
                    "label": stage.name or stage.id,
                    "count": len(every),
                    "sum": sum(amounts),
                    "final": stage.final or "",
                    "cards": page["items"],
                    "next": page["next"],
                }
            )
        label = self.svc.bundle.objects[spec.object].label if spec.object in self.svc.bundle.objects else spec.object
        return {"pipeline": pipeline, "object": spec.object, "label": label, "sum_field": "amount", "stages": stages}

    def stage_cards(
        self, pipeline: str, stage: str, *, limit: int = 50, cursor: str = "", owner: str = "", q: str = ""
    ) -> dict[str, Any]:
        if pipeline not in self.svc.bundle.pipelines:
            raise NotFound(f"no pipeline {pipeline}")
        return _page(self._stage_records(pipeline, stage, owner, q), limit, cursor)

    def _stage_records(self, pipeline: str, stage: str, owner: str, q: str) -> list[dict[str, Any]]:
        spec = self.svc.bundle.pipelines[pipeline]
        out, after = [], ""
        while True:
            batch = self.store.list_records(spec.object, stage=stage, limit=1000, after=after)
            for r in batch:
                title = str(r.fields.get("title") or r.fields.get("full_name") or r.fields.get("name") or r.id)
                if r.pipeline not in ("", pipeline) or (owner and r.owner != owner):
                    continue
                if q and q.lower() not in title.lower():
                    continue
                card = {
                    "id": r.id,
                    "title": title,
                    "owner": r.owner or str(r.fields.get("owner") or ""),
                    "amount": r.fields.get("amount"),
                    "stage": r.stage,
                    "updated_at": None,
                    "pending_rules": 0,
                }
                out.append(card)
            if len(batch) < 1000:
                return out
            after = batch[-1].id

    def timeline(self, object: str, record_id: str) -> dict[str, Any]:
        record, pending = read_record(self.store, object, record_id)
        if record is None:
            raise NotFound(f"no record {object}/{record_id}")
        runs = self.store.list_runs(limit=200, object=object, record_id=record_id)
        timers = []
        for run in runs:
            if run.status in ("running", "waiting"):
                for timer in self.store.timers_of(run.id):
                    timers.append(
                        {
                            "id": timer.id,
                            "kind": timer.kind,
                            "node": timer.node,
                            "due": _iso(timer.due),
                            "run_id": run.id,
                        }
                    )
        messages = [
            outbox_item(r)
            for r in self.store.list_outbox(limit=1000)
            if r.object == object and r.record_id == record_id
        ]
        return {
            "record": record_json(record, pending=pending),
            "stages": [],
            "notes": [],
            "runs": [run_item(r) for r in runs],
            "messages": messages,
            "timers": timers,
        }

    def health(self) -> dict[str, Any]:
        problems = self.svc.readiness()
        queue = self.store.queue_counts()
        return {
            "status": "ok" if not problems else "unavailable",
            "lag_seconds": None,
            "open_changes": queue.get("changes", {}).get("open", 0) if isinstance(queue.get("changes"), dict) else 0,
            "engine": {"problems": problems, "degraded": self.svc.degraded()},
            "last_reload": None,
            "recent_errors": [],
        }

    def graph(self, name: str) -> dict[str, Any]:
        bundle = self.svc.bundle
        if name in bundle.flows:
            flow = bundle.flows[name]
            nodes = [{"id": "start", "label": "start", "type": "start", "waiting": 0}]
            nodes += [{"id": n.id, "label": node_label(n), "type": n.type, "waiting": 0} for n in flow.nodes.values()]
            edges = [{"from": "start", "to": flow.start, "label": ""}]
            edges += [{"from": a, "to": b, "label": label} for a, b, label in flow_edges(flow)]
            return {"kind": "flow", "name": name, "nodes": nodes, "edges": edges}
        if name in bundle.pipelines:
            stages = bundle.pipelines[name].stages
            nodes = [{"id": s.id, "label": s.name or s.id, "type": "stage", "waiting": 0} for s in stages]
            edges = [{"from": a.id, "to": b.id, "label": ""} for a, b in itertools.pairwise(stages)]
            return {"kind": "pipeline", "name": name, "nodes": nodes, "edges": edges}
        raise NotFound(f"no flow or pipeline named {name}")
