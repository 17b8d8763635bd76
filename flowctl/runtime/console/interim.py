"""What ``Reads`` (``flowctl.runtime.reads``) does not answer yet, for the console only: care,
deployments and their diff, health and the graph, read with the store's existing methods.

:func:`console_reads` gives ``Reads`` with these added only where ``Reads`` lacks them, so each
goes away by itself as the read side grows it; delete this module when ``Reads`` has them all.
"""

from __future__ import annotations

import difflib
import itertools
from datetime import datetime
from typing import Any, cast

import yaml

from flowctl.engine.graph import flow_edges, node_label
from flowctl.runtime.api.view import ServiceView
from flowctl.runtime.console.readside import ReadSide
from flowctl.runtime.reads import Reads
from flowctl.sources.errors import NotFound

INTERIM = ("care", "deployments", "deployment_diff", "health", "graph")


def _iso(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return value.isoformat() if isinstance(value, datetime) else str(value)


class Interim:
    """The reads ``Reads`` lacks, over ``self.svc``."""

    svc: ServiceView

    def care(self) -> dict[str, Any]:
        items: list[dict[str, Any]] = []
        for name, process in sorted(self.svc.bundle.care.items()):
            items.append(
                {"name": name, "object": process.object, "next_firing": None, "next_7_days": [], "last_ticks": []}
            )
        return {"items": items, "next": None}

    def deployments(self, *, limit: int = 50, cursor: str = "") -> dict[str, Any]:
        store = self.svc.store
        current = store.current_version()
        versions = store.versions(limit=limit)
        items = [
            {
                "id": v.id,
                "applied_at": _iso(v.applied_at),
                "commit": v.commit,
                "author": v.author,
                "message": v.message,
                "current": current is not None and v.id == current.id,
            }
            for v in versions
        ]
        return {"items": items, "next": None}

    def deployment_diff(self, from_id: str, to_id: str) -> dict[str, Any]:
        store = self.svc.store
        old, new = store.version(from_id), store.version(to_id)
        if old is None or new is None:
            raise NotFound(f"no deployed version {from_id if old is None else to_id}")
        documents = []
        for key in sorted(set(old.documents) | set(new.documents)):
            kind, _, name = key.partition("/")
            a, b = old.documents.get(key), new.documents.get(key)
            if a == b:
                continue
            change = "added" if a is None else "removed" if b is None else "changed"
            before = yaml.safe_dump(a, allow_unicode=True, sort_keys=False).splitlines() if a is not None else []
            after = yaml.safe_dump(b, allow_unicode=True, sort_keys=False).splitlines() if b is not None else []
            lines = list(difflib.unified_diff(before, after, lineterm="", n=2))[2:]
            documents.append({"kind": kind, "name": name, "change": change, "diff": lines})
        return {"from": from_id, "to": to_id, "documents": documents}

    def health(self) -> dict[str, Any]:
        problems = self.svc.readiness()
        queue = self.svc.store.queue_counts()
        return {
            "status": "ok" if not problems else "unavailable",
            "lag_seconds": None,
            "open_changes": queue.get("open_changes", queue.get("changes", 0)),
            "engine": {"problems": "; ".join(problems) or "none", "degraded": "; ".join(self.svc.degraded()) or "none"},
            "last_reload": None,
            "recent_errors": [],
        }

    def graph(self, name: str) -> dict[str, Any]:
        bundle = self.svc.bundle
        if name in bundle.flows:
            flow = bundle.flows[name]
            nodes = [
                {"id": "start", "label": f"{flow.object} {flow.trigger.on if flow.trigger else ''}", "type": "start"}
            ]
            nodes += [{"id": n.id, "label": node_label(n), "type": n.type} for n in flow.nodes.values()]
            edges = [{"from": "start", "to": flow.start, "label": ""}]
            edges += [{"from": a, "to": b, "label": label} for a, b, label in flow_edges(flow)]
            known = {n["id"] for n in nodes}
            nodes += [{"id": b, "label": b, "type": "goto_flow"} for _, b, _ in flow_edges(flow) if b not in known]
            return {"kind": "flow", "name": name, "nodes": [{**n, "waiting": 0} for n in nodes], "edges": edges}
        if name in bundle.pipelines:
            stages = bundle.pipelines[name].stages
            nodes = [{"id": s.id, "label": s.name or s.id, "type": "stage"} for s in stages]
            edges = [{"from": a.id, "to": b.id, "label": ""} for a, b in itertools.pairwise(stages)]
            return {"kind": "pipeline", "name": name, "nodes": [{**n, "waiting": 0} for n in nodes], "edges": edges}
        raise NotFound(f"no flow or pipeline named {name[:80]!r}")


def console_reads(svc: ServiceView) -> ReadSide:
    """``Reads(svc)``, with :class:`Interim`'s methods where ``Reads`` has none of that name."""
    missing = {name: getattr(Interim, name) for name in INTERIM if not hasattr(Reads, name)}
    kind = type("ConsoleReads", (Reads,), missing)
    return cast(ReadSide, kind(svc))
