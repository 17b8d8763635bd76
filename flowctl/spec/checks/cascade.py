"""Automations that trigger each other in a loop (E080).

An automation is a flow, or the rules of a pipeline stage (they run when a record enters the
stage). Automation X leads to Y when what X writes starts Y on the same object type:

* X sets field ``f`` (``update_fields``; ``handover`` sets ``owner``) and Y is a flow triggered
  ``on: updated`` with no ``changed:`` or with ``f`` in it — or Y is a stage with such a trigger
  (it moves the record into the stage, whose rules then run);
* X moves the record to stage ``s`` (``move_stage``, or ``set: {stage: s}``) and Y is stage ``s``;
* X is stage ``s`` and Y a flow that entering ``s`` starts: ``on: stage_changed`` (to ``s`` or to
  any stage), or ``on: updated`` with no ``changed:`` or with ``stage`` in it (as the engine does,
  a move is an update of ``stage``); or Y is a stage with such a ``stage_changed`` trigger;
* X hands the run to Y with ``goto_flow``;
* X creates a record (``create_record``) and Y is a flow ``on: created`` of its object type, or the
  stage the new record enters (the given one, else its pipeline's first); X sets field ``f`` of a
  linked record (``update_fields`` with ``target:``) and Y is started by that, as above.

Conditions are not evaluated — a loop guarded by an ``if:`` is still reported, because the guard
is the only thing between the config and an endless chain (the engine stops it at
``limits.chain_depth``). Each elementary cycle is reported once, at the write that starts it in
its first automation.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from flowctl.spec import model as m
from flowctl.spec.checks._common import action_sites, name_span, value_span
from flowctl.spec.issues import Issue, error
from flowctl.spec.places import Span

Key = tuple[str, ...]  # ("flow", name) or ("stage", pipeline, stage id)

#: Upper bound on cycles reported (and on search steps), so a dense config cannot stall validate.
MAX_CYCLES = 50
MAX_STEPS = 200_000


@dataclass(slots=True)
class Automation:
    key: Key
    label: str  # "flow welcome" / "stage sales/documents"
    object: str
    span: Span
    fields: dict[str, Span] = field(default_factory=dict)  # field written -> where
    moves: dict[tuple[str, str], Span] = field(default_factory=dict)  # (pipeline or "", stage) -> where
    gotos: dict[str, Span] = field(default_factory=dict)  # flow -> where
    creates: dict[tuple[str, str, str], Span] = field(default_factory=dict)  # (object, pipeline, stage) -> where
    remote: dict[tuple[str, str], Span] = field(default_factory=dict)  # (linked object, field) -> where


@dataclass(frozen=True, slots=True)
class Edge:
    target: Key
    reason: str  # "sets score", "moves to won", "goes to flow b"
    span: Span  # where the source automation writes it


def automations(bundle: m.Bundle) -> dict[Key, Automation]:
    """Every flow and every pipeline stage with rules or triggers, with what it writes."""
    out: dict[Key, Automation] = {}
    for flow in bundle.flows.values():
        auto = Automation(("flow", flow.name), f"flow {flow.name}", flow.object, name_span(flow))
        for node in flow.nodes.values():
            if node.type == "goto_flow" and node.flow:
                auto.gotos.setdefault(node.flow, value_span(node.where, "flow"))
        out[auto.key] = auto
    for pipeline in bundle.pipelines.values():
        for stage in pipeline.stages:
            key = ("stage", pipeline.name, stage.id)
            if key not in out:
                out[key] = Automation(
                    key, f"stage {pipeline.name}/{stage.id}", pipeline.object, value_span(stage.where, "id")
                )
    for site in action_sites(bundle):
        writer = out.get(site.automation) if site.automation[0] != "care" else None
        if writer is None:
            continue
        action = site.action
        if action.type == "create_record":
            writer.creates.setdefault((action.object, action.pipeline, action.stage), action.where.at("object"))
        elif action.type == "update_fields" and action.target:  # a target writes another record
            obj = bundle.objects.get(site.object)
            ref = obj.fields.get(action.target) if obj is not None else None
            if ref is not None and ref.object:
                for name in action.set:
                    writer.remote.setdefault((ref.object, name), action.where.at("set", name))
        elif action.type == "update_fields":
            for name, value in action.set.items():
                span = action.where.at("set", name)
                if name == "stage" and isinstance(value, str) and "{" not in value:
                    writer.moves.setdefault(("", value), span)
                else:
                    writer.fields.setdefault(name, span)
        elif action.type == "move_stage" and action.stage:
            writer.moves.setdefault((action.pipeline, action.stage), value_span(action.where, "stage"))
        elif action.type == "handover":
            writer.fields.setdefault("owner", action.where.at("to"))
    return out


def _updated_by(trigger: m.Trigger, field_name: str) -> bool:
    return trigger.on == "updated" and (not trigger.changed or field_name in trigger.changed)


def edges(bundle: m.Bundle, autos: Mapping[Key, Automation]) -> dict[Key, list[Edge]]:
    """What each automation starts, with the reason and the place of the write."""
    return {key: _edges_from(bundle, autos, key) for key in autos}


def _edges_from(bundle: m.Bundle, autos: Mapping[Key, Automation], key: Key) -> list[Edge]:
    auto = autos[key]
    flows = [f for f in bundle.flows.values() if f.enabled and f.object == auto.object]
    found: dict[Key, tuple[list[str], Span]] = {}

    def add(target: Key, reason: str, span: Span) -> None:
        if target == key and key[0] == "stage":
            return  # re-entering the stage a record is in changes nothing
        reasons, _ = found.setdefault(target, ([], span))
        if reason not in reasons:
            reasons.append(reason)

    pipelines = bundle.pipelines_for(auto.object)
    for name, span in auto.fields.items():
        for flow in flows:
            if flow.trigger is not None and _updated_by(flow.trigger, name):
                add(("flow", flow.name), f"sets {name}", span)
        for pipeline in pipelines:
            for stage in pipeline.stages:
                if any(_updated_by(t, name) for t in stage.triggers):
                    add(("stage", pipeline.name, stage.id), f"sets {name}", span)
    for (pipeline_name, stage_id), span in auto.moves.items():
        for pipeline in pipelines:
            if (not pipeline_name or pipeline.name == pipeline_name) and pipeline.stage(stage_id) is not None:
                add(("stage", pipeline.name, stage_id), f"moves to {stage_id}", span)
    if key[0] == "stage":
        stage_id = key[2]
        for flow in flows:
            trig = flow.trigger
            stage_changed = trig is not None and trig.on == "stage_changed" and trig.to_stage in ("", stage_id)
            if stage_changed or (trig is not None and _updated_by(trig, "stage")):
                add(("flow", flow.name), f"enters {stage_id}", auto.span)
        pipeline = bundle.pipelines[key[1]]
        for other in pipeline.stages:
            if any(t.on == "stage_changed" and t.to_stage in ("", stage_id) for t in other.triggers):
                add(("stage", pipeline.name, other.id), f"enters {stage_id}", auto.span)
    for (object, pipeline_name, stage_id), span in auto.creates.items():
        for flow in bundle.flows.values():
            if flow.enabled and flow.object == object and flow.trigger is not None and flow.trigger.on == "created":
                add(("flow", flow.name), f"creates a {object}", span)
        for pipeline in bundle.pipelines_for(object):
            if (pipeline_name and pipeline.name != pipeline_name) or not pipeline.stages:
                continue
            target = ("stage", pipeline.name, stage_id or pipeline.stages[0].id)
            if target in autos:
                add(target, f"creates a {object}", span)
    for (object, name), span in auto.remote.items():
        for flow in bundle.flows.values():
            if flow.enabled and flow.object == object and flow.trigger is not None and _updated_by(flow.trigger, name):
                add(("flow", flow.name), f"sets {name} of a linked {object}", span)
        for pipeline in bundle.pipelines_for(object):
            for stage in pipeline.stages:
                if any(_updated_by(t, name) for t in stage.triggers):
                    add(("stage", pipeline.name, stage.id), f"sets {name} of a linked {object}", span)
    for flow_name, span in auto.gotos.items():
        if ("flow", flow_name) in autos:
            add(("flow", flow_name), f"goes to flow {flow_name}", span)
    return [Edge(target, ", ".join(reasons), span) for target, (reasons, span) in found.items()]


def elementary_cycles(graph: Mapping[Key, list[Edge]], order: list[Key]) -> list[list[Edge]]:
    """Each elementary cycle once, as its edges, starting at its lowest automation in ``order``.

    For each automation s (in order), search paths from s through automations after s back to
    s; every cycle is found exactly once, from its lowest member. Bounded by MAX_CYCLES/MAX_STEPS.
    """
    rank = {key: i for i, key in enumerate(order)}
    cycles: list[list[Edge]] = []
    steps = 0
    for start in order:
        path: list[Edge] = []
        on_path = {start}
        work = [iter(graph.get(start, []))]
        while work:
            steps += 1
            if steps > MAX_STEPS or len(cycles) >= MAX_CYCLES:
                return cycles
            edge = next(work[-1], None)
            if edge is None:
                work.pop()
                if path:
                    on_path.discard(path.pop().target)
                continue
            if edge.target == start:
                cycles.append([*path, edge])
            elif edge.target not in on_path and rank.get(edge.target, -1) > rank[start]:
                path.append(edge)
                on_path.add(edge.target)
                work.append(iter(graph.get(edge.target, [])))
    return cycles


def chain_text(start: Automation, cycle: list[Edge], autos: Mapping[Key, Automation]) -> str:
    """``flow a (sets score) → flow b (sets status) → flow a``."""
    parts = []
    current = start
    for edge in cycle:
        parts.append(f"{current.label} ({edge.reason})")
        current = autos[edge.target]
    parts.append(current.label)
    return " → ".join(parts)


def check_cascades(bundle: m.Bundle) -> Iterator[Issue]:
    """E080: automations whose writes start each other in a loop."""
    autos = automations(bundle)
    graph = edges(bundle, autos)
    order = sorted(autos, key=lambda k: (autos[k].span.file, autos[k].span.line, autos[k].span.col, k))
    for cycle in elementary_cycles(graph, order):
        start = autos[cycle[-1].target]  # a cycle ends where it started
        yield error(
            "E080",
            f"automations start each other in a loop: {chain_text(start, cycle, autos)}",
            cycle[0].span,
            "break the loop: narrow a trigger's 'changed:' list, or stop one automation from writing "
            "the field or stage that starts the next",
        )
