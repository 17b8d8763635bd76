"""Server-side template injection: hostile Jinja in a Template document is refused, by
``flowctl validate`` (a code and the position of the name) or by the sandbox when it renders; the
same text in a record's VALUES is data, printed as written and never evaluated — through the HTTP
API and the daemon's engine, through ``flowctl dry-run``, and when an action copies it into
another field that a later template prints (no second-order evaluation).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from flowctl.spec.config import load_bundle_from_files
from flowctl.spec.templating import TemplateError, compile_template
from tests.reliability.conftest import MakeDaemon

# Reads of Python internals: validate names them (E051 at the name) and the sandbox refuses them.
INTERNALS = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ().__class__.__bases__[0].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ joiner.__init__.__globals__.__builtins__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ self.__dict__ }}",
    "{{ lipsum.__globals__['os'] }}",
    "{{ request.application.__globals__.__builtins__.__import__('os') }}",
    "{{ ''|attr('__class__') }}",
    "{{ (record|attr('__class__')).__base__ }}",
    "{{ record['__class__'] }}",
    "{{ record.full_name.__class__ }}",
    "{{ '%s'|format(record.__class__) }}",
    "{% set x = ''.__class__ %}{{ x }}",
    "{% for c in ''.__class__.__mro__ %}{{ c }}{% endfor %}",
]
# Refused by the sandbox at render: names it does not define, format-string attribute tricks,
# template loading, and resource bombs (memory or CPU).
AT_RENDER = [
    "{{ config }}",
    "{{ config.items() }}",
    "{{ request }}",
    "{{ lipsum }}",
    "{{ getattr }}",
    "{{ __builtins__ }}",
    "{{ '{0.__class__}'.format(record) }}",
    "{{ '{0.__class__.__mro__}'.format('') }}",
    "{{ '{x.__init__.__globals__}'.format_map({'x': cycler}) }}",
    "{{ record.update({'full_name': 'x'}) }}",
    "{{ record.pop('full_name') }}",
    "{% include '/etc/passwd' %}",
    "{% import 'os' as os %}",
    "{% extends '/etc/passwd' %}",
    "{{ range(10**9)|list }}",
    "{{ 'a' * 10**9 }}",
    "{{ [1] * 10**9 }}",
    "{{ 10**100000 }}",
    "{{ (2**1000)**1000 }}",
    "{{ 'x'|center(10**9) }}",
    "{{ 'x'|indent(10**9) }}",
    "{{ 'x'|wordwrap(10**9) }}",
    "{{ '%0999999999d' % 1 }}",
    "{{ '%*d' % (10**9, 1) }}",
    "{{ '%0999999999d'|format(1) }}",
    "{{ '{:>999999999}'.format(1) }}",
    "{{ '{:{}}'.format(1, 10**9) }}",
    "{{ 'x'.ljust(10**9) }}",
    "{{ 'x\\t'.expandtabs(10**8) }}",
    "{{ (1).to_bytes(10**9, 'big') }}",
    "{{ ('a' * 100000).replace('a', 'a' * 100) }}",
    "{{ ('a' * 100000)|replace('a', 'aa' * 50000) }}",
    "{{ [1]|batch(10**9, 0)|list }}",
    "{{ [1]|slice(10**9)|list }}",
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{% set s = 'x' * 99999 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}",
    "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
]
# In a record's value all of these are plain text.
VALUES = [
    "{{ 7*7 }}",
    "{{7*'7'}}",
    "${7*7}",
    "#{7*7}",
    "<%= 7*7 %>",
    "{% for i in range(3) %}x{% endfor %}",
    "{{ record.full_name }}",
    "{{ record }}",
    "{# a comment #}",
    "{% raw %}",
    "}}{{ 7*7 }}{{",
    "{{",
    *INTERNALS[:8],
    "{{ config }}",
    "{{ 'a' * 10**9 }}",
    "{{ range(10**9)|list }}",
    "Nguyễn {{ 7*7 }} Lan",
]
CONTEXT = {"record": {"object": "contact", "id": "1", "full_name": "Lan", "note": ""}}
_tried: dict[str, int] = {}


def count(kind: str, n: int = 1) -> None:
    _tried[kind] = _tried.get(kind, 0) + n


def template_doc(name: str, payload: str) -> str:
    return textwrap.dedent(f"""\
        apiVersion: flowctl/v1
        kind: Template
        metadata: {{name: {name}}}
        spec:
          channel: sms
          text: {json.dumps(payload)}
        """)


OBJECT = """\
apiVersion: flowctl/v1
kind: ObjectType
metadata: {name: contact}
spec:
  fields:
    full_name: {type: string}
    phone: {type: phone}
    note: {type: string}
