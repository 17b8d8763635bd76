"""``kind: Test`` scenarios: the format of DESIGN.md and the matching rules of ``expect``."""

from __future__ import annotations

import pytest

from flowctl.engine.scenario import run_scenarios
from tests.engine.conftest import make_bundle
from tests.engine.design_example import FILES as DESIGN

FLOW = """
apiVersion: flowctl/v1
kind: Flow
metadata: {name: hello}
spec:
  object: contact
  trigger: {on: created}
  start: sms
  nodes:
    sms: {type: send_sms, text: "Xin chao {{ record.full_name }}", to: "{{ record.phone }}", next: wait}
    wait: {type: delay, for: 1d, next: task}
    task: {type: create_task, title: "Gọi {{ record.full_name }}", assignee: {user: lan}, next: mail}
    mail: {type: send_email, template: hi, to: "{{ record.email }}"}
---
apiVersion: flowctl/v1
kind: Template
metadata: {name: hi}
spec: {channel: email, subject: "Hi {{ record.full_name }}", text: "."}
"""


def scenario(tmp_path, steps: str, records: str = "[]", now: str = "2026-03-02T09:00:00+07:00"):
    test = f"""
apiVersion: flowctl/v1
kind: Test
metadata: {{name: t}}
spec:
  now: "{now}"
  records: {records}
  steps:
{steps}
"""
    bundle = make_bundle(tmp_path, {"flows.yaml": FLOW, "tests/t.yaml": test})
    (result,) = run_scenarios(bundle)
    return result


CREATE = '    - create: {object: contact, id: 1, fields: {full_name: Lan, phone: "0901234567", email: l@example.com}}\n'


def test_the_design_example_runs_verbatim(tmp_path) -> None:
    bundle = make_bundle(tmp_path, DESIGN, base=False)
    (result,) = run_scenarios(bundle)
    assert result.passed, [f.message for f in result.failures]
    assert result.steps == 7


def test_effects_match_by_a_subset_of_keys_in_any_order(tmp_path) -> None:
    result = scenario(
        tmp_path,
        CREATE
        + """
    - advance: 1d
    - expect:
        effects:
          - {action: send_email, subject: Hi Lan}
          - {title: Gọi Lan, assignee: lan}
          - {action: send_sms, text: Xin chao Lan, to: "0901234567", segments: 1}
""",
    )
    assert result.passed, [f.message for f in result.failures]


def test_expect_covers_every_step_since_the_previous_expect(tmp_path) -> None:
    result = scenario(
        tmp_path,
        CREATE
        + """
    - advance: 1d
    - expect: {effects: [{action: send_sms}, {action: create_task}]}
    - advance: 1d
    - expect: {effects: []}
""",
    )
    assert result.passed, [f.message for f in result.failures]


def test_other_effects_may_be_present_but_empty_means_none(tmp_path) -> None:
    result = scenario(
        tmp_path,
        CREATE
        + """
    - expect: {effects: [{action: send_sms}]}
    - advance: 1d
    - expect: {effects: []}
""",
    )
    assert not result.passed
    (failure,) = result.failures
    assert failure.step == 4
    assert failure.message.startswith("expected no effects, got 2: {'action': 'create_task'")


def test_each_effect_matches_one_expectation_only(tmp_path) -> None:
    result = scenario(
        tmp_path,
        CREATE
        + """
    - expect: {effects: [{action: send_sms}, {action: send_sms}]}
""",
    )
    (failure,) = result.failures
    assert failure.message == (
        "no effect matches {'action': 'send_sms'}; got: none left (each effect matches one expectation)"
    )


def test_values_compare_as_text_so_yaml_numbers_match_ids(tmp_path) -> None:
    result = scenario(
        tmp_path,
        CREATE
        + """
    - expect: {effects: [{action: send_sms, id: 1, to: "0901234567", characters: "12"}]}
""",
    )
    assert result.passed, [f.message for f in result.failures]


