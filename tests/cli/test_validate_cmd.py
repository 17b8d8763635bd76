"""``flowctl validate`` on the examples in every format, and its exit codes."""

from __future__ import annotations

import json

from tests.cli.conftest import ROOT, invoke


def test_text(example) -> None:
    result = invoke("validate", example)
    assert result.exit_code == 0, result.output
    assert ": valid: " in result.output.splitlines()[-1]


def test_json_parses(example) -> None:
    result = invoke("validate", example, "--format", "json")
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["valid"] is True and data["errors"] == 0 and data["documents"] > 0


def test_sarif_parses(example) -> None:
    result = invoke("validate", example, "--format", "sarif")
    data = json.loads(result.output)
    assert data["version"] == "2.1.0"
    assert data["runs"][0]["tool"]["driver"]["name"] == "flowctl"
    assert all(r["level"] == "warning" for r in data["runs"][0]["results"])


def test_github_lines_parse(example) -> None:
    result = invoke("validate", example, "--format", "github")
    lines = result.output.splitlines()
    assert lines[-1].endswith(" errors, " + lines[-1].split(", ")[1])
    assert all(line.startswith("::warning file=") for line in lines[:-1])


BROKEN = ROOT / "tests" / "broken" / "E041-goto-cycle"


def test_an_invalid_directory_exits_1_in_every_format() -> None:
    for fmt in ("text", "json", "github", "sarif"):
        result = invoke("validate", BROKEN, "--format", fmt)
        assert result.exit_code == 1, fmt
        assert "E041" in result.output
    sarif = json.loads(invoke("validate", BROKEN, "--format", "sarif").output)
    (hit,) = [r for r in sarif["runs"][0]["results"] if r["ruleId"] == "E041"]
    assert hit["level"] == "error" and hit["locations"][0]["physicalLocation"]["region"]["startLine"] > 0
    github = invoke("validate", BROKEN, "--format", "github").output
    assert github.startswith("::error file=") and ",title=flowctl E041::" in github


def test_a_missing_directory_is_a_usage_error(tmp_path) -> None:
    result = invoke("validate", tmp_path / "nope")
    assert result.exit_code == 2
