"""``flowctl test``: runs the scenarios, prints failures with their traces, ends with the count."""

from __future__ import annotations

import json

from tests.cli.conftest import invoke
from tests.engine.conftest import make_bundle
from tests.engine.design_example import FILES as DESIGN


def test_every_example_passes(example) -> None:
    result = invoke("test", example)
    last = result.output.splitlines()[-1]
    assert result.exit_code == 0, result.output
    passed, failed = last.split(", ")
    assert failed == "0 failed" and int(passed.split()[0]) > 0


def test_the_demo_configuration_at_the_repository_root_validates_and_passes() -> None:
    """The README's run command serves this directory: it must stay valid and tested."""
    from tests.cli.conftest import ROOT

    assert invoke("validate", ROOT).exit_code == 0
    result = invoke("test", ROOT)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1].endswith(", 0 failed")


def test_the_design_example_passes(tmp_path) -> None:
    make_bundle(tmp_path, DESIGN, base=False)
    result = invoke("test", tmp_path)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "PASS  vip gets vip welcome  (tests/welcome.yaml, 7 steps)",
        "1 passed, 0 failed",
    ]


FAILING = """
apiVersion: flowctl/v1
kind: Test
metadata: {name: std gets vip welcome}
spec:
  now: "2026-03-01T09:00:00+07:00"
  records: [{object: user, id: 1, fields: {email: null, segment: std}}]
  steps:
    - update: {object: user, id: 1, fields: {email: lan@example.com}}
    - expect: {effects: [{action: send_email, template: welcome-vip}]}
"""


def test_a_failure_is_printed_with_its_place_and_trace_and_exit_1(tmp_path) -> None:
    make_bundle(tmp_path, {**DESIGN, "tests/failing.yaml": FAILING}, base=False)
    result = invoke("test", tmp_path)
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[-1] == "1 passed, 1 failed"
    fail = lines.index("FAIL  std gets vip welcome  (tests/failing.yaml)")
    assert lines[fail + 1] == (
        "  tests/failing.yaml:9:7: step 2: no effect matches {'action': 'send_email', 'template': 'welcome-vip'}; "
        "got: {'action': 'send_email', 'template': 'welcome', 'to': 'lan@example.com', 'subject': 'Chào mừng', "
        "'text': 'Xin chào lan@example.com'}"
    )
    assert lines[fail + 2] == "  trace:"
    trace = "\n".join(lines[fail + 3 :])
    assert "flow:welcome-new-email on user 1 [waiting]" in trace
    assert "? pick: condition record.segment == 'vip' [record.segment=\"std\"] → False" in trace
    assert "⇒ pick: decision default → std_mail" in trace


def test_k_selects_scenarios_by_name(tmp_path) -> None:
    make_bundle(tmp_path, {**DESIGN, "tests/failing.yaml": FAILING}, base=False)
    result = invoke("test", tmp_path, "-k", "vip gets vip welcome")
    assert (result.exit_code, result.output.splitlines()[-1]) == (0, "1 passed, 0 failed")
    result = invoke("test", tmp_path, "-k", "no such scenario")
    assert result.exit_code == 1
    assert result.output.splitlines()[-2:] == ["no scenario named no such scenario", "0 passed, 0 failed"]


def test_json_format(tmp_path) -> None:
    make_bundle(tmp_path, {**DESIGN, "tests/failing.yaml": FAILING}, base=False)
    result = invoke("test", tmp_path, "--format", "json")
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert (data["passed"], data["failed"]) == (1, 1)
    failing = next(s for s in data["scenarios"] if not s["passed"])
    assert failing["failures"][0]["place"] == "tests/failing.yaml:9:7"
    assert "flow:welcome-new-email" in failing["failures"][0]["trace"]


def test_an_invalid_directory_exits_1_with_its_errors(tmp_path) -> None:
    (tmp_path / "bad.yaml").write_text("apiVersion: flowctl/v1\nkind: Flow\nmetadata: {name: x}\nspec: {}\n")
    result = invoke("test", tmp_path)
    assert result.exit_code == 1
    assert "invalid: " in result.output and "E010" in result.output


def test_a_directory_without_scenarios_passes_with_zero(tmp_path) -> None:
    make_bundle(tmp_path, {k: v for k, v in DESIGN.items() if not k.startswith("tests/")}, base=False)
    result = invoke("test", tmp_path)
    assert (result.exit_code, result.output) == (0, "0 passed, 0 failed\n")