def test_a_failure_shows_the_trace_that_led_to_it(tmp_path) -> None:
    result = scenario(
        tmp_path,
        CREATE
        + """
    - expect: {effects: [{action: send_sms, text: Xin chao Minh}]}
""",
    )
    (failure,) = result.failures
    assert (
        failure.message == "no effect matches {'action': 'send_sms', 'text': 'Xin chao Minh'}; got: "
        "{'action': 'send_sms', 'to': '0901234567', 'text': 'Xin chao Lan'}"
    )
    assert failure.place == "tests/t.yaml:10:7"
    lines = failure.trace.splitlines()
    assert lines[0].startswith("flow:hello on contact 1 [waiting]")
    assert "✉ sms: effect send_sms" in failure.trace
    assert "⏸ wait: wait until 2026-03-03T09:00:00+07:00" in failure.trace
    assert "├─ 2026-03-02 09:00:00 ? trigger: condition created → True" in failure.trace


def test_expect_record_checks_stage_owner_and_a_subset_of_fields(tmp_path) -> None:
    result = scenario(
        tmp_path,
        """
    - update: {object: contact, id: 1, fields: {note: hi, owner: minh}}
    - expect: {record: {object: contact, id: 1, fields: {note: hi, full_name: Lan}}}
    - expect: {record: {object: contact, id: 1, fields: {note: bye}}}
    - expect: {record: {object: contact, id: 2}}
""",
        records="[{object: contact, id: 1, fields: {full_name: Lan}}]",
    )
    assert [(f.step, f.message) for f in result.failures] == [
        (3, "contact 1: field note is 'hi', expected 'bye'"),
        (4, "contact 2 does not exist"),
    ]


def test_records_are_seeded_without_triggering_anything(tmp_path) -> None:
    result = scenario(
        tmp_path,
        """
    - expect: {effects: []}
""",
        records="[{object: contact, id: 1, fields: {full_name: Lan}}]",
    )
    assert result.passed


def test_advance_to_a_timestamp_fires_what_comes_due_in_order(tmp_path) -> None:
    result = scenario(
        tmp_path,
        CREATE
        + """
    - advance: {to: "2026-03-03T08:59:59+07:00"}
    - expect: {effects: [{action: send_sms}]}
    - advance: {to: "2026-03-03T09:00:00"}
    - expect: {effects: [{action: create_task}, {action: send_email}]}
""",
    )
    assert result.passed, [f.message for f in result.failures]


def test_a_refused_request_is_a_failure_with_the_reason(tmp_path) -> None:
    result = scenario(
        tmp_path,
        """
    - delete: {object: contact, id: 9}
    - expect: {effects: []}
""",
    )
    assert [(f.step, f.message) for f in result.failures] == [(1, "delete refused: contact 9 does not exist")]


def test_a_failure_lists_the_problems_since_the_previous_expect(tmp_path) -> None:
    flows = (
        FLOW
        + """
---
apiVersion: flowctl/v1
kind: Flow
metadata: {name: bad}
spec:
  object: contact
  trigger: {on: updated, changed: [note], if: "record.note > 1"}
  start: s
  nodes:
    s: {type: stop}
"""
    )
    test = """
apiVersion: flowctl/v1
kind: Test
metadata: {name: t}
spec:
  now: "2026-03-02T09:00:00+07:00"
  steps:
    - create: {object: contact, id: 1, fields: {full_name: Lan}}
    - update: {object: contact, id: 1, fields: {note: a}}
    - expect: {effects: [{action: send_sms}]}
    - update: {object: contact, id: 1, fields: {score: 5}}
    - update: {object: contact, id: 1, fields: {note: b}}
    - expect: {effects: [{action: webhook}]}
"""
    bundle = make_bundle(tmp_path, {"flows.yaml": flows, "tests/t.yaml": test})
    (result,) = run_scenarios(bundle)
    (failure,) = result.failures
    assert failure.step == 6
    problems = failure.trace.split("problems:\n", 1)[1].splitlines()
    assert problems == [
        "  condition_failed: flow bad trigger condition: '>' not supported between instances of 'str' and 'int'"
    ]


def test_a_request_the_api_would_refuse_fails_the_step(tmp_path) -> None:
    result = scenario(
        tmp_path,
        """
    - create: {object: contact, id: 1, fields: {score: many}}
    - update: {object: contact, id: 2, fields: {email: not-an-email}}
    - update: {object: contact, id: 2, fields: {phone: 0944000111}}
""",
    )
    assert [(f.step, f.message) for f in result.failures] == [
        (1, "create refused: field 'score' (integer) must be an integer, not str"),
        (2, "update refused: field 'email' (email) 'not-an-email' is not an email address"),
        (
            3,
            "update refused: field 'phone' (phone) '944000111' is not a phone number "
            '(YAML reads 0944000111 as the number 944000111: write "0944000111")',
        ),
    ]


