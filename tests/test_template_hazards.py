"""validate flags what the sandbox would refuse, before anything renders (issue 13, item 16).

The corpus of tests/reliability/test_template_injection.py (reads of Python internals, names a
template is not given, format-string tricks, changing values, loading templates, resource bombs):
before this change ``validate`` flagged 18 of its 55 payloads, the rest only failed at render.
"""

from __future__ import annotations

import pytest

from flowctl.spec.config import load_bundle_from_files
from flowctl.spec.templating import check_expression, check_template
from tests.reliability.test_template_injection import AT_RENDER, INTERNALS, OBJECT, template_doc
from tests.test_template_limits import BOMBS

RECORD_NAMES = ("record", "before", "changed", "event", "now", "today", "owner", "occurrence")


@pytest.mark.parametrize("payload", INTERNALS + AT_RENDER)
def test_validate_flags_every_payload_of_the_injection_corpus(payload: str) -> None:
    loaded = load_bundle_from_files({"contact.yaml": OBJECT, "t.yaml": template_doc("t", payload)})
    errors = [issue for issue in loaded.errors if issue.file == "t.yaml"]
    assert [issue.code for issue in errors] == ["E051"], [str(issue) for issue in loaded.issues]
    assert errors[0].line == 6 and errors[0].col > 1
    assert errors[0].hint


@pytest.mark.parametrize("payload", BOMBS[:4])
def test_the_issues_memory_bombs_are_flagged_statically(payload: str) -> None:
    (problem, *_) = check_template(payload, RECORD_NAMES)
    assert "more than the sandbox allows (1,000,000 characters)" in problem.message


@pytest.mark.parametrize(
    "source",
    [
        "{{ record.full_name }} {{ before.stage }} {{ now }} {{ today }} {{ owner.name }} {{ changed|join }}",
        "{{ occurrence }} {{ event.kind }}",
        "{% for item in record.items %}{{ loop.index }}{{ item }}{% endfor %}",
        "{% set total = 3 %}{% for i in range(total) %}{{ i }}{% endfor %}",
        "{% macro row(x) %}{{ x }}{% endmacro %}{{ row(1) }}",
        "{% macro count(n) %}{% if n > 0 %}{{ count(n - 1) }}{% endif %}{% endmacro %}{{ count(3) }}",
        "{{ coupon if coupon is defined else '' }}",
        "{{ ('-' * 40) ~ '\\n' }}{{ '%5d'|format(3) }}{{ '{:>8}'.format('x') }}",
        "{{ record.note|replace('\\n', '<br>') }}",
        "{{ dict.fromkeys(['a', 'b'], 0) }}",
        "{{ range(1, 9, 0) }}{{ 1 ** -1 }}",
    ],
)
def test_ordinary_templates_are_not_flagged(source: str) -> None:
    assert check_template(source, RECORD_NAMES) == []


def test_names_are_checked_only_where_they_are_known() -> None:
    (problem,) = check_template("Hello {{ custmer.name }}", RECORD_NAMES)
    assert problem.message.startswith("'custmer' is not a value templates are given here (they get: before,")
    assert problem.offset == len("Hello {{ ")
    assert check_template("Hello {{ custmer.name }}") == []  # a channel body: its names vary
    assert check_expression("occurrence.date == today", RECORD_NAMES) == []


def test_a_hazard_is_reported_at_its_place() -> None:
    source = "Dear {{ record.name }},\n{{ 'x' * 10**9 }}"
    (problem,) = check_template(source, RECORD_NAMES)
    assert source[problem.offset] == "*"
    assert problem.message.startswith("repeating a value 1000000000 times would be more than the sandbox allows")
