"""Semantic checks: the broken-config corpus, the graph logic behind them, and fuzzing of the loader.

``tests/broken/<case>/`` holds one small config per problem and an ``expect.txt`` listing, one a
line, ``CODE file:line:col`` for every issue the case must produce. Every error the case produces
must be listed (warnings need not be). A ``# schema: off`` line runs the case without the JSON
Schema, for semantic checks that the schema normally pre-empts.
"""

from __future__ import annotations

import copy
import re
import tempfile
import textwrap
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowctl.spec import checks, config
from flowctl.spec import model as m
from flowctl.spec.checks import INTERNAL, run_checks
from flowctl.spec.checks._common import text_span
from flowctl.spec.checks.cascade import Edge, elementary_cycles
from flowctl.spec.checks.flows import unsafe_loops
from flowctl.spec.checks.pipelines import after_cycles
from flowctl.spec.checks.secrets import is_literal, url_problem
from flowctl.spec.config import Loaded, load_bundle
from flowctl.spec.issues import Issue
from flowctl.spec.places import Span

ROOT = Path(__file__).resolve().parent.parent
BROKEN = Path(__file__).resolve().parent / "broken"
CASES = sorted(p for p in BROKEN.iterdir() if p.is_dir())

#: Every code the issue asks for has a corpus case.
REQUIRED = {
    "E001",
    "E002",
    "E010",
    "E011",
    "E012",
    "E020",
    "E021",
    "E022",
    "E030",
    "E031",
    "E032",
    "E033",
    "E034",
    "E035",
    "E036",
    "E037",
    "E038",
    "E039",
    "E040",
    "E041",
    "E042",
    "E043",
    "E044",
    "E050",
    "E051",
    "E060",
    "E061",
    "E062",
    "E063",
    "E064",
    "E065",
    "E115",
    "E116",
    "E117",
    "E118",
    "E119",
    "E070",
    "E071",
    "E080",
    "E090",
    "E091",
    "E100",
    "E101",
    "E102",
    "E103",
    "E104",
    "E105",
    "E106",
    "W001",
    "W002",
    "W003",
    "W004",
    "W006",
}

_EXPECT = re.compile(r"^([EW]\d{3}) (\S+):(\d+):(\d+)$")


def _expectations(case: Path) -> tuple[list[tuple[str, str]], bool]:
    expected: list[tuple[str, str]] = []
    schema = True
    for raw in (case / "expect.txt").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("#"):
            schema = schema and not line.startswith("# schema: off")
            continue
        if not line:
            continue
        match = _EXPECT.match(line)
        assert match, f"{case.name}/expect.txt: cannot read {line!r}"
        expected.append((match[1], f"{match[2]}:{match[3]}:{match[4]}"))
    return expected, schema


def _no_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config, "check_document", lambda doc: [])


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_broken_corpus(case: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected, schema = _expectations(case)
    if not schema:
        _no_schema(monkeypatch)
    loaded = load_bundle(case)
    found = Counter((i.code, str(i.span)) for i in loaded.issues)
    missing = Counter(expected) - found
    listed = set(expected)
    unexpected = [str(i) for i in loaded.errors if (i.code, str(i.span)) not in listed]
    report = "\n".join(str(i) for i in loaded.issues)
    assert not missing, f"expected but not reported: {sorted(missing)}\nreported:\n{report}"
    assert not unexpected, "errors not listed in expect.txt:\n" + "\n".join(unexpected)
    assert all(i.hint for i in loaded.issues if i.code not in ("E091", "E001", "E002", "E012")), report


def test_corpus_covers_every_code() -> None:
    covered = {code for case in CASES for code, _ in _expectations(case)[0]}
    assert len(CASES) >= 30
    assert covered >= REQUIRED, f"no corpus case for {sorted(REQUIRED - covered)}"


def test_every_code_is_documented() -> None:
    docs = (ROOT / "docs" / "errors.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^## ([EW]\d{3})\b", docs, flags=re.MULTILINE))
    used = set()
    for path in (ROOT / "flowctl" / "spec").rglob("*.py"):
        used |= set(re.findall(r"\"([EW]\d{3})\"", path.read_text(encoding="utf-8")))
    assert used <= documented, f"codes without a section in docs/errors.md: {sorted(used - documented)}"