# ------------------------------------------------------------------------------------ exactly


def test_exactly_fails_on_an_effect_not_listed_and_names_it(tmp_path) -> None:
    result = scenario(
        tmp_path,
        CREATE
        + """
    - advance: 1d
    - expect: {effects: [{action: send_sms}, {action: create_task}], exactly: true}
    - advance: 1d
    - expect: {effects: [], exactly: true}
""",
    )
    (failure,) = result.failures
    assert (failure.step, failure.place) == (3, "tests/t.yaml:11:7")
    assert failure.message == (
        "1 effect not listed (exactly: true): {'action': 'send_email', 'template': 'hi', "
        "'to': 'l@example.com', 'subject': 'Hi Lan', 'text': '.'}"
    )


def test_exactly_passes_when_every_effect_is_listed(tmp_path) -> None:
    result = scenario(
        tmp_path,
        CREATE
        + """
    - advance: 1d
    - expect: {effects: [{action: send_email}, {action: send_sms}, {action: create_task}], exactly: true}
""",
    )
    assert result.passed, [f.message for f in result.failures]


SKIP_INACTIVE = """
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


def test_a_negative_test_needs_exactly_to_see_the_effect_it_rules_out(tmp_path) -> None:
    def skip_inactive(status: str, exactly: str) -> list[str]:
        test = f"""
apiVersion: flowctl/v1
kind: Test
metadata: {{name: skip inactive patients}}
spec:
  now: "2026-03-02T09:00:00+07:00"
  records: [{{object: contact, id: 1, fields: {{phone: "0901000009", status: {status}}}}}]
  steps:
    - event: {{event: birthday, object: contact, id: 1}}
    - expect: {{effects: [{{action: update_fields}}]{exactly}}}
"""
        bundle = make_bundle(tmp_path, {"flows.yaml": SKIP_INACTIVE, "tests/t.yaml": test})
        (result,) = run_scenarios(bundle)
        return [f.message for f in result.failures]

    assert skip_inactive("inactive", ", exactly: true") == []
    assert skip_inactive("active", "") == []  # the subset match lets the SMS through
    assert skip_inactive("active", ", exactly: true") == [
        "1 effect not listed (exactly: true): {'action': 'send_sms', 'to': '0901000009', 'text': 'Happy birthday'}"
    ]


# ------------------------------------------------------------------------------------ refused


PIPELINE = """
apiVersion: flowctl/v1
kind: Pipeline
metadata: {name: care}
spec:
  object: contact
  stages:
    - id: new
    - id: called
      fields: [note]
"""


def refusals(tmp_path, steps: str) -> list[tuple[int, str, str]]:
    test = f"""
apiVersion: flowctl/v1
kind: Test
metadata: {{name: t}}
spec:
  now: "2026-03-02T09:00:00+07:00"
  records: [{{object: contact, id: 1, fields: {{full_name: Lan}}}}]
  steps:
{steps}"""
    bundle = make_bundle(tmp_path, {"pipeline.yaml": PIPELINE, "tests/t.yaml": test})
    (result,) = run_scenarios(bundle)
    return [(f.step, f.place, f.message) for f in result.failures]


def test_expect_refused_asserts_the_previous_move_was_refused(tmp_path) -> None:
    assert (
        refusals(
            tmp_path,
            """
    - move: {object: contact, id: 1, stage: called}
    - expect: {refused: "required field note is empty", effects: [], record: {object: contact, id: 1, stage: new}}
    - delete: {object: contact, id: 9}
    - expect: {refused: true}
    - update: {object: contact, id: 1, fields: {note: called back}}
    - move: {object: contact, id: 1, stage: called}
    - expect: {record: {object: contact, id: 1, stage: called}}
""",
        )
        == []
    )


NOTE_EMPTY = "cannot move contact 1 into stage 'called': required field note is empty"


def test_a_refusal_that_is_not_expected_or_not_the_one_expected_fails(tmp_path) -> None:
    assert refusals(
        tmp_path,
        """
    - move: {object: contact, id: 1, stage: called}
    - expect: {effects: []}
    - move: {object: contact, id: 1, stage: called}
    - expect: {refused: stage does not exist}
    - move: {object: contact, id: 1, stage: new}
    - expect: {refused: true}
    - advance: 1d
    - expect: {refused: true}
    - move: {object: contact, id: 1, stage: called}