TWO_PIPELINES = """
apiVersion: flowctl/v1
kind: Pipeline
metadata: {name: new-customers}
spec:
  object: contact
  stages:
    - id: welcome
      rules:
        - {name: check in, delay: 1d, action: send_sms, text: "how was it?", to: "{{ record.phone }}"}
    - id: regular
---
apiVersion: flowctl/v1
kind: Pipeline
metadata: {name: recall}
spec:
  object: contact
  stages:
    - id: call_back
      fields: [note]
      rules:
        - {name: call, action: create_task, title: "call {{ record.full_name }}", assignee: {user: lan}}
"""

MOVES = """
apiVersion: flowctl/v1
kind: Test
metadata: {name: an unhappy customer moves to the recall pipeline}
spec:
  now: "2026-03-02T09:00:00+07:00"
  steps:
    - create: {object: contact, id: 2, pipeline: new-customers, fields: {full_name: Minh, note: unhappy}}
    - move: {object: contact, id: 2, stage: call_back, pipeline: recall}
    - expect:
        effects: [{action: create_task, title: call Minh}]
        record: {object: contact, id: 2, pipeline: recall, stage: call_back}
    - advance: 2d
    - expect: {effects: []}
"""


def test_a_move_step_into_another_pipeline_enters_it_and_cancels_the_old_stages_rules(tmp_path) -> None:
    make_bundle(tmp_path, {"pipelines.yaml": TWO_PIPELINES, "tests/moves.yaml": MOVES})
    result = invoke("test", tmp_path)
    assert result.output.splitlines() == [
        "PASS  an unhappy customer moves to the recall pipeline  (tests/moves.yaml, 5 steps)",
        "1 passed, 0 failed",
    ]
    assert result.exit_code == 0


GREET = """
apiVersion: flowctl/v1
kind: Flow
metadata: {name: greet}
spec:
  object: contact
  trigger: {on: event, event: birthday}
  start: note
  nodes:
    note: {type: update_fields, set: {note: greeted}, next: active}
    active: {type: branch, branches: [{if: "record.status == 'active'", next: sms}]}
    sms: {type: send_sms, text: "Happy birthday", to: "{{ record.phone }}"}
"""

SKIP_INACTIVE = """
apiVersion: flowctl/v1
kind: Test
metadata: {name: skip inactive patients}
spec:
  now: "2026-03-02T09:00:00+07:00"
  records:
    - {object: contact, id: 1, fields: {phone: 0944000111, status: STATUS}}
  steps:
    - event: {event: birthday, object: contact, id: 1}
    - expect: {effects: [{action: update_fields}], exactly: true}
"""


def test_exactly_fails_a_negative_test_on_the_effect_it_rules_out(tmp_path) -> None:
    make_bundle(tmp_path, {"flows.yaml": GREET, "tests/skip.yaml": SKIP_INACTIVE.replace("STATUS", "inactive")})
    assert invoke("test", tmp_path).output.splitlines()[-1] == "1 passed, 0 failed"
    make_bundle(tmp_path, {"flows.yaml": GREET, "tests/skip.yaml": SKIP_INACTIVE.replace("STATUS", "active")})
    result = invoke("test", tmp_path)
    assert result.exit_code == 1
    assert result.output.splitlines()[:2] == [
        "FAIL  skip inactive patients  (tests/skip.yaml)",
        "  tests/skip.yaml:10:7: step 2: 1 effect not listed (exactly: true): {'action': 'send_sms', "
        "'to': '0944000111', 'text': 'Happy birthday'}",
    ]  # the seeded phone keeps its leading zero


def test_a_seeded_value_not_of_its_fields_type_fails_the_scenario_at_the_value(tmp_path) -> None:
    make_bundle(tmp_path, {"flows.yaml": GREET, "tests/skip.yaml": SKIP_INACTIVE.replace("STATUS", "yes")})
    result = invoke("test", tmp_path, "--format", "json")
    assert result.exit_code == 1
    (scenario,) = json.loads(result.output)["scenarios"]
    assert (scenario["passed"], scenario["steps"]) == (False, 0)
    assert [(f["place"], f["message"]) for f in scenario["failures"]] == [
        ("tests/skip.yaml:7:68", "contact 1: field 'status' (enum) 'yes' is not one of: active, inactive")
    ]