# ------------------------------------------------------------------------------------------------
# Bundles from YAML text, without the JSON Schema (the unit tests target the semantic checks)

OBJECTS = """\
apiVersion: flowctl/v1
kind: ObjectType
metadata: {name: contact}
spec:
  fields:
    full_name: {type: string}
    email: {type: email}
    score: {type: integer}
    status: {type: enum, values: [active, inactive]}
    level: {type: string}
"""


def _load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> Loaded:
    (tmp_path / "objects.yaml").write_text(OBJECTS, encoding="utf-8")
    (tmp_path / "config.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    _no_schema(monkeypatch)
    return load_bundle(tmp_path)


def _codes(loaded: Loaded, code: str) -> list[Issue]:
    return [i for i in loaded.issues if i.code == code]


def _flow(name: str, trigger: str, sets: str, *, extra: str = "") -> str:
    return f"""\
apiVersion: flowctl/v1
kind: Flow
metadata: {{name: {name}}}
spec:
  object: contact
  trigger: {trigger}
  start: n
  nodes:
    n: {{type: update_fields, set: {sets}}}
{extra}---
"""


# ------------------------------------------------------------------------------------------------
# Cascades across automations (E080)


def test_cascade_two_flows_chain_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = _load(
        tmp_path,
        monkeypatch,
        _flow("A", "{on: updated, changed: [status]}", "{score: 1}")
        + _flow("B", "{on: updated, changed: [score]}", "{status: active}"),
    )
    (issue,) = _codes(loaded, "E080")
    assert issue.message == (
        "automations start each other in a loop: flow A (sets score) → flow B (sets status) → flow A"
    )
    assert (issue.line, issue.col) == (9, 36)  # the 'score' A writes, in the first automation


def test_cascade_self_loop_and_unfiltered_trigger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = _load(tmp_path, monkeypatch, _flow("A", "{on: updated}", "{score: 1}"))
    (issue,) = _codes(loaded, "E080")
    assert issue.message.endswith("flow A (sets score) → flow A")


def test_cascade_three_flows_reported_once_from_the_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = _load(
        tmp_path,
        monkeypatch,
        _flow("C", "{on: updated, changed: [level]}", "{score: 1}")
        + _flow("A", "{on: updated, changed: [score]}", "{status: active}")
        + _flow("B", "{on: updated, changed: [status]}", "{level: high}"),
    )
    (issue,) = _codes(loaded, "E080")
    assert issue.message.endswith("flow C (sets score) → flow A (sets status) → flow B (sets level) → flow C")


def test_cascade_each_elementary_cycle_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = _load(
        tmp_path,
        monkeypatch,
        _flow("A", "{on: updated, changed: [status, level]}", "{score: 1}")
        + _flow("B", "{on: updated, changed: [score]}", "{status: active}")
        + _flow("C", "{on: updated, changed: [score]}", "{level: high}"),
    )
    chains = sorted(i.message.split(": ", 1)[1] for i in _codes(loaded, "E080"))
    assert chains == [
        "flow A (sets score) → flow B (sets status) → flow A",
        "flow A (sets score) → flow C (sets level) → flow A",
    ]


def test_cascade_needs_a_matching_trigger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = _load(
        tmp_path,
        monkeypatch,
        _flow("A", "{on: updated, changed: [status]}", "{score: 1}")
        + _flow("B", "{on: updated, changed: [level]}", "{status: active}")
        + _flow("C", "{on: created}", "{status: active}")
        + _flow("D", "{on: updated, changed: [score]}", "{status: active}", extra="  enabled: false\n"),
    )
    assert _codes(loaded, "E080") == []


def test_cascade_goto_flow_and_handover(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = _load(
        tmp_path,
        monkeypatch,
        """\
        apiVersion: flowctl/v1
        kind: Flow
        metadata: {name: A}
        spec:
          object: contact
          trigger: {on: updated, changed: [owner]}
          start: n
          nodes:
            n: {type: goto_flow, flow: B}
        ---
        apiVersion: flowctl/v1
        kind: Flow
        metadata: {name: B}
        spec:
          object: contact
          start: n
          nodes:
            n: {type: handover, to: lan}
        """,
    )
    (issue,) = _codes(loaded, "E080")
    assert issue.message.endswith("flow A (goes to flow B) → flow B (sets owner) → flow A")


def test_cascade_through_a_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = _load(
        tmp_path,
        monkeypatch,
        """\
        apiVersion: flowctl/v1
        kind: Flow
        metadata: {name: promote}
        spec:
          object: contact
          trigger: {on: updated, changed: [score]}
          start: n
          nodes:
            n: {type: move_stage, stage: hot}
        ---
        apiVersion: flowctl/v1
        kind: Pipeline
        metadata: {name: sales}
        spec:
          object: contact
          stages:
            - id: new
            - id: hot
              rules:
                - {name: bump, action: update_fields, set: {score: 100}}
        """,
    )
    (issue,) = _codes(loaded, "E080")
    assert issue.message.endswith("flow promote (moves to hot) → stage sales/hot (sets score) → flow promote")


def test_elementary_cycles_of_a_complete_graph() -> None:
    keys = [("flow", n) for n in "abc"]
    graph = {k: [Edge(t, "x", Span("f", 1, 1)) for t in keys if t != k] for k in keys}
    cycles = elementary_cycles(graph, keys)
    assert len(cycles) == 5  # three of two automations, two of three
    assert all(c[-1].target == c[0].target or len(c) >= 2 for c in cycles)
    assert len({tuple(e.target for e in c) for c in cycles}) == 5


# ------------------------------------------------------------------------------------------------
# Loops inside a flow (E041)


def _nodes(*specs: dict[str, Any]) -> dict[str, m.Node]:
    out = {}
    for spec in specs:
        spec = dict(spec)
        if "for_" in spec:
            spec["for_"] = m.Duration(text="1h", value=timedelta(hours=1))
        out[spec["id"]] = m.Node(**spec)
    return out


def test_goto_loop_without_wait_is_unsafe() -> None:
    nodes = _nodes(
        {"id": "task", "type": "create_task", "next": "again"}, {"id": "again", "type": "goto", "target": "task"}
    )
    assert unsafe_loops(nodes) == [["again", "task", "again"]]


@pytest.mark.parametrize(
    "waiting",
    [
        {"id": "pause", "type": "delay", "for_": True, "next": "again"},
        {"id": "pause", "type": "wait_event", "event": "x", "next": "again"},
    ],
)
def test_loop_through_a_wait_is_safe(waiting: dict[str, Any]) -> None:
    nodes = _nodes(
        {"id": "task", "type": "create_task", "next": "pause"},
        waiting,
        {"id": "again", "type": "goto", "target": "task"},
    )
    assert unsafe_loops(nodes) == []


def test_goto_with_max_visits_is_safe() -> None:
    nodes = _nodes(
        {"id": "task", "type": "create_task", "next": "again"},
        {"id": "again", "type": "goto", "target": "task", "max_visits": 3, "next": "end"},
        {"id": "end", "type": "stop"},
    )
    assert unsafe_loops(nodes) == []


def test_self_goto_and_next_loops_and_separate_loops() -> None:
    nodes = _nodes(
        {"id": "spin", "type": "goto", "target": "spin"},
        {"id": "a", "type": "create_task", "next": "b"},
        {"id": "b", "type": "branch", "branches": (m.Branch(if_="x", next="end"),), "default": "a"},
        {"id": "end", "type": "stop"},
    )
    assert unsafe_loops(nodes) == [["spin", "spin"], ["a", "b", "a"]]


def test_only_the_unsafe_part_of_a_flow_is_reported() -> None:
    nodes = _nodes(
        {"id": "a", "type": "create_task", "next": "w"},
        {"id": "w", "type": "delay", "for_": True, "next": "b"},
        {"id": "b", "type": "branch", "branches": (m.Branch(if_="x", next="a"),), "default": "c"},
        {"id": "c", "type": "update_fields", "next": "d"},
        {"id": "d", "type": "goto", "target": "c"},
    )
    assert unsafe_loops(nodes) == [["d", "c", "d"]]


def test_goto_cycle_reported_at_the_goto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = _load(
        tmp_path,
        monkeypatch,
        """\
        apiVersion: flowctl/v1
        kind: Flow
        metadata: {name: nag}
        spec:
          object: contact
          trigger: {on: created}
          start: task
          nodes:
            task: {type: create_task, title: Call, next: wait}
            wait: {type: delay, for: 1d, next: check}
            check: {type: branch, branches: [{if: "record.score > 3", next: task}], default: loop}
            loop: {type: goto, node: check}
        """,
    )
    (issue,) = _codes(loaded, "E041")
    assert issue.message == "flow 'nag' loops without waiting: loop → check → loop"
    assert (issue.line, issue.col) == (12, 30)


def test_after_cycles() -> None:
    def rule(name: str, *after: str) -> m.Rule:
        return m.Rule(name=name, action=m.Action(type="notify"), after=after)

    rules = {r.name: r for r in (rule("a", "c"), rule("b", "a"), rule("c", "b"), rule("d", "d"), rule("e"))}
    assert sorted(after_cycles(rules)) == [["a", "c", "b"], ["d"]]


# ------------------------------------------------------------------------------------------------
# Places inside strings


@pytest.mark.parametrize(
    ("line", "col", "expected_col"),
    [
        ("  if: record.score > 1 and record.x", 7, 7 + 28),
        ('  if: "record.score > 1 and record.x"', 7, 8 + 28),
        ("  if: 'record.score > 1 and record.x'", 7, 8 + 28),
    ],
)
def test_text_span_one_line(tmp_path: Path, line: str, col: int, expected_col: int) -> None:
    (tmp_path / "f.yaml").write_text(f"x:\n{line}\n", encoding="utf-8")
    text = "record.score > 1 and record.x"
    span = text_span(str(tmp_path), Span("f.yaml", 2, col), text, text.index("x", 20))
    assert span == Span("f.yaml", 2, expected_col)


def test_text_span_literal_block_and_fallbacks(tmp_path: Path) -> None:
    (tmp_path / "f.yaml").write_text("d: |\n  one {{ a }}\n    two {{ record.b }}\nf: >\n  x\n", encoding="utf-8")
    text = "one {{ a }}\n  two {{ record.b }}\n"
    assert text_span(str(tmp_path), Span("f.yaml", 1, 4), text, text.index("b }")) == Span("f.yaml", 3, 19)
    assert text_span(str(tmp_path), Span("f.yaml", 4, 4), "x\n", 0) == Span("f.yaml", 4, 4)  # folded
    assert text_span(str(tmp_path), Span("f.yaml", 1, 4), "nothing like it", 3) == Span("f.yaml", 1, 4)
    assert text_span(str(tmp_path), Span("gone.yaml", 1, 4), "abc", 1) == Span("gone.yaml", 1, 4)


# ------------------------------------------------------------------------------------------------
# Secrets, isolation


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        ("hunter2", True),
        ("Bearer abc", True),
        ("${TOKEN}", False),
        ("Bearer ${TOKEN}", False),
        ("{{ secret }}", False),
        ("", False),
        (None, False),
    ],
)
def test_is_literal(value: Any, literal: bool) -> None:
    assert is_literal(value) is literal


