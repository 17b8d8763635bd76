"""The diagram layout: rows by the longest path from the start, cycles broken."""

from __future__ import annotations

from flowctl.runtime.console.layout import back_edges, diagram, layers


def test_layers_follow_the_longest_path_from_the_start() -> None:
    order = ["start", "a", "b", "c"]
    edges = [("start", "a"), ("a", "b"), ("b", "c"), ("start", "c")]
    assert layers(order, edges) == {"start": 0, "a": 1, "b": 2, "c": 3}


def test_a_cycle_is_broken_at_the_edge_that_closes_it() -> None:
    order = ["start", "check", "wait", "again", "done"]
    edges = [("start", "check"), ("check", "wait"), ("wait", "again"), ("again", "check"), ("again", "done")]
    assert back_edges(order, edges) == {("again", "check")}
    assert layers(order, edges) == {"start": 0, "check": 1, "wait": 2, "again": 3, "done": 4}


def test_boxes_of_one_layer_stack_and_back_edges_are_marked() -> None:
    graph = {
        "nodes": [{"id": n, "label": n, "type": "x", "waiting": i} for i, n in enumerate(["s", "a", "b", "end"])],
        "edges": [
            {"from": "s", "to": "a"},
            {"from": "s", "to": "b"},
            {"from": "a", "to": "end"},
            {"from": "b", "to": "s"},
        ],
    }
    drawing = diagram(graph)
    boxes = {box.id: box for box in drawing.boxes}
    assert boxes["a"].y == boxes["b"].y and boxes["a"].x != boxes["b"].x  # one row, side by side
    assert boxes["end"].y > boxes["a"].y and boxes["end"].waiting == 3
    assert boxes["s"].x == (boxes["a"].x + boxes["b"].x) // 2  # a row of one is centred
    assert [line.back for line in drawing.lines] == [False, False, False, True]
    assert drawing.width >= boxes["b"].x + drawing.node_w and drawing.height >= boxes["end"].y + drawing.node_h


def test_an_edge_over_a_row_is_marked_to_go_around() -> None:
    graph = {
        "nodes": [{"id": n, "label": n} for n in ["s", "a", "b"]],
        "edges": [{"from": "s", "to": "a"}, {"from": "a", "to": "b"}, {"from": "s", "to": "b"}],
    }
    assert [line.skip for line in diagram(graph).lines] == [False, False, True]
