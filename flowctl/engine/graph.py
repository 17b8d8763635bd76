"""Flows and pipelines as diagrams: Mermaid (renders in GitHub and GitLab) and Graphviz dot."""

from __future__ import annotations

import itertools

from flowctl.engine.business import delay_text
from flowctl.engine.rule_waits import timing
from flowctl.spec import model as m


def _label(text: str) -> str:
    return text.replace('"', "'").replace("\n", " ")


def flow_edges(flow: m.Flow) -> list[tuple[str, str, str]]:
    edges: list[tuple[str, str, str]] = []
    for node in flow.nodes.values():
        for i, branch in enumerate(node.branches):
            edges.append((node.id, branch.next, f"if {branch.if_}" if branch.if_ else f"branch {i + 1}"))
        if node.default:
            edges.append((node.id, node.default, "else"))
        if node.type == "goto" and node.target:
            label = f"goto (max {node.max_visits})" if node.max_visits else "goto"
            edges.append((node.id, node.target, label))
        if node.on_timeout:
            edges.append((node.id, node.on_timeout, f"timeout {node.for_.text if node.for_ else ''}".strip()))
        if node.next:
            label = "event" if node.type == "wait_event" else ("after max" if node.type == "goto" else "")
            edges.append((node.id, node.next, label))
        if node.type == "goto_flow":
            edges.append((node.id, f"flow:{node.flow}", "goto_flow"))
    return edges


def node_label(node: m.Node) -> str:
    if node.type == "delay":
        if node.for_ is not None:
            return f"{node.id}: delay {delay_text(node.for_, node.calendar)}"
        return f"{node.id}: delay until {node.until}" + (f" {node.offset.text}" if node.offset is not None else "")
    if node.type == "wait_event":
        return f"{node.id}: wait {node.event}" + (f" ({node.for_.text})" if node.for_ else "")
    hours = f" (only during {node.action.only_during})" if node.action is not None and node.action.only_during else ""
    if node.action is not None and node.action.template:
        return f"{node.id}: {node.type} {node.action.template}{hours}"
    return f"{node.id}: {node.type}{hours}"


def _ident(name: str) -> str:
    return "n_" + "".join(c if c.isalnum() else "_" for c in name)


def flow_mermaid(flow: m.Flow) -> str:
    lines = ["flowchart TD"]
    trigger = flow.trigger
    start_label = f"{flow.object} {trigger.on}" if trigger else "goto_flow only"
    if trigger and trigger.changed:
        start_label += f" ({', '.join(trigger.changed)})"
    lines.append(f'  start(["{_label(start_label)}"]) --> {_ident(flow.start)}')
    for node in flow.nodes.values():
        shape = ("{", "}") if node.type == "branch" else (("([", "])") if node.type == "stop" else ("[", "]"))
        lines.append(f'  {_ident(node.id)}{shape[0]}"{_label(node_label(node))}"{shape[1]}')
    for src, dst, label in flow_edges(flow):
        arrow = f'-- "{_label(label)}" -->' if label else "-->"
        lines.append(f"  {_ident(src)} {arrow} {_ident(dst)}")
        if dst.startswith("flow:"):
            lines.append(f'  {_ident(dst)}[["{_label(dst)}"]]')
    return "\n".join(lines) + "\n"


def flow_dot(flow: m.Flow) -> str:
    lines = [f'digraph "{_label(flow.name)}" {{', "  rankdir=TB;", '  start [shape=oval, label="start"];']
    lines.append(f"  start -> {_ident(flow.start)};")
    for node in flow.nodes.values():
        shape = "diamond" if node.type == "branch" else "box"
        lines.append(f'  {_ident(node.id)} [shape={shape}, label="{_label(node_label(node))}"];')
    for src, dst, label in flow_edges(flow):
        lines.append(f"  {_ident(src)} -> {_ident(dst)}" + (f' [label="{_label(label)}"];' if label else ";"))
    lines.append("}")
    return "\n".join(lines) + "\n"


def pipeline_mermaid(pipeline: m.Pipeline) -> str:
    lines = ["flowchart LR"]
    ids = [_ident(s.id) for s in pipeline.stages]
    for stage in pipeline.stages:
        title = stage.name or stage.id
        extra = f" ({stage.final})" if stage.final else ""
        lines.append(f'  subgraph {_ident(stage.id)}["{_label(title + extra)}"]')
        lines.append("    direction TB")
        for trigger in stage.triggers:
            what = trigger.event or ", ".join(trigger.changed) or trigger.on
            lines.append(f'    {_ident(stage.id)}_t{stage.triggers.index(trigger)}>"trigger: {_label(what)}"]')
        for rule in stage.rules:
            desc = rule.action.type + (f" {rule.action.template}" if rule.action.template else "")
            when = timing(rule)
            if when:
                desc = f"{when}: " + desc
            if rule.action.only_during:
                desc += f" (only during {rule.action.only_during})"
            lines.append(f'    {_ident(stage.id)}_{_ident(rule.name)}["{_label(rule.name)}: {_label(desc)}"]')
        for rule in stage.rules:
            for before in rule.after:
                lines.append(f"    {_ident(stage.id)}_{_ident(before)} --> {_ident(stage.id)}_{_ident(rule.name)}")
        lines.append("  end")
    for left, right in itertools.pairwise(ids):
        lines.append(f"  {left} --> {right}")
    return "\n".join(lines) + "\n"


def pipeline_dot(pipeline: m.Pipeline) -> str:
    lines = [f'digraph "{_label(pipeline.name)}" {{', "  rankdir=LR;", "  compound=true;"]
    for stage in pipeline.stages:
        lines.append(f"  subgraph cluster_{_ident(stage.id)} {{")
        lines.append(f'    label="{_label(stage.name or stage.id)}";')
        lines.append(f'    {_ident(stage.id)} [shape=box, style=bold, label="{_label(stage.id)}"];')
        for rule in stage.rules:
            lines.append(
                f"    {_ident(stage.id)}_{_ident(rule.name)} [shape=note, "
                f'label="{_label(rule.name)}: {rule.action.type}"];'
            )
            for before in rule.after:
                lines.append(f"    {_ident(stage.id)}_{_ident(before)} -> {_ident(stage.id)}_{_ident(rule.name)};")
        for i, trigger in enumerate(stage.triggers):
            what = trigger.event or ", ".join(trigger.changed) or trigger.on
            lines.append(f'    {_ident(stage.id)}_t{i} [shape=cds, label="{_label(what)}"];')
            lines.append(f"    {_ident(stage.id)}_t{i} -> {_ident(stage.id)};")
        lines.append("  }")
    ids = [_ident(s.id) for s in pipeline.stages]
    for left, right in itertools.pairwise(ids):
        lines.append(f"  {left} -> {right};")
    lines.append("}")
    return "\n".join(lines) + "\n"