@pytest.mark.parametrize(
    ("url", "bad"),
    [
        ("postgresql://u:pw@db/x", True),
        ("postgresql://u:${PW}@db/x", False),
        ("sqlite:///flowctl.db", False),
        ("https://api.example.com/send?api_key=abc", True),
        ("https://x.example/?api_key=${KEY}", False),
        ("https://x.example/?page=2", False),
        ("${SMS_URL}", False),
    ],
)
def test_url_secrets(url: str, bad: bool) -> None:
    assert (url_problem(url) is not None) is bad


def test_a_crashing_check_does_not_hide_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(bundle: m.Bundle) -> Any:
        yield from ()
        raise RuntimeError("boom")

    bundle = m.Bundle(root="<memory>", config=m.Config(metadata=m.Metadata(name="c"), api_token="literal"))
    monkeypatch.setattr(checks, "CHECKS", [broken, *checks.CHECKS])
    codes = [i.code for i in run_checks(bundle)]
    assert INTERNAL in codes
    assert "E090" in codes


# ------------------------------------------------------------------------------------------------
# Fuzzing: whatever the text, loading reports issues and never raises

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _load_text(text: str) -> Loaded:
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "config.yaml").write_text(text, encoding="utf-8")
        loaded = load_bundle(folder)
    assert isinstance(loaded, Loaded)
    assert all(isinstance(i, Issue) for i in loaded.issues)
    assert not [i for i in loaded.issues if i.code == INTERNAL], [str(i) for i in loaded.issues]
    return loaded


