"""The node graph of each flow: the start node exists (E044), every edge names a node (E033),
every node is reachable from the start (E040), and no loop can spin forever (E041).

A loop is safe when some node on it waits (``delay``, ``wait_event``) or is bounded by
``max_visits``; anything else would run the same actions again and again within one change.
Flows nobody starts (no trigger and no ``goto_flow`` leading to them) get a warning (W004).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from flowctl.spec import model as m
from flowctl.spec.checks._common import hint_with, name_span, value_span
from flowctl.spec.dependencies import needs_document
from flowctl.spec.issues import Issue, error, warning
from flowctl.spec.places import Span

#: Node types that end a run's current step: a loop through one of them cannot spin.
WAITING_TYPES = ("delay", "wait_event")


def _edges(node: m.Node) -> Iterator[tuple[str, Span]]:
    """Each successor a node names, with the span of the value that names it."""
    for branch in node.branches:
        if branch.next:
            yield branch.next, value_span(branch.where, "next")
    for key, target in (
        ("default", node.default),
        ("next", node.next),
        ("on_timeout", node.on_timeout),
        ("node", node.target),
    ):
        if target:
            yield target, value_span(node.where, key)


def check_nodes(bundle: m.Bundle) -> Iterator[Issue]:
    """E044 start node missing, E033 unknown node, E040 unreachable node."""
    for flow in bundle.flows.values():
        if not flow.nodes and not flow.start:
            continue
        if flow.start not in flow.nodes:
            yield error(
                "E044",
                f"flow '{flow.name}' starts at node '{flow.start}', which it does not define",
                value_span(flow.where, "start"),
                hint_with("set 'start' to one of the flow's nodes", flow.start, flow.nodes),
            )
        for node in flow.nodes.values():
            for target, span in _edges(node):
                if target not in flow.nodes:
                    yield error(
                        "E033",
                        f"node '{node.id}' of flow '{flow.name}' leads to node '{target}', "
                        "which the flow does not define",
                        span,
                        hint_with("name one of the flow's nodes", target, flow.nodes),
                    )
        if flow.start not in flow.nodes:
            continue
        reached = reachable(flow.nodes, flow.start)
        for node in flow.nodes.values():
            if node.id not in reached:
                yield error(
                    "E040",
                    f"node '{node.id}' of flow '{flow.name}' is unreachable from the start node '{flow.start}'",
                    flow.where.at("nodes", node.id),
                    "lead to it from another node (next, branches, default, on_timeout, goto) or remove it",
                )


def reachable(nodes: Mapping[str, m.Node], start: str) -> set[str]:
    seen = {start}
    todo = [start]
    while todo:
        node = nodes.get(todo.pop())
        if node is None:
            continue
        for target in node.successors():
            if target in nodes and target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def _safe(node: m.Node) -> bool:
    return node.type in WAITING_TYPES or node.max_visits > 0


def unsafe_loops(nodes: Mapping[str, m.Node]) -> list[list[str]]:
    """Loops that pass no waiting node and no ``max_visits``, one per group of such loops.

    Removing the safe nodes leaves a graph whose cycles are exactly the unsafe loops; each
    strongly connected component with a cycle is reported once, as one concrete loop through
    it (starting at its first goto node if it has one, else at its first node in order).
    """
    order = {name: i for i, name in enumerate(nodes)}
    graph = {
        name: [t for t in node.successors() if t in nodes and not _safe(nodes[t])]
        for name, node in nodes.items()
        if not _safe(node)
    }
    loops = []
    for component in _components(graph):
        members = set(component)
        if len(component) == 1 and component[0] not in graph[component[0]]:
            continue
        ordered = sorted(component, key=order.__getitem__)
        start = next((n for n in ordered if nodes[n].type == "goto"), ordered[0])
        loops.append(_loop_through(graph, members, start))
    return sorted(loops, key=lambda loop: order[loop[0]])


def _components(graph: Mapping[str, list[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components, iteratively (flows can be long)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                out.append(component)
    return out


def _loop_through(graph: Mapping[str, list[str]], members: set[str], start: str) -> list[str]:
    """A shortest path from ``start`` back to ``start`` inside one component (breadth first)."""
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in graph[node]:
                if child not in members:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [*reversed(path), start]
                if child not in parent:
                    parent[child] = node
                    following.append(child)
        frontier = following
    return [start, start]  # unreachable for a real component


def check_loops(bundle: m.Bundle) -> Iterator[Issue]:
    """E041: a loop of nodes with no delay, no wait and no max_visits."""
    for flow in bundle.flows.values():
        for loop in unsafe_loops(flow.nodes):
            head = flow.nodes[loop[0]]
            chain = " → ".join(loop)
            goto = next((flow.nodes[n] for n in loop if flow.nodes[n].type == "goto"), None)
            span = value_span(goto.where, "node") if goto is not None else flow.where.at("nodes", head.id)
            yield error(
                "E041",
                f"flow '{flow.name}' loops without waiting: {chain}",
                span,
                "put a delay or wait_event node in the loop, or set max_visits on the goto node "
                "so a run cannot repeat it forever",
            )


def check_started(bundle: m.Bundle) -> Iterator[Issue]:
    """W004: a flow with no trigger that no goto_flow leads to never runs."""
    targets = {n.flow for flow in bundle.flows.values() for n in flow.nodes.values() if n.type == "goto_flow"}
    for flow in bundle.flows.values():
        if flow.trigger is None and flow.name not in targets:
            yield warning(
                "W004",
                f"flow '{flow.name}' has no trigger and no goto_flow leads to it, so it never runs",
                name_span(flow),
                "add a trigger, or start it from another flow with a goto_flow node",
                needs=needs_document("Flow", "*"),  # a flow that failed the schema may be the one that leads to it
            )
