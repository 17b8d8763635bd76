from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowctl.spec.templating import (
    FieldRef,
    TemplateError,
    check_expression,
    check_template,
    compile_expression,
    compile_template,
    environment,
    money,
    referenced_fields,
    referenced_names,
)

RECORD = {
    "full_name": "Đặng Thị Ánh",
    "amount": 1_500_000,
    "segment": "vip",
    "phone": "0901 234 567",
    "birthday": date(1990, 3, 9),
    "company": {"name": "Nội Thất Hòa Phát"},
    "title": None,
}


def render(source: str, **record: object) -> str:
    return compile_template(source).render({"record": {**RECORD, **record}})


# --- rendering ----------------------------------------------------------------------------------


def test_renders_vietnamese_text() -> None:
    assert render("Chào {{ record.full_name }}!") == "Chào Đặng Thị Ánh!"


def test_unaccent_for_brandname_sms() -> None:
    assert render("{{ 'Chúc mừng sinh nhật Đặng' | unaccent }}") == "Chuc mung sinh nhat Dang"
    assert render("{{ record.full_name | unaccent }}") == "Dang Thi Anh"
    assert render("{{ 'ĐẶNG đường Ưu Ơn Ỹ' | unaccent }}") == "DANG duong Uu On Y"


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1500000 | money", "1.500.000 ₫"),
        ("0 | money", "0 ₫"),
        ("999 | money", "999 ₫"),
        ("-1500000 | money", "-1.500.000 ₫"),
        ("1500000.5 | money", "1.500.001 ₫"),
        ("'2500000' | money", "2.500.000 ₫"),
        ("record.amount | money('VND')", "1.500.000 VND"),
        ("1234567.891 | money('$', ',', 2)", "1,234,567.89 $"),
        ("1500000 | money('')", "1.500.000"),
    ],
)
def test_money(expression: str, expected: str) -> None:
    assert render("{{ " + expression + " }}") == expected


def test_money_accepts_decimal() -> None:
    assert render("{{ record.amount | money }}", amount=Decimal("12345.4")) == "12.345 ₫"


@pytest.mark.parametrize("value", ["'abc'", "[1]", "true"])
def test_money_refuses_non_numbers(value: str) -> None:
    with pytest.raises(TemplateError, match="money: expected a number"):
        render("{{ " + value + " | money }}")


@given(
    st.integers(min_value=-(10**20), max_value=10**20),
    st.sampled_from([".", ",", " ", ""]),
    st.sampled_from(["₫", "VND", ""]),
)
def test_money_formats_an_integer_as_its_decimal(value: int, sep: str, symbol: str) -> None:
    # integers take a shortcut past Decimal: the text must be the same, past the shortcut's bound too
    assert money(value, symbol, sep) == money(Decimal(value), symbol, sep)


def test_money_of_an_integer_too_large_still_says_so() -> None:
    with pytest.raises(ValueError, match="too large to format"):
        money(10**30)


def test_a_dict_key_reads_as_before_and_dict_methods_still_win() -> None:
    # record.title reads the key directly; a key named like a dict method is still the method
    # (Jinja's rule), and a missing key is still undefined
    assert render("{{ record.segment }}") == "vip"
    assert compile_template("{{ record.items is callable }}").render({"record": {"items": 1}}) == "True"
    assert compile_template("{{ record.nope is defined }}").render({"record": {}}) == "False"
    with pytest.raises(TemplateError, match="nope"):
        compile_template("{{ record.nope }}").render({"record": {}})


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("record.birthday | date", "09/03/1990"),
        ("'2026-03-29T08:05:09' | date('dd/mm/yyyy HH:mm')", "29/03/2026 08:05"),
        ("'2026-03-29T08:05:09' | date('dd/MM/yyyy HH:mm:ss')", "29/03/2026 08:05:09"),
        ("'2026-03-29T08:05:09' | date('HH:mm dd/mm/yy')", "08:05 29/03/26"),
        ("'2026-03-29' | date('Ngày dd tháng mm năm yyyy')", "Ngày 29 tháng 03 năm 2026"),
        ("'2026-03-29T08:05:00+07:00' | date('yyyy-mm-dd HH:mm')", "2026-03-29 08:05"),
        ("'2026-03-29' | date('%d.%m.%Y')", "29.03.2026"),
    ],
)
def test_date(expression: str, expected: str) -> None:
    assert render("{{ " + expression + " }}") == expected