@FUZZ
@given(st.text(max_size=400))
def test_any_text_loads_without_crashing(text: str) -> None:
    _load_text(text)


_NAMES = st.sampled_from(["a", "n", "done", "start", "email", "score", "status", "contact", "welcome", "x"])
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 100),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    _NAMES,
    st.sampled_from(
        [
            "record.score > 1",
            "{{ record.nope }}",
            "{% if %}",
            "1d",
            "-2h",
            "08:00",
            "25:99",
            "0 9 * * 1",
            "* *",
            "${TOKEN}",
            "hunter2",
            "flowctl/v1",
            "Flow",
            "Pipeline",
            "update_fields",
            "goto",
            "branch",
            "delay",
            "move_stage",
            "stage_changed",
            "updated",
        ]
    ),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.one_of(_NAMES, st.text(max_size=6)), inner, max_size=4)
    ),
    max_leaves=25,
)


@FUZZ
@given(
    st.one_of(
        _VALUES,
        st.fixed_dictionaries(
            {
                "apiVersion": st.just("flowctl/v1"),
                "kind": st.sampled_from(m.KINDS),
                "metadata": st.fixed_dictionaries({"name": _NAMES}),
                "spec": _VALUES,
            }
        ),
    )
)
def test_yamlish_documents_load_without_crashing(data: Any) -> None:
    _load_text(yaml.safe_dump(data, allow_unicode=True))