""",
    ) == [
        (1, "tests/t.yaml:9:7", f"move refused: {NOTE_EMPTY}"),
        (
            4,
            "tests/t.yaml:12:7",
            f"the move was refused with \"{NOTE_EMPTY}\", not with a reason containing 'stage does not exist'",
        ),
        (6, "tests/t.yaml:14:7", "expected step 5 (move) to be refused; it was done"),
        (
            8,
            "tests/t.yaml:16:7",
            "refused: needs a create, update, delete, restore or move step just before it, not advance",
        ),
        (9, "tests/t.yaml:17:7", f"move refused: {NOTE_EMPTY}"),
    ]


# ------------------------------------------------------------------------------------ seeds


SEND = """
apiVersion: flowctl/v1
kind: Flow
metadata: {name: send}
spec:
  object: contact
  trigger: {on: event, event: go}
  start: high
  nodes:
    high: {type: branch, branches: [{if: "record.score > 5", next: sms}]}
    sms: {type: send_sms, text: "{{ record.full_name }} {{ record.due_date }}", to: "{{ record.phone }}"}
"""


def seeds(tmp_path, fields: str) -> tuple[list[tuple[int, str, str]], int]:
    test = f"""
apiVersion: flowctl/v1
kind: Test
metadata: {{name: t}}
spec:
  now: "2026-03-02T09:00:00+07:00"
  records:
    - {{object: contact, id: 1, fields: {fields}}}
  steps:
    - event: {{event: go, object: contact, id: 1}}
    - expect: {{effects: [{{action: send_sms, to: "0944000111", text: "12 2026-03-05"}}], exactly: true}}
"""
    bundle = make_bundle(tmp_path, {"flows.yaml": SEND, "tests/t.yaml": test})
    (result,) = run_scenarios(bundle)
    return [(f.step, f.place, f.message) for f in result.failures], result.steps


def test_seeded_fields_are_typed_by_the_object_and_a_phone_keeps_its_leading_zero(tmp_path) -> None:
    assert seeds(tmp_path, '{phone: 0944000111, score: "7", full_name: 12, due_date: "2026-03-05"}') == ([], 2)


def test_a_seeded_value_that_is_not_of_its_fields_type_is_rejected_at_its_place(tmp_path) -> None:
    failures, steps = seeds(
        tmp_path, "{phone: 0944000111, score: many, email: nope, due_date: 2026-13-05, status: true}"
    )
    assert steps == 0  # nothing runs on records that are not what the author meant
    assert failures == [
        (0, "tests/t.yaml:7:67", "contact 1: field 'score' (integer) 'many' is not a whole number"),
        (0, "tests/t.yaml:7:80", "contact 1: field 'email' (email) 'nope' is not an email address"),
        (0, "tests/t.yaml:7:96", "contact 1: field 'due_date' (date) '2026-13-05' is not a date (write YYYY-MM-DD)"),
        (
            0,
            "tests/t.yaml:7:116",
            "contact 1: field 'status' (enum) true is not text; write it in quotes if it is meant as text",
        ),
    ]


@pytest.mark.parametrize("phone", ["123456", "01686123456"])
def test_a_seeded_phone_no_numbering_plan_has_is_rejected(tmp_path, phone: str) -> None:
    failures, steps = seeds(tmp_path, f'{{phone: "{phone}"}}')
    assert steps == 0
    ((step, place, message),) = failures
    assert (step, place) == (0, "tests/t.yaml:7:48")  # at the value
    assert message.startswith(f"contact 1: field 'phone' (phone) '{phone}' is not a phone number")
    assert "e.g. 0912345678" in message


def test_a_scenario_deletes_and_restores_a_record_and_a_restore_of_a_live_one_is_refused(tmp_path) -> None:
    result = scenario(
        tmp_path,
        CREATE
        + """
    - delete: {object: contact, id: 1}
    - expect: {record: {object: contact, id: 1, deleted: true}}
    - restore: {object: contact, id: 1}
    - expect: {effects: [], record: {object: contact, id: 1, deleted: false, fields: {full_name: Lan}}}
    - restore: {object: contact, id: 1}
    - expect: {refused: only a deleted record is restored}
""",
    )
    assert result.passed, [f.message for f in result.failures]  # no SMS again: a restore is no creation
