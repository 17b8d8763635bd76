"""The engine's plain-Python evaluator of simple conditions agrees with Jinja on every input."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowctl.engine.core import _JINJA, simple_condition
from flowctl.spec.templating import TemplateError, compile_expression

VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(-3, 3, allow_nan=False),
    st.sampled_from(["", "a", "vip", "1"]),
    st.lists(st.sampled_from(["a", "b"]), max_size=2),
)
LITERALS = ["None", "true", "0", "1", "2.5", "''", "'a'", "'vip'", "['a', 'b']", "('a', 1)"]
OPS = ["==", "!=", "<", "<=", ">", ">=", "in", "not in"]
SHAPES = [f"record.x {op} {lit}" for op in OPS for lit in LITERALS] + [
    "record.x",
    "not record.x",
    "before.x",
    "event.x == 1",
]


def outcome(evaluate: Any) -> tuple[str, Any]:
    try:
        return ("value", bool(evaluate()))
    except TemplateError as exc:
        return ("error", exc.message)


@pytest.mark.parametrize("source", SHAPES)
def test_these_shapes_take_the_fast_path(source: str) -> None:
    assert simple_condition(source) is not None


@pytest.mark.parametrize(
    "source",
    [
        "record.x == 1 and record.y",
        "record.x + 1 > 2",
        "record.items == 1",
        "owner.name == 'lan'",
        "record.x == record.y",
        "record.x | length > 1",
        "not record.x == 1",
        "record.x == -1",
    ],
)
def test_other_shapes_go_to_jinja(source: str) -> None:
    assert simple_condition(source) is None


@settings(max_examples=150, deadline=None)
@given(source=st.sampled_from(SHAPES), value=VALUES, present=st.booleans())
def test_the_fast_path_gives_what_jinja_gives(source: str, value: Any, present: bool) -> None:
    scope = {"x": value} if present else {}
    ctx = {"record": scope, "before": dict(scope), "event": dict(scope)}
    fast = simple_condition(source)
    assert fast is not None
    if not present:
        assert fast(ctx) is _JINJA  # a missing field: Jinja's error message names it
        return
    assert outcome(lambda: fast(ctx)) == outcome(lambda: compile_expression(source).evaluate(ctx))