VALID = [
    {
        "apiVersion": "flowctl/v1",
        "kind": "ObjectType",
        "metadata": {"name": "contact"},
        "spec": {
            "fields": {
                "email": {"type": "email"},
                "score": {"type": "integer"},
                "birthday": {"type": "date"},
                "status": {"type": "enum", "values": ["active", "inactive"]},
            }
        },
    },
    {
        "apiVersion": "flowctl/v1",
        "kind": "Flow",
        "metadata": {"name": "welcome"},
        "spec": {
            "object": "contact",
            "trigger": {"on": "updated", "changed": ["email"], "if": "record.email"},
            "start": "pick",
            "nodes": {
                "pick": {"type": "branch", "branches": [{"if": "record.score > 1", "next": "mail"}], "default": "wait"},
                "mail": {"type": "send_email", "template": "welcome", "next": "wait"},
                "wait": {"type": "delay", "for": "1d", "next": "bump"},
                "bump": {"type": "update_fields", "set": {"score": "{{ record.score + 1 }}"}, "next": "loop"},
                "loop": {"type": "goto", "node": "pick", "max_visits": 3},
            },
        },
    },
    {
        "apiVersion": "flowctl/v1",
        "kind": "Template",
        "metadata": {"name": "welcome"},
        "spec": {"channel": "email", "subject": "Hi", "text": "Hello {{ record.email }}"},
    },
    {
        "apiVersion": "flowctl/v1",
        "kind": "Pipeline",
        "metadata": {"name": "sales"},
        "spec": {
            "object": "contact",
            "stages": [
                {
                    "id": "new",
                    "rules": [
                        {"name": "a", "action": "create_task", "title": "Call"},
                        {"name": "b", "after": "a", "action": "move_stage", "stage": "won"},
                    ],
                },
                {
                    "id": "won",
                    "final": "success",
                    "triggers": [{"on": "updated", "changed": ["score"], "if": "record.score > 5"}],
                },
            ],
        },
    },
    {
        "apiVersion": "flowctl/v1",
        "kind": "CareProcess",
        "metadata": {"name": "birthday"},
        "spec": {
            "object": "contact",
            "when": {"anniversary_of": "birthday", "at": "08:00"},
            "actions": [{"action": "create_task", "title": "Call {{ record.email }}"}],
        },
    },
]


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += _paths(item, (*path, i))
    return out


