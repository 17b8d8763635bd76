"""A flow's or pipeline's graph laid out for a server-rendered SVG: rows (layers) by the longest
path from the start node, top to bottom, with the edges that close a cycle left out of the layering
(they are still drawn, as curves beside the boxes).

Deterministic and small on purpose: the diagrams have tens of nodes, and a page must not need a
JavaScript renderer. The template draws the boxes and lines from :class:`Diagram`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

NODE_W, NODE_H = 230, 46
GAP_X, GAP_Y = 60, 40
MARGIN = 16
SIDE = 80  # room on the right for the curves of back and skipping edges


@dataclass(frozen=True, slots=True)
class Box:
    id: str
    label: str
    type: str
    waiting: int
    x: int
    y: int
    layer: int


@dataclass(frozen=True, slots=True)
class Line:
    x1: int
    y1: int
    x2: int
    y2: int
    label: str
    back: bool  # closes a cycle: drawn as a curve back up, beside the boxes
    skip: bool = False  # jumps over a row: drawn as a curve beside the boxes between


@dataclass(frozen=True, slots=True)
class Diagram:
    boxes: tuple[Box, ...]
    lines: tuple[Line, ...]
    width: int
    height: int
    node_w: int = NODE_W
    node_h: int = NODE_H


def back_edges(order: Sequence[str], edges: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """The edges a depth-first walk from each node in ``order`` finds pointing to a node still on
    its path: removing them leaves a graph without cycles."""
    out: dict[str, list[str]] = {node: [] for node in order}
    for a, b in edges:
        if a in out and b in out:
            out[a].append(b)
    state: dict[str, int] = {}  # 1: on the path, 2: done
    found: set[tuple[str, str]] = set()
    for root in order:
        if root in state:
            continue
        stack: list[tuple[str, int]] = [(root, 0)]
        state[root] = 1
        while stack:
            node, i = stack[-1]
            if i < len(out[node]):
                stack[-1] = (node, i + 1)
                nxt = out[node][i]
                if state.get(nxt) == 1:
                    found.add((node, nxt))
                elif nxt not in state:
                    state[nxt] = 1
                    stack.append((nxt, 0))
            else:
                state[node] = 2
                stack.pop()
    return found


def layers(order: Sequence[str], edges: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Each node's layer: the longest path to it over the edges left once cycles are broken (the
    walk starts at the first of ``order``, the start node, so the cycles are broken as it reads)."""
    back = back_edges(order, edges)
    forward = [(a, b) for a, b in edges if (a, b) not in back and a in order and b in order]
    into: dict[str, int] = dict.fromkeys(order, 0)
    for _, b in forward:
        into[b] += 1
    layer = dict.fromkeys(order, 0)
    ready = [node for node in order if into[node] == 0]
    while ready:  # Kahn's order, so each node's layer is final when it is taken
        node = ready.pop(0)
        for a, b in forward:
            if a == node:
                layer[b] = max(layer[b], layer[a] + 1)
                into[b] -= 1
                if into[b] == 0:
                    ready.append(b)
    return layer


def diagram(graph: Mapping[str, Any]) -> Diagram:
    """The boxes and lines of ``graph`` (``Reads.graph``'s answer: nodes and edges), top to bottom:
    one row a layer, each row centred."""
    nodes: list[Mapping[str, Any]] = list(graph.get("nodes", []))
    order = [str(node["id"]) for node in nodes]
    pairs = [(str(e["from"]), str(e["to"])) for e in graph.get("edges", [])]
    layer = layers(order, pairs)
    per_row: dict[int, int] = {}
    for node_id in order:
        per_row[layer[node_id]] = per_row.get(layer[node_id], 0) + 1
    widest = max(per_row.values(), default=1)
    placed: dict[int, int] = {}
    boxes: dict[str, Box] = {}
    for node in nodes:
        node_id = str(node["id"])
        row = layer.get(node_id, 0)
        column = placed.get(row, 0)
        placed[row] = column + 1
        indent = (widest - per_row[row]) * (NODE_W + GAP_X) // 2
        boxes[node_id] = Box(
            id=node_id,
            label=str(node.get("label") or node_id),
            type=str(node.get("type", "")),
            waiting=int(node.get("waiting") or 0),
            x=MARGIN + indent + column * (NODE_W + GAP_X),
            y=MARGIN + row * (NODE_H + GAP_Y),
            layer=row,
        )
    back = back_edges(order, pairs)
    lines = []
    for edge in graph.get("edges", []):
        a, b = boxes.get(str(edge["from"])), boxes.get(str(edge["to"]))
        if a is None or b is None:
            continue
        lines.append(
            Line(
                x1=a.x + NODE_W // 2,
                y1=a.y + NODE_H,
                x2=b.x + NODE_W // 2,
                y2=b.y,
                label=str(edge.get("label") or ""),
                back=(a.id, b.id) in back or b.layer <= a.layer,
                skip=b.layer > a.layer + 1,
            )
        )
    width = MARGIN * 2 + widest * (NODE_W + GAP_X) + SIDE
    height = MARGIN * 2 + (max(layer.values(), default=0) + 1) * (NODE_H + GAP_Y)
    return Diagram(boxes=tuple(boxes.values()), lines=tuple(lines), width=width, height=height)
