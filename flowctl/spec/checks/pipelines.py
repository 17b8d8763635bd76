"""The stages of each pipeline: unique ids (E021), unique rule names per stage (E022), an
``after:`` order that names rules of the stage (E043) and has no cycle (E042), and fields a
stage requires that its object type defines (E071).
"""

from __future__ import annotations

from collections.abc import Iterator

from flowctl.spec import model as m
from flowctl.spec.checks._common import field_names, hint_with, item_span, value_span
from flowctl.spec.issues import Issue, error


def check_stage_ids(bundle: m.Bundle) -> Iterator[Issue]:
    """E021 duplicate stage id, E022 duplicate rule name within a stage."""
    for pipeline in bundle.pipelines.values():
        seen: dict[str, m.Stage] = {}
        for stage in pipeline.stages:
            first = seen.get(stage.id)
            if first is not None:
                yield error(
                    "E021",
                    f"pipeline '{pipeline.name}' defines stage '{stage.id}' twice "
                    f"(first at line {first.where.at().line})",
                    value_span(stage.where, "id"),
                    "stage ids must be unique within a pipeline; rename one of them",
                )
            else:
                seen[stage.id] = stage
            names: dict[str, m.Rule] = {}
            for rule in stage.rules:
                other = names.get(rule.name)
                if other is not None:
                    yield error(
                        "E022",
                        f"stage '{stage.id}' of pipeline '{pipeline.name}' has two rules named "
                        f"'{rule.name}' (first at line {other.where.at().line})",
                        value_span(rule.where, "name"),
                        "rule names must be unique within a stage ('after:' refers to them); rename one",
                    )
                else:
                    names[rule.name] = rule


def check_after(bundle: m.Bundle) -> Iterator[Issue]:
    """E043 ``after:`` names no rule of the stage; E042 ``after:`` orders rules in a cycle."""
    for pipeline in bundle.pipelines.values():
        for stage in pipeline.stages:
            rules: dict[str, m.Rule] = {}
            for rule in stage.rules:
                rules.setdefault(rule.name, rule)
            for rule in stage.rules:
                for i, name in enumerate(rule.after):
                    if name not in rules:
                        yield error(
                            "E043",
                            f"rule '{rule.name}' of stage '{stage.id}' runs after '{name}', "
                            "which is not a rule of this stage",
                            item_span(rule.where, "after", i),
                            hint_with("name a rule of the same stage", name, rules),
                        )
            yield from _after_cycles(pipeline, stage, rules)


def after_cycles(rules: dict[str, m.Rule]) -> list[list[str]]:
    """Each cycle of ``after:`` among ``rules`` once, as names, starting at its first rule."""
    order = {name: i for i, name in enumerate(rules)}
    graph = {name: [a for a in dict.fromkeys(rule.after) if a in rules] for name, rule in rules.items()}
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done
    for root in rules:
        if state.get(root):
            continue
        path: list[str] = []
        work = [(root, iter(graph[root]))]
        state[root] = 1
        path.append(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                path.pop()
                state[node] = 2
                continue
            if state.get(child) == 1:
                cycle = path[path.index(child) :]
                first = min(range(len(cycle)), key=lambda k: order[cycle[k]])
                found.append(cycle[first:] + cycle[:first])
            elif not state.get(child):
                state[child] = 1
                path.append(child)
                work.append((child, iter(graph[child])))
    return found


def _after_cycles(pipeline: m.Pipeline, stage: m.Stage, rules: dict[str, m.Rule]) -> Iterator[Issue]:
    for cycle in after_cycles(rules):
        first = rules[cycle[0]]
        waits_for = cycle[1] if len(cycle) > 1 else cycle[0]
        index = first.after.index(waits_for)
        chain = " → ".join([*cycle, cycle[0]])
        yield error(
            "E042",
            f"rules of stage '{stage.id}' in pipeline '{pipeline.name}' wait for each other: "
            f"{chain} (each waits for the next)",
            item_span(first.where, "after", index),
            "remove one 'after:' of the cycle so the rules can start",
        )


def check_stage_fields(bundle: m.Bundle) -> Iterator[Issue]:
    """E071: a stage requires a field its object type does not have."""
    for pipeline in bundle.pipelines.values():
        obj = bundle.objects.get(pipeline.object)
        if obj is None:
            continue
        known = field_names(obj)
        for stage in pipeline.stages:
            for i, name in enumerate(stage.fields):
                if name not in known:
                    yield error(
                        "E071",
                        f"stage '{stage.id}' of pipeline '{pipeline.name}' requires field '{name}', "
                        f"which object type '{obj.name}' does not have",
                        item_span(stage.where, "fields", i),
                        hint_with(f"add '{name}' to ObjectType '{obj.name}' or fix the name", name, obj.fields),
                    )
