"""``validate --format sarif|json``: the SARIF log is valid against the OASIS 2.1.0 schema, every rule
is described the way GitHub code scanning requires, and several directories make one document.

``data/sarif-2.1.0-rtm.5.json`` is the OASIS SARIF 2.1.0 schema (the final rtm.5 draft that became the
standard) as shipped by Microsoft's ``@microsoft/jest-sarif`` (MIT), kept here so the test runs offline.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from jsonschema import Draft4Validator

from flowctl.spec import codes
from tests.cli.conftest import EXAMPLES, ROOT, invoke

SCHEMA = json.loads((Path(__file__).with_name("data") / "sarif-2.1.0-rtm.5.json").read_text(encoding="utf-8"))
BROKEN = sorted(p for p in (ROOT / "tests" / "broken").iterdir() if p.is_dir())


def _sarif(*args: object) -> dict:
    result = invoke("validate", *args, "--format", "sarif")
    return json.loads(result.output)


def _valid(log: dict) -> None:
    errors = sorted(Draft4Validator(SCHEMA).iter_errors(log), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])


def test_the_log_of_broken_and_valid_directories_follows_the_oasis_schema(tmp_path: Path) -> None:
    log = _sarif(*BROKEN[:20], EXAMPLES[0], tmp_path)  # tmp_path: a directory with no documents
    _valid(log)
    (run,) = log["runs"]
    assert len(run["results"]) >= 20
    assert run["invocations"][0]["executionSuccessful"] is False  # the empty directory
    assert str(tmp_path) in run["invocations"][0]["toolExecutionNotifications"][0]["message"]["text"]


def test_every_rule_is_described_with_a_link_to_its_section() -> None:
    log = _sarif(ROOT / "tests" / "broken" / "E041-goto-cycle")
    _valid(log)
    rules = {r["id"]: r for r in log["runs"][0]["tool"]["driver"]["rules"]}
    e041 = rules["E041"]
    assert e041["shortDescription"]["text"] == "loop without a wait or `max_visits`"
    assert e041["fullDescription"]["text"].startswith("A loop that cannot stop on its own")
    assert e041["helpUri"] == "https://github.com/flowctl/flowctl/blob/main/docs/errors.md#e041"
    for r in rules.values():
        assert r["shortDescription"]["text"] != r["id"] and r["fullDescription"]["text"] and r["helpUri"]
    results = log["runs"][0]["results"]
    assert all(rules[r["ruleId"]] is log["runs"][0]["tool"]["driver"]["rules"][r["ruleIndex"]] for r in results)


def test_the_docs_address_can_point_to_a_mirror(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWCTL_DOCS_URL", "https://git.example.com/crm/flowctl/blob/main/docs")
    (rule,) = [
        r
        for r in _sarif(ROOT / "tests" / "broken" / "E041-goto-cycle")["runs"][0]["tool"]["driver"]["rules"]
        if r["id"] == "E041"
    ]
    assert rule["helpUri"] == "https://git.example.com/crm/flowctl/blob/main/docs/errors.md#e041"


def test_every_code_of_the_broken_corpus_is_in_the_shipped_table() -> None:
    corpus = {p.name.split("-")[0] for p in BROKEN if re.fullmatch(r"[EW]\d{3}-.*", p.name)}
    sections = set(re.findall(r"^## ([EW]\d{3})\b", codes.PAGE.read_text(encoding="utf-8"), re.MULTILINE))
    assert (corpus | sections) - set(codes.codes()) == set(), "add a row to the table of docs/errors.md"


def test_two_directories_print_one_json_document() -> None:
    a, b = EXAMPLES[0], ROOT / "tests" / "broken" / "E041-goto-cycle"
    result = invoke("validate", a, b, "--format", "json")
    assert result.exit_code == 1
    doc = json.loads(result.output)  # one document: json.loads refuses two
    assert [d["root"] for d in doc["directories"]] == [str(a), str(b)]
    assert doc["valid"] is False and doc["errors"] == sum(d["errors"] for d in doc["directories"]) >= 1
    assert {i["root"] for i in doc["issues"] if i["code"] == "E041"} == {str(b)}


def test_two_directories_print_one_sarif_log() -> None:
    a, b = EXAMPLES[0], ROOT / "tests" / "broken" / "E041-goto-cycle"
    log = _sarif(a, b)
    _valid(log)
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in log["runs"][0]["results"]}
    assert any(uri.startswith(b.as_posix()) for uri in uris)