def _mutate(docs: list[Any], data: st.DataObject) -> list[Any]:
    docs = copy.deepcopy(docs)
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        paths = [p for p in _paths(docs) if len(p) > 1]
        path = data.draw(st.sampled_from(paths), label="path")
        parent = docs
        for part in path[:-1]:
            parent = parent[part]
        last = path[-1]
        op = data.draw(st.sampled_from(["replace", "delete", "rename", "duplicate"]), label="op")
        if op == "replace":
            parent[last] = data.draw(_VALUES, label="value")
        elif op == "delete":
            del parent[last]
        elif op == "rename" and isinstance(parent, dict):
            parent[data.draw(_NAMES, label="name")] = parent.pop(last)
        elif op == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[last]))
    return docs


@FUZZ
@given(st.data())
def test_mutated_valid_documents_load_without_crashing(data: st.DataObject) -> None:
    docs = _mutate(VALID, data)
    _load_text(yaml.safe_dump_all(docs, allow_unicode=True, sort_keys=False))


@FUZZ
@given(st.data())
def test_mutated_valid_text_loads_without_crashing(data: st.DataObject) -> None:
    text = yaml.safe_dump_all(VALID, allow_unicode=True, sort_keys=False)
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        start = data.draw(st.integers(0, len(text)), label="start")
        end = data.draw(st.integers(start, min(len(text), start + 20)), label="end")
        text = text[:start] + data.draw(st.text(max_size=8), label="insert") + text[end:]
    _load_text(text)


def test_the_valid_fuzz_seed_is_valid() -> None:
    loaded = _load_text(yaml.safe_dump_all(VALID, allow_unicode=True, sort_keys=False))
    assert loaded.errors == [], [str(i) for i in loaded.errors]


# ------------------------------------------------------------------------------------------------
# One mistake, one error: findings that depend on an invalid document are held back (issue 13, item 8)

HELD = BROKEN / "E010-pipeline-typo-held"


def _held_case(tmp_path: Path, pipeline: str) -> Path:
    """The corpus case with the broken pipeline renamed to sort last, and an independent error first."""
    for path in HELD.glob("*.yaml"):
        name = "zz-pipeline.yaml" if path.name == "pipeline.yaml" else path.name
        (tmp_path / name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "zz-pipeline.yaml").write_text(pipeline, encoding="utf-8")
    (tmp_path / "a-flow.yaml").write_text(
        textwrap.dedent("""\
        apiVersion: flowctl/v1
        kind: Flow
        metadata: {name: greet}
        spec:
          object: treatment
          trigger: {on: created}
          start: a
          nodes:
            a: {type: send_sms, template: welcom-sms, to: "{{ record.phone }}"}
        """),
        encoding="utf-8",
    )
    return tmp_path


