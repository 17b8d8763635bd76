"""A flow or a pipeline as a diagram for the console, as ``flowctl graph`` draws it
(``engine.graph``), with what waits where: a flow's active runs at each node, a pipeline's active
rule runs at each rule and, summed, at each stage.
"""

from __future__ import annotations

import itertools
from typing import Any

from flowctl.engine.graph import flow_edges, node_label
from flowctl.engine.rule_waits import timing
from flowctl.ports import Inspection
from flowctl.sources.errors import NotFound
from flowctl.spec import model as m


def _flow(store: Inspection, flow: m.Flow) -> dict[str, Any]:
    automation = f"flow:{flow.name}"
    waiting: dict[str, int] = {}
    for (name, node), n in store.active_counts(automation).items():
        if name == automation:
            waiting[node] = waiting.get(node, 0) + n
    trigger = flow.trigger
    start = f"{flow.object} {trigger.on}" if trigger else "goto_flow only"
    nodes = [{"id": "start", "label": start, "type": "start", "waiting": 0}]
    nodes += [
        {"id": node.id, "label": node_label(node), "type": node.type, "waiting": waiting.get(node.id, 0)}
        for node in flow.nodes.values()
    ]
    edges = [{"from": "start", "to": flow.start, "label": ""}]
    for src, dst, label in flow_edges(flow):
        edges.append({"from": src, "to": dst, "label": label})
        if dst.startswith("flow:") and all(n["id"] != dst for n in nodes):
            nodes.append({"id": dst, "label": dst, "type": "flow", "waiting": 0})
    return {"kind": "flow", "name": flow.name, "nodes": nodes, "edges": edges}


def _pipeline(store: Inspection, pipeline: m.Pipeline) -> dict[str, Any]:
    prefix = f"rule:{pipeline.name}/"
    by_rule: dict[str, int] = {}
    for (automation, _node), n in store.active_counts(prefix).items():
        key = automation.removeprefix(prefix)  # <stage>/<rule>
        by_rule[key] = by_rule.get(key, 0) + n
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    for stage in pipeline.stages:
        rules = [(f"{stage.id}/{rule.name}", rule) for rule in stage.rules]
        nodes.append(
            {
                "id": stage.id,
                "label": (stage.name or stage.id) + (f" ({stage.final})" if stage.final else ""),
                "type": "stage",
                "waiting": sum(by_rule.get(rule_id, 0) for rule_id, _ in rules),
            }
        )
        for rule_id, rule in rules:
            what = rule.action.type + (f" {rule.action.template}" if rule.action.template else "")
            when = timing(rule)
            hours = f" (only during {rule.action.only_during})" if rule.action.only_during else ""
            label = f"{rule.name}: " + (f"{when}: " if when else "") + what + hours
            nodes.append({"id": rule_id, "label": label, "type": "rule", "waiting": by_rule.get(rule_id, 0)})
            edges.append({"from": stage.id, "to": rule_id, "label": "rule"})
            edges += [{"from": f"{stage.id}/{before}", "to": rule_id, "label": "after"} for before in rule.after]
    edges += [{"from": a.id, "to": b.id, "label": ""} for a, b in itertools.pairwise(pipeline.stages)]
    return {"kind": "pipeline", "name": pipeline.name, "nodes": nodes, "edges": edges}


def graph(store: Inspection, bundle: m.Bundle, name: str) -> dict[str, Any]:
    if name in bundle.flows:
        return _flow(store, bundle.flows[name])
    if name in bundle.pipelines:
        return _pipeline(store, bundle.pipelines[name])
    known = ", ".join(sorted([*bundle.flows, *bundle.pipelines])) or "none are defined"
    raise NotFound(f"no flow or pipeline {name[:80]!r} (known: {known})")