"""


@pytest.mark.parametrize("payload", INTERNALS)
def test_reading_python_internals_is_refused_by_validate_at_the_name(payload: str) -> None:
    loaded = load_bundle_from_files({"contact.yaml": OBJECT, "t.yaml": template_doc("t", payload)})

    count("template_payloads")
    errors = [issue for issue in loaded.errors if issue.code == "E051"]
    assert errors, [str(issue) for issue in loaded.issues]
    issue = errors[0]
    assert (issue.file, issue.line) == ("t.yaml", 6)  # the text: line
    assert "sandbox" in issue.message
    with pytest.raises(TemplateError):  # and if it ran anyway, the sandbox refuses it
        compile_template(payload).render(CONTEXT)


@pytest.mark.parametrize("payload", AT_RENDER)
def test_what_validate_cannot_see_the_sandbox_refuses_at_render(payload: str) -> None:
    try:
        template = compile_template(payload)
    except TemplateError:
        count("template_payloads")
        return  # refused when compiled, which is what validate does
    context = {"record": dict(CONTEXT["record"]), "cycler": None}

    with pytest.raises(TemplateError):
        template.render(context)
    count("template_payloads")
    assert context["record"]["full_name"] == "Lan"  # nothing was changed on the way


def test_flowctl_validate_reports_each_with_a_code_and_a_position(tmp_path: Path) -> None:
    (tmp_path / "contact.yaml").write_text(OBJECT, encoding="utf-8")
    docs = [template_doc(f"t{i}", payload) for i, payload in enumerate(INTERNALS)]
    (tmp_path / "templates.yaml").write_text("---\n".join(docs), encoding="utf-8")

    result = subprocess.run(
        [sys.executable, "-m", "flowctl", "validate", str(tmp_path), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 1, result.stderr
    found = json.loads(result.stdout)
    issues = found["issues"] if isinstance(found, dict) else found
    lines = {issue["line"] for issue in issues if issue["code"] == "E051" and issue["file"] == "templates.yaml"}
    assert lines == {6 + 7 * i for i in range(len(INTERNALS))}  # one per template, on its text: line
    assert all(issue["col"] > 1 for issue in issues)


# --- record values ------------------------------------------------------------------------------

FLOW_FILES = {
    "flowctl.yaml": "apiVersion: flowctl/v1\nkind: Config\nmetadata: {name: ssti}\nspec: {timezone: UTC}\n",
    "contact.yaml": OBJECT,
    "templates.yaml": """\
        apiVersion: flowctl/v1
        kind: Template
        metadata: {name: greet}
        spec: {channel: sms, text: "Xin chào {{ record.full_name }}!"}
        ---
        apiVersion: flowctl/v1
        kind: Template
        metadata: {name: echo}
        spec: {channel: sms, text: "Ghi chú: {{ record.note }}"}
    """,
    "flow.yaml": """\
        apiVersion: flowctl/v1
        kind: Flow
        metadata: {name: welcome}
        spec:
          object: contact
          trigger: {on: created}
          start: greet
          nodes:
            greet: {type: send_sms, template: greet, to: "{{ record.phone }}", next: copy}
            copy: {type: update_fields, set: {note: "{{ record.full_name }}"}, next: echo}
            echo: {type: send_sms, template: echo, to: "{{ record.phone }}"}
    """,
}


def expected_texts(value: str) -> list[str]:
    return sorted([f"Xin chào {value}!", f"Ghi chú: {value}"])


def test_hostile_record_values_are_text_through_the_api_and_the_daemon(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon(FLOW_FILES)
    client = daemon.client
    for i, value in enumerate(VALUES):
        response = client.put(f"/v1/records/contact/{i}", json={"fields": {"full_name": value, "phone": "0901234567"}})
        assert response.status_code == 202, response.text
    daemon.settle()

    rows = daemon.store.list_outbox(limit=1000)
    for i, value in enumerate(VALUES):
        record = client.get(f"/v1/records/contact/{i}").json()
        assert record["fields"]["full_name"] == value
        assert record["fields"]["note"] == value  # copied by update_fields, not evaluated
        texts = sorted(row.payload["text"] for row in rows if row.record_id == str(i))
        assert texts == expected_texts(value), value
    assert not any("49" in row.payload["text"] and "7*7" not in row.payload["text"] for row in rows)
    count("values_via_api", len(VALUES))


def test_hostile_record_values_are_text_in_a_dry_run(tmp_path: Path) -> None:
    for name, text in FLOW_FILES.items():
        (tmp_path / name).write_text(textwrap.dedent(text), encoding="utf-8")
    steps = [
        {"create": {"object": "contact", "id": str(i), "fields": {"full_name": v, "phone": "0901234567"}}}
        for i, v in enumerate(VALUES)
    ]
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"now": "2026-03-01T09:00:00+07:00", "steps": steps}), encoding="utf-8")

    result = subprocess.run(
        [sys.executable, "-m", "flowctl", "dry-run", str(tmp_path), "--event", str(event), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    assert data["errors"] == [] and data["problems"] == []
    for i, value in enumerate(VALUES):
        effects = [e for e in data["effects"] if e["id"] == str(i)]
        assert sorted(e["text"] for e in effects if e["action"] == "send_sms") == expected_texts(value), value
        assert [e["set"] for e in effects if e["action"] == "update_fields"] == [{"note": value}]
    count("values_via_dry_run", len(VALUES))


def test_figures(figures: Any) -> None:
    figures(injection_payloads=len(INTERNALS) + len(AT_RENDER), record_value_payloads=len(VALUES), **_tried)
    assert _tried or pytest.skip("run with the tests above")