@pytest.mark.parametrize("broken", ["typo", "indentation"])
def test_root_cause_first_and_dependents_held_back(tmp_path: Path, broken: str) -> None:
    text = (HELD / "pipeline.yaml").read_text(encoding="utf-8")
    if broken == "indentation":
        text = text.replace("      feilds: [doctor]", "     fields: [doctor]")
    loaded = load_bundle(_held_case(tmp_path, text))
    codes = [(i.code, i.file) for i in loaded.errors]
    root = "E010" if broken == "typo" else "E001"
    # the schema/syntax error first, even though its file sorts last; then the independent E034
    assert codes == [(root, "zz-pipeline.yaml"), ("E034", "a-flow.yaml")], "\n".join(map(str, loaded.issues))
    assert "6 findings that depend on this" in loaded.errors[0].hint
    assert {i.code for i in loaded.held} == {"E032", "E039"}
    assert all("because zz-pipeline.yaml:11 is invalid" in i.message for i in loaded.held)


@pytest.mark.parametrize("fmt", ["text", "json", "github", "sarif"])
def test_root_cause_first_in_every_format(tmp_path: Path, fmt: str) -> None:
    import io
    import json

    from flowctl.cli.validate import RENDERERS

    loaded = load_bundle(_held_case(tmp_path, (HELD / "pipeline.yaml").read_text(encoding="utf-8")))
    out = io.StringIO()
    RENDERERS[fmt](loaded, out)
    text = out.getvalue()
    if fmt == "json":
        files = [i["file"] for i in json.loads(text)["issues"]]
    elif fmt == "sarif":
        results = json.loads(text)["runs"][0]["results"]
        files = [Path(r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]).name for r in results]
    else:
        files = [Path(m).name for m in re.findall(r"(?:file=|^)([^,:\s]+\.yaml)", text, flags=re.MULTILINE)]
    assert files == ["zz-pipeline.yaml", "a-flow.yaml"], text


def test_a_broken_object_type_holds_back_what_names_it(tmp_path: Path) -> None:
    for path in HELD.glob("*.yaml"):
        (tmp_path / path.name).write_text(
            path.read_text(encoding="utf-8").replace("feilds", "fields"), encoding="utf-8"
        )
    objects = (tmp_path / "objects.yaml").read_text(encoding="utf-8")
    (tmp_path / "objects.yaml").write_text(objects.replace("type: phone", "type: fone"), encoding="utf-8")
    loaded = load_bundle(tmp_path)
    assert [(i.code, i.file) for i in loaded.errors] == [("E010", "objects.yaml")], "\n".join(map(str, loaded.issues))
    assert {i.code for i in loaded.held} >= {"E030"}


def test_the_documents_of_a_file_that_is_not_yaml_are_guessed_from_its_lines() -> None:
    from flowctl.spec.dependencies import guess_keys

    block = 'kind: Pipeline\nmetadata:\n  description: x\n  name: "sales"  # the main one\nspec:\n  object: deal\n'
    assert guess_keys(block + "  stages: [\n") == {"Pipeline/sales", "stages/deal"}
    assert guess_keys("kind: Flow\nmetadata: {name: a, description: b}\nspec: [\n") == {"Flow/a"}
    assert guess_keys("kind: Flow\nmetadata: {}\n---\nspec: [\n") == {"*"}  # a part without a kind: anything
    # many indented lines under metadata: read line by line (a backtracking pattern never finished)
    assert guess_keys("kind: Flow\nmetadata:\n" + "  x: y\n" * 20000 + "  name: late\n") == {"Flow/late"}
