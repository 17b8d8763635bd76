"""Templates cannot exhaust memory (issue 13, item 16): every string, list and output a template
builds is bounded, and going over fails with a TemplateLimitError that names the line and the
limit, quickly and in little memory, never a MemoryError or a giant string.

Memory is measured with tracemalloc (peak of Python allocations during the render), not time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from flowctl.spec.templating import TemplateError, TemplateLimitError, compile_expression, compile_template

#: Each would build a string or list of 10**9 or more items (or render one) without the limits.
BOMBS = [
    # the four
    "{{ (['a'*100000]*100000)|join }}",
    "{{ ('a'*100000)|join('b'*100000) }}",
    "{{ dict.fromkeys(range(100000), 'a'*100000) }}",
    "{% set s = 'a'*100000 %}" + "{% set s = s~s~s %}" * 7 + "{{ s|length }}",
    # the same ideas by other roads
    "{% set s = 'a'*100000 %}" + "{% set s = s+s+s %}" * 7 + "{{ s|length }}",
    "{% set l = ['a']*100000 %}" + "{% set l = l+l+l %}" * 7 + "{{ l|length }}",
    "{{ ['a'*100000]*100000 }}",
    "{{ (['a'*100000]*100000)|string|length }}",
    "{{ (['a'*100000]*100000)|tojson|length }}",
    "{{ (['a'*100000]*100000)|pprint|length }}",
    "{{ dict.fromkeys(range(100000), 'a'*100000)|string|length }}",
    "{{ ('b'*100000).join(['a'*100000]*100000)|length }}",
    "{{ ('%s' * 50000)|format(*(['a'*100000]*50000)) }}",
    "{{ ('%s' * 3) % ('a'*100000, 'a'*100000 ~ 'a'*100000 ~ 'a'*100000, ['a'*100000]*10) }}",
    "{{ ('{}' * 50000).format(*(['a'*100000]*50000)) }}",
    "{{ ('\\n' * 100000)|indent(100000) }}",
    "{{ ('a' * 100000).translate({97: 'b' * 100000}) }}",
    "{{ ([['a']*100000]*100000)|sum(start=[])|length }}",
    "{% for i in range(100000) %}{{ 'a' * 100000 }}{% endfor %}",
    "{% set b %}{% for i in range(100000) %}{{ 'a' * 100000 }}{% endfor %}{% endset %}{{ b|length }}",
    "{% macro m() %}{{ 'a' * 100000 }}{% endmacro %}{% for i in range(100000) %}{{ m() }}{% endfor %}",
    "{% set ns = namespace(s='a'*100000) %}{% for i in range(20) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"
    "{{ ns.s|length }}",
    "{% filter upper %}{% for i in range(100000) %}{{ 'a' * 100000 }}{% endfor %}{% endfilter %}",
    "{{ ('a' * 100000)|replace('a', 'b' * 100000)|length }}",
    "{{ (('a' * 100000)|center(1000000) ~ ('a' * 100000)|center(1000000))|length }}",
]

#: Budget of Python allocations for one refused render; the payloads ask for 10**9 characters and more.
PEAK_BYTES = 50 * 1024 * 1024


@pytest.mark.parametrize("source", BOMBS)
def test_a_template_bomb_is_refused_in_little_memory(source: str) -> None:
    template = compile_template(source)
    tracemalloc.start()
    try:
        with pytest.raises(TemplateLimitError) as caught:
            template.render({"record": {}})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < PEAK_BYTES, f"peak {peak / 2**20:.0f} MB"
    message = str(caught.value)
    assert "line 1" in message and "1,000,000" in message, message
    assert isinstance(caught.value, TemplateError)


def test_the_error_names_the_line_and_the_limit() -> None:
    source = "Dear {{ record.name }},\n\n{% set s = 'a' * 100000 %}\n{{ s|join(s) }}\n"
    with pytest.raises(TemplateLimitError) as caught:
        compile_template(source).render({"record": {"name": "Lan"}})
    error = caught.value
    assert error.line == 4
    assert error.limit == 1_000_000
    assert str(error).startswith("line 4: ")
    assert "more than 1,000,000 characters" in str(error)


def test_the_error_names_the_template() -> None:
    source = "{{ ('a'*100000)|join('b'*100000) }}"
    with pytest.raises(TemplateLimitError) as caught:
        compile_template(source).render({"record": {}}, name="template 'welcome', text")
    assert str(caught.value).startswith("template 'welcome', text, line 1: ")


def test_a_condition_is_bounded_too() -> None:
    with pytest.raises(TemplateLimitError):
        compile_expression("((['a'*100000]*100000)|join)|length > 3").evaluate({"record": {}})


@pytest.mark.parametrize(
    "source",
    [
        "{{ ['a', 'b', 'c']|join(', ') }}",
        "{% set s = 'ab' %}{% for i in range(10) %}{% set s = s ~ s %}{% endfor %}{{ s|length }}",
        "{{ ('x' * 1000)|center(2000)|length }}",
        "{{ dict.fromkeys(['a', 'b'], 1) }}",
        "{{ ([1, 2] + [3])|join }}",
        "{{ 'a' ~ 1 ~ none }}",
        "{% for i in range(1000) %}{{ i }},{% endfor %}",
    ],
)
def test_ordinary_templates_are_not_limited(source: str) -> None:
    compile_template(source).render({"record": {}})


def test_html_concatenation_still_escapes() -> None:
    html = compile_template("{{ '<b>' ~ record.name ~ '</b>'|safe }}", html=True)
    assert html.render({"record": {"name": "<i>Lan</i>"}}) == "&lt;b&gt;&lt;i&gt;Lan&lt;/i&gt;</b>"  # as Jinja does
    assert (
        compile_template("{{ ('<b>'|safe) ~ record.name }}", html=True).render({"record": {"name": "<i>"}})
        == "<b>&lt;i&gt;"
    )


def test_a_bomb_in_a_template_document_fails_the_action_with_its_name_and_line(tmp_path: Path) -> None:
    """Through the engine (flowctl dry-run): the action fails with the template's name, the line
    and the limit; the run goes on and the process does not run out of memory."""
    files = {
        "flowctl.yaml": "apiVersion: flowctl/v1\nkind: Config\nmetadata: {name: bomb}\nspec: {timezone: UTC}\n",
        "contact.yaml": "apiVersion: flowctl/v1\nkind: ObjectType\nmetadata: {name: contact}\n"
        "spec:\n  fields:\n    full_name: {type: string}\n    phone: {type: phone}\n",
        "templates.yaml": "apiVersion: flowctl/v1\nkind: Template\nmetadata: {name: bomb}\nspec:\n  channel: sms\n"
        "  text: |\n    Chào {{ record.full_name }}\n"
        "    {% set s = record.full_name ~ 'a' * 99990 %}{{ s|join(s) }}\n",
        "flow.yaml": "apiVersion: flowctl/v1\nkind: Flow\nmetadata: {name: welcome}\nspec:\n  object: contact\n"
        "  trigger: {on: created}\n  start: greet\n  nodes:\n"
        "    greet: {type: send_sms, template: bomb, to: '{{ record.phone }}'}\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    event = tmp_path / "event.json"
    event.write_text(
        json.dumps(
            {
                "now": "2026-03-01T09:00:00+07:00",
                "steps": [
                    {"create": {"object": "contact", "id": "1", "fields": {"full_name": "Lan", "phone": "0901234567"}}}
                ],
            }
        ),
        encoding="utf-8",
    )

    result = subprocess.run(
        [sys.executable, "-m", "flowctl", "dry-run", str(tmp_path), "--event", str(event), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert "MemoryError" not in result.stderr, result.stderr
    assert "template 'bomb', line 2: the text of join would be more than 1,000,000 characters" in result.stdout, (
        result.stdout[-3000:]
    )