def test_date_of_datetime_keeps_its_offset() -> None:
    moment = datetime(2026, 3, 29, 23, 30, tzinfo=timezone(timedelta(hours=7)))
    assert render("{{ record.at | date('dd/mm/yyyy HH:mm') }}", at=moment) == "29/03/2026 23:30"


def test_date_refuses_garbage() -> None:
    with pytest.raises(TemplateError, match="not an ISO date"):
        render("{{ 'next tuesday' | date }}")


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("record.phone | phone", "+84901234567"),
        ("'090-123-4567' | phone", "+84901234567"),
        ("'84901234567' | phone", "+84901234567"),
        ("'0084 901 234 567' | phone", "+84901234567"),
        ("'+84901234567' | phone('local')", "0901 234 567"),
        ("'0901.234.567' | phone('local')", "0901 234 567"),
        ("'(024) 3123 4567' | phone('local')", "024 3123 4567"),
        ("'+1 (415) 555-2671' | phone", "+14155552671"),
        ("'+1 415 555 2671' | phone('local')", "+14155552671"),
    ],
)
def test_phone(expression: str, expected: str) -> None:
    assert render("{{ " + expression + " }}") == expected


def test_phone_refuses_text() -> None:
    with pytest.raises(TemplateError, match="not a phone number"):
        render("{{ 'call me' | phone }}")


def test_null_field_renders_empty() -> None:
    assert render("[{{ record.title }}|{{ record.title | unaccent }}]") == "[|]"


def test_plain_text_and_trailing_newline_are_kept() -> None:
    assert render("Xin chào\n") == "Xin chào\n"
    assert render("Xin chào {{ record.segment }}\n") == "Xin chào vip\n"


def test_compiled_once_per_source() -> None:
    assert compile_template("Hi {{ record.x }}") is compile_template("Hi {{ record.x }}")
    assert compile_expression("record.x > 1") is compile_expression("record.x > 1")


# --- errors -------------------------------------------------------------------------------------


def test_missing_field_names_the_field() -> None:
    with pytest.raises(TemplateError, match="'record' has no field 'emial'") as caught:
        render("Gửi {{ record.emial }}")
    assert caught.value.source == "Gửi {{ record.emial }}"


def test_missing_nested_field_names_the_path() -> None:
    with pytest.raises(TemplateError, match=r"'record\.company' has no field 'nmae'"):
        render("{{ record.company.nmae }}")


def test_unknown_variable() -> None:
    with pytest.raises(TemplateError, match="'recrod' is undefined"):
        render("{{ recrod.full_name }}")


def test_missing_field_inside_a_filter_is_still_named() -> None:
    with pytest.raises(TemplateError, match="'record' has no field 'amout'"):
        render("{{ record.amout | money }}")


def test_runtime_errors_become_template_errors() -> None:
    with pytest.raises(TemplateError, match="division by zero"):
        render("{{ record.amount / 0 }}")


# --- sandbox ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ record.__class__ }}",
        "{{ record.company.__class__.__subclasses__() }}",
        "{% if record.__class__ %}x{% endif %}",
        "{{ 'x' * 1000000000 }}",
        "{{ 2 ** 100000000 }}",
    ],
)
def test_sandbox_refuses(source: str) -> None:
    with pytest.raises(TemplateError, match=r"unsafe|would be more than"):
        render(source)


def test_sandbox_refuses_mutation() -> None:
    with pytest.raises(TemplateError, match="unsafe"):
        render("{{ record.company.update({'name': 'x'}) }}")


def test_values_are_data_not_templates() -> None:
    assert render("{{ record.full_name }}", full_name="{{ 7*7 }}") == "{{ 7*7 }}"


def test_no_random_in_templates() -> None:
    assert "random" not in environment().filters
    assert "lipsum" not in environment().globals


# --- conditions ---------------------------------------------------------------------------------


def test_condition() -> None:
    condition = compile_expression("record.amount >= 1000 and record.segment == 'vip'")
    assert condition.evaluate({"record": RECORD}) is True
    assert condition.evaluate({"record": {**RECORD, "segment": "std"}}) is False


