"""``flowctl graph``: a flow or a pipeline as Mermaid or Graphviz dot."""

from __future__ import annotations

import re

from tests.cli.conftest import ROOT, invoke
from tests.engine.conftest import make_bundle
from tests.engine.design_example import FILES as DESIGN

FURNITURE = ROOT / "examples" / "furniture-store"


def balanced(text: str) -> bool:
    depth = 0
    for char in re.sub(r'"[^"]*"', "", text):
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def test_flow_as_mermaid(tmp_path) -> None:
    make_bundle(tmp_path, DESIGN, base=False)
    result = invoke("graph", "welcome-new-email", tmp_path)
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0] == "flowchart TD"
    assert '  start(["user updated (email)"]) --> n_pick' in lines
    assert "  n_pick -- \"if record.segment == 'vip'\" --> n_vip_mail" in lines
    assert '  n_wait -- "timeout 3d" --> n_call' in lines
    assert '  n_done -- "goto_flow" --> n_flow_nurture' in lines


def test_flow_as_dot(tmp_path) -> None:
    make_bundle(tmp_path, DESIGN, base=False)
    result = invoke("graph", "welcome-new-email", tmp_path, "--format", "dot")
    assert result.exit_code == 0
    assert result.output.startswith('digraph "welcome-new-email" {')
    assert balanced(result.output)
    assert '  n_pick [shape=diamond, label="pick: branch"];' in result.output


def test_pipeline_as_mermaid_and_dot() -> None:
    mermaid = invoke("graph", "furniture-sales", FURNITURE)
    assert mermaid.exit_code == 0
    assert mermaid.output.startswith("flowchart LR\n")
    assert "  n_new --> n_documents" in mermaid.output
    assert "    n_documents_n_make_invoice --> n_documents_n_email_invoice" in mermaid.output
    dot = invoke("graph", "furniture-sales", FURNITURE, "--format", "dot")
    assert dot.exit_code == 0
    assert dot.output.startswith('digraph "furniture-sales" {') and balanced(dot.output)
    assert "subgraph cluster_n_prepayment {" in dot.output


def test_every_flow_and_pipeline_of_the_examples_draws(example) -> None:
    from flowctl.spec.config import load_bundle

    bundle = load_bundle(example).bundle
    for name in [*bundle.flows, *bundle.pipelines]:
        for fmt in ("mermaid", "dot"):
            result = invoke("graph", name, example, "--format", fmt)
            assert result.exit_code == 0, (name, fmt)
            if fmt == "dot":
                assert balanced(result.output), name


def test_an_unknown_name_is_a_usage_error_naming_the_known_ones() -> None:
    result = invoke("graph", "nope", FURNITURE)
    assert result.exit_code == 2
    assert "no flow or pipeline named 'nope'" in result.output and "furniture-sales" in result.output