def test_condition_on_missing_field_fails_loudly() -> None:
    with pytest.raises(TemplateError, match="'record' has no field 'segmnet'"):
        compile_expression("record.segmnet == 'vip'").evaluate({"record": RECORD})
    with pytest.raises(TemplateError, match="'record' has no field 'segmnet'"):
        compile_expression("record.segmnet").evaluate({"record": RECORD})


def test_condition_with_before() -> None:
    condition = compile_expression("record.email and not before.email")
    assert condition.evaluate({"record": {"email": "a@b.vn"}, "before": {"email": None}}) is True


def test_condition_is_defined_test() -> None:
    assert compile_expression("record.nope is defined").evaluate({"record": RECORD}) is False


def test_condition_sandbox() -> None:
    with pytest.raises(TemplateError, match="unsafe"):
        compile_expression("record.__class__.__mro__").evaluate({"record": RECORD})


def test_compile_errors_raise_template_error() -> None:
    with pytest.raises(TemplateError):
        compile_template("{{ record.x ")
    with pytest.raises(TemplateError, match="missing 'and', 'or'"):
        compile_expression("record.x record.y")


# --- static checks ------------------------------------------------------------------------------


def test_check_template_ok() -> None:
    assert check_template("Chào {{ record.full_name | unaccent }}\n{% if record.vip %}VIP{% endif %}") == []


def test_check_template_reports_line_offset() -> None:
    source = "Chào {{ record.full_name }}\n{% if record.vip %}VIP"
    [problem] = check_template(source)
    assert "endif" in problem.message
    assert problem.offset == source.index("{% if")


def test_check_template_offset_on_third_line() -> None:
    source = "a\r\nb\n{{ x | }}"
    [problem] = check_template(source)
    assert problem.offset == source.index("{{")


def test_check_template_unknown_filter() -> None:
    [problem] = check_template("{{ record.amount | moneyy }}")
    assert "moneyy" in problem.message


def test_check_expression() -> None:
    assert check_expression("record.amount >= 1000 and record.segment == 'vip'") == []
    assert check_expression("record.amount >=") != []
    assert check_expression("") != []
    [problem] = check_expression("{{ record.amount > 1 }}")
    assert "without braces" in problem.message


def test_check_does_not_evaluate_huge_constants() -> None:
    assert check_template("{{ 9 ** 9 ** 9 ** 9 }}") == []


def test_referenced_fields_in_condition() -> None:
    source = "record.amount >= 1000 and record['segment'] == 'vip' and before.amount < 10"
    refs = referenced_fields(source, expression=True)
    assert refs == [
        FieldRef(name="amount", offset=source.index("amount")),
        FieldRef(name="segment", offset=source.index("segment")),
    ]
    assert [r.name for r in referenced_fields(source, expression=True, root="before")] == ["amount"]


def test_referenced_fields_in_template() -> None:
    source = (
        "Chào {{ record.full_name | unaccent }},\n"
        "{% for line in record.lines %}{{ line.sku }} {{ loop.index }}{% endfor %}\n"
        "{% set c = record.company %}{{ c.name }} {{ record.get('note') }}\n"
        "{% if record.emial %}{{ record.emial }}{% endif %}"
    )
    refs = referenced_fields(source, expression=False)
    assert [r.name for r in refs] == ["full_name", "lines", "company", "emial", "emial"]
    for ref in refs:
        assert source[ref.offset : ref.offset + len(ref.name)] == ref.name
    assert refs[3].offset < refs[4].offset


def test_referenced_fields_ignores_a_rebound_record() -> None:
    source = (
        "{% for record in record.children if record.active %}{{ record.name }}{% endfor %}"
        "{% macro card(record) %}{{ record.title }}{% endmacro %}"
        "{{ record.owner }}{% set record = {'x': 1} %}{{ record.x }}"
    )
    assert [r.name for r in referenced_fields(source, expression=False)] == ["children", "owner"]


def test_referenced_names() -> None:
    assert referenced_names("record.a and before.b and range(3)", expression=True) == {"record", "before"}
    source = "{% for x in items %}{{ x }}{% endfor %}{% set y = 1 %}{{ y }}{{ recrod.name }}"
    assert referenced_names(source, expression=False) == {"items", "recrod"}


def test_static_analysis_rejects_bad_syntax() -> None:
    with pytest.raises(TemplateError):
        referenced_fields("record.a ==", expression=True)
