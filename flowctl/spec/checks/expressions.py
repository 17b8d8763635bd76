"""Every condition and template compiles in the engine's Jinja2 sandbox (E050, E051) and every
``record.X`` / ``before.X`` it reads is a field of the object type (E031).

Conditions: trigger, branch, wait and stage-rule ``if:``, care ``if:``. Templates: action
texts (``title``, ``description``, ``to``, ``text``, ``url``, ``set`` values, ``body`` leaves…),
``until`` of delays, Template documents, and channel and source mappings (compiled only: their
context is the message or the payload, not a record). A Template is checked against the object
type of every action that uses it. Literals compared with a field are checked too: an enum
value that does not exist or text compared with a number (W002), a stage no pipeline has (W003).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from itertools import pairwise
from typing import Any

import jinja2
from jinja2 import nodes

from flowctl.spec import model as m
from flowctl.spec import templating  # the sandbox, its filters and static helpers: the language's rules
from flowctl.spec.checks._common import (
    action_sites,
    field_names,
    has_key,
    hint_with,
    leaves,
    offset_span,
    stages_of,
    template_file,
    text_span,
    value_span,
)
from flowctl.spec.checks.references import written_object
from flowctl.spec.dependencies import needs_stages
from flowctl.spec.durations import DurationError, parse_duration
from flowctl.spec.issues import Issue, error, warning
from flowctl.spec.phones import phone_hint, phone_problem
from flowctl.spec.places import PathPart, Span, Where

ROOTS = ("record", "before")
#: What a template or condition about a record is given (engine/core.py ``context``, care adds ``occurrence``).
RECORD_NAMES = ("record", "before", "changed", "event", "now", "today", "owner", "occurrence", "linked", "saved")
NUMERIC = ("number", "integer", "money")


@dataclass(frozen=True, slots=True)
class Text:
    """One condition or template string and where it was written."""

    source: str
    expression: bool
    span: Span  # of the YAML value, or of the template file's first character
    object: str  # the object type its record.X names refer to; "" = not a record context
    what: str  # for messages: "the condition of flow 'x', node 'y'"
    in_file: bool = False  # the source is a whole file: offsets count from its start
    record: bool = False  # rendered for a record (its names are RECORD_NAMES) even without an object

    @property
    def names(self) -> tuple[str, ...] | None:
        """The names its context gives, when known."""
        return RECORD_NAMES if self.object or self.record else None

    def place(self, root: str, offset: int | None) -> Span:
        if self.in_file:
            return offset_span(self.span.file, self.source, offset)
        return text_span(root, self.span, self.source, offset)


# -------------------------------------------------------------------------------- collecting


def _at(where: Where, *keys: PathPart) -> Span:
    return value_span(where, *keys)


def _action_texts(action: m.Action, object_name: str, owner: str) -> Iterator[Text]:
    w = action.where
    for key in ("title", "description", "to", "cc", "bcc", "text", "url", "care_date", "layout"):
        value = getattr(action, key)
        if value:
            yield Text(value, False, _at(w, key), object_name, f"'{key}' of {owner}")
    if action.due and "{" in action.due:
        yield Text(action.due, False, _at(w, "due"), object_name, f"'due' of {owner}")
    if action.type in ("update_fields", "create_record"):
        for name, value in action.set.items():
            if isinstance(value, str) and value:
                yield Text(value, False, _at(w, "set", name), object_name, f"the value of '{name}' in {owner}")
    for path, value in leaves(action.body):
        if isinstance(value, str) and value:
            yield Text(value, False, _at(w, "body", *path), object_name, f"the body of {owner}")
    for name, value in action.headers.items():
        if value:
            yield Text(value, False, _at(w, "headers", name), object_name, f"header '{name}' of {owner}")
    for attachment in action.attach:
        if attachment.filename:
            span = _at(attachment.where, "filename")
            yield Text(attachment.filename, False, span, object_name, f"an attachment's filename in {owner}")
    for recipient in action.recipients:  # an address template in a ``to:`` list
        if recipient.kind == "address" and recipient.value:
            yield Text(recipient.value, False, value_span(recipient.where), object_name, f"a recipient of {owner}")


def texts(bundle: m.Bundle) -> Iterator[Text]:
    """Every condition and inline template of the bundle (not Template documents)."""
    for flow in bundle.flows.values():
        trigger = flow.trigger
        if trigger is not None and trigger.if_:
            yield Text(
                trigger.if_, True, _at(trigger.where, "if"), flow.object, f"the trigger condition of flow '{flow.name}'"
            )
        for node in flow.nodes.values():
            owner = f"flow '{flow.name}', node '{node.id}'"
            for branch in node.branches:
                if branch.if_ or has_key(branch.where, "if"):
                    yield Text(branch.if_, True, _at(branch.where, "if"), flow.object, f"a branch of {owner}")
            if node.if_:
                yield Text(node.if_, True, _at(node.where, "if"), flow.object, f"the condition of {owner}")
            if node.until:
                yield Text(node.until, False, _at(node.where, "until"), flow.object, f"'until' of {owner}")
    for pipeline in bundle.pipelines.values():
        for stage in pipeline.stages:
            for trigger in stage.triggers:
                if trigger.if_:
                    yield Text(
                        trigger.if_,
                        True,
                        _at(trigger.where, "if"),
                        pipeline.object,
                        f"a trigger condition of stage '{stage.id}' in pipeline '{pipeline.name}'",
                    )
            for rule in stage.rules:
                if rule.if_:
                    yield Text(
                        rule.if_,
                        True,
                        _at(rule.where, "if"),
                        pipeline.object,
                        f"the condition of rule '{rule.name}' in stage '{stage.id}'",
                    )
                if rule.delay_until:
                    yield Text(
                        rule.delay_until,
                        False,
                        _at(rule.where, "delay", "until"),
                        pipeline.object,
                        f"'until' of rule '{rule.name}' in stage '{stage.id}'",
                    )
    for care in bundle.care.values():
        if care.if_:
            yield Text(
                care.if_, True, _at(care.where, "if"), care.object, f"the condition of care process '{care.name}'"
            )
    for site in action_sites(bundle):
        yield from _action_texts(site.action, site.object, site.owner)
    for channel in bundle.channels.values():
        owner = f"channel '{channel.name}'"
        if channel.url:
            yield Text(channel.url, False, _at(channel.where, "url"), "", f"'url' of {owner}")
        for name, value in channel.headers.items():
            if value:
                yield Text(value, False, _at(channel.where, "headers", name), "", f"header '{name}' of {owner}")
        for path, value in leaves(channel.body):
            if isinstance(value, str) and value:
                yield Text(value, False, _at(channel.where, "body", *path), "", f"the body of {owner}")
    for source in bundle.sources.values():
        for path, value in leaves(source.map):
            if isinstance(value, str) and value:
                yield Text(value, False, _at(source.where, "map", *path), "", f"the map of source '{source.name}'")
        for path, value in leaves(source.fetch.params if source.fetch else {}):
            if isinstance(value, str) and value:
                where = _at(source.where, "fetch", "params", *path)
                yield Text(value, False, where, "", f"the fetch params of source '{source.name}'")


def template_texts(bundle: m.Bundle, template: m.Template) -> Iterator[Text]:
    """The subject, text and HTML of a Template, each from its YAML value or its file."""
    owner = f"template '{template.name}'"
    if template.subject:
        yield Text(template.subject, False, _at(template.where, "subject"), "", f"the subject of {owner}", record=True)
    for value, key, file_key in ((template.text, "text", "text_file"), (template.html, "html", "html_file")):
        if not value:
            continue
        file_name = getattr(template, file_key)
        path = template_file(bundle.root, template, file_name) if file_name else None
        if path is not None:
            yield Text(
                value, False, Span(path, 1, 1), "", f"{file_key} '{file_name}' of {owner}", in_file=True, record=True
            )
        else:
            yield Text(
                value,
                False,
                _at(template.where, file_key if file_name else key),
                "",
                f"the {key} of {owner}",
                record=True,
            )


# -------------------------------------------------------------------------------- checking


_NAMED = re.compile(r"No (?:filter|test) named '([^']+)'")


def _refine(source: str, message: str, offset: int | None) -> int | None:
    """Jinja2 reports lines only; an unknown filter or test can be pointed at by its name."""
    match = _NAMED.search(message)
    if match is None:
        return offset
    found = re.search(rf"\b{re.escape(match[1])}\b", source[offset or 0 :])
    return (offset or 0) + found.start() if found else offset


def _compile_issue(bundle: m.Bundle, text: Text) -> Issue | None:
    t = templating
    check = t.check_expression if text.expression else t.check_template
    problems = check(text.source, text.names)
    if not problems:
        return None
    problem = problems[0]
    offset = _refine(text.source, problem.message, getattr(problem, "offset", None))
    if text.expression:
        return error(
            "E050",
            f"{text.what} does not compile: {problem.message}",
            text.place(bundle.root, offset),
            "write a Jinja2 expression without braces, e.g. record.amount >= 1000 and record.segment == 'vip'",
        )
    hint = "check the {{ }} and {% %} pairs and the filter names (unaccent, money, date, phone and Jinja's own)"
    if "refuses Python internals" in problem.message or "is not a value templates are given" in problem.message:
        hint = (
            "read only the values a template is given "
            "(record, before, changed, event, now, today, owner, linked, saved)"
        )
    elif "the render would fail" in problem.message:
        hint = "templates are for short texts: build less, e.g. print fields rather than generated text"
    elif "cannot do" in problem.message or "is not available" in problem.message:
        hint = "templates only read values and print text"
    return error("E051", f"{text.what} does not compile: {problem.message}", text.place(bundle.root, offset), hint)


def _field_issues(bundle: m.Bundle, text: Text, object_name: str, via: str = "") -> Iterator[Issue]:
    obj = bundle.objects.get(object_name)
    if obj is None:
        return
    known = field_names(obj)
    t = templating
    seen: set[tuple[str, str]] = set()
    for root in ROOTS:
        if root not in text.source:
            continue
        try:
            refs = t.referenced_fields(text.source, expression=text.expression, root=root)
        except t.TemplateError:  # a text that does not parse is reported as E050/E051
            return
        for ref in refs:
            if ref.name in known or (root, ref.name) in seen:
                continue
            seen.add((root, ref.name))
            yield error(
                "E031",
                f"{text.what}{via} reads {root}.{ref.name}, but object type '{object_name}' has no field '{ref.name}'",
                text.place(bundle.root, ref.offset),
                hint_with(f"add '{ref.name}' to ObjectType '{object_name}' or fix the name", ref.name, obj.fields),
            )


def check_expressions(bundle: m.Bundle) -> Iterator[Issue]:
    """E050/E051 compile errors and E031 unknown fields in conditions and inline templates."""
    for text in texts(bundle):
        problem = _compile_issue(bundle, text)
        if problem is not None:
            yield problem
            continue
        if text.object:
            yield from _field_issues(bundle, text, text.object)
            yield from _literal_issues(bundle, text, text.object)
            yield from _merge_field_issues(bundle, text, text.object)


_MERGE_FIELD = re.compile(r"#([A-Za-z_][A-Za-z0-9_]*)")


def _merge_field_issues(bundle: m.Bundle, text: Text, object_name: str) -> Iterator[Issue]:
    """W005: an AMIS-style ``#FieldName`` merge field, which flowctl leaves as plain text.

    flowctl does not substitute ``#Field``: it would clash with literal text such as
    "Đơn #123" and render differently from what the author sees. A ``#word`` that names a field
    of the object type is almost certainly meant as one, so say how to write it.
    """
    if text.expression:
        return
    obj = bundle.objects.get(object_name)
    if obj is None:
        return
    for match in _MERGE_FIELD.finditer(text.source):
        name = match.group(1)
        if name in obj.fields and not text.source[match.end() :].lstrip().startswith("}}"):
            yield warning(
                "W005",
                f"{text.what} writes '#{name}', an AMIS-style merge field that flowctl leaves as plain text",
                text.place(bundle.root, match.start()),
                f"write {{{{ record.{name} }}}} to insert the field's value",
            )


def _template_users(bundle: m.Bundle) -> dict[str, list[tuple[str, str]]]:
    """Template name -> (object type, who uses it) for every action naming it, first use per type."""
    users: dict[str, list[tuple[str, str]]] = {}
    for site in action_sites(bundle):
        names = [site.action.template, *(a.template for a in site.action.attach)]
        for name in names:
            if not name:
                continue
            entries = users.setdefault(name, [])
            if all(obj != site.object for obj, _ in entries):
                entries.append((site.object, site.owner))
    return users


def check_templates(bundle: m.Bundle) -> Iterator[Issue]:
    """E051 for Template documents; E031 against the object type of each action using them."""
    users = _template_users(bundle)
    for template in bundle.templates.values():
        for text in template_texts(bundle, template):
            problem = _compile_issue(bundle, text)
            if problem is not None:
                yield problem
                continue
            for object_name, owner in users.get(template.name, []):
                yield from _field_issues(bundle, text, object_name, f" (used by {owner})")


# -------------------------------------------------------------------------------- literals


def _parse(source: str, expression: bool) -> nodes.Template | None:
    env = templating.environment()
    try:
        return env.parse("{{ (" + source + ") }}" if expression else source)
    except jinja2.TemplateError:
        return None


def _field_of(node: nodes.Node) -> str | None:
    if isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name) and node.node.name in ROOTS:
        return node.attr
    if (
        isinstance(node, nodes.Getitem)
        and isinstance(node.node, nodes.Name)
        and node.node.name in ROOTS
        and isinstance(node.arg, nodes.Const)
        and isinstance(node.arg.value, str)
    ):
        return node.arg.value
    return None


def _constants(node: nodes.Node) -> list[Any] | None:
    if isinstance(node, nodes.Const):
        return [node.value]
    if isinstance(node, nodes.List | nodes.Tuple):
        values = [i.value for i in node.items if isinstance(i, nodes.Const)]
        return values if len(values) == len(node.items) else None
    return None


def comparisons(source: str, expression: bool) -> Iterator[tuple[str, Any]]:
    """(field, literal) for every ``record.f == 'x'`` / ``!=`` / ``in [...]`` in the source."""
    tree = _parse(source, expression)
    if tree is None:
        return
    for compare in tree.find_all(nodes.Compare):
        operands = [compare.expr, *(op.expr for op in compare.ops)]
        for op, (left, right) in zip(compare.ops, pairwise(operands), strict=True):
            if op.op not in ("eq", "ne", "in", "notin"):
                continue
            pairs = [(left, right)] if op.op in ("in", "notin") else [(left, right), (right, left)]
            for field_node, value_node in pairs:
                name = _field_of(field_node)
                values = _constants(value_node)
                if name is None or values is None:
                    continue
                if op.op in ("eq", "ne") and not isinstance(value_node, nodes.Const):
                    continue
                for value in values:
                    yield name, value


def _literal_offset(source: str, value: str) -> int | None:
    for quote in ("'", '"'):
        found = source.find(f"{quote}{value}{quote}")
        if found >= 0:
            return found
    return None


def _literal_issues(bundle: m.Bundle, text: Text, object_name: str) -> Iterator[Issue]:
    obj = bundle.objects.get(object_name)
    if obj is None or ("==" not in text.source and "!=" not in text.source and " in " not in text.source):
        return
    stages = stages_of(bundle, object_name)
    seen: set[tuple[str, str]] = set()
    for name, value in comparisons(text.source, text.expression):
        if not isinstance(value, str) or (name, value) in seen:
            continue
        seen.add((name, value))
        span = text.place(bundle.root, _literal_offset(text.source, value))
        if name == "stage" and stages and value not in stages:
            yield warning(
                "W003",
                f"{text.what} compares record.stage with '{value}', which no pipeline of "
                f"'{object_name}' has as a stage, so the comparison never holds",
                span,
                hint_with("use a stage id of the object's pipelines", value, stages),
                needs=needs_stages(object_name),
            )
            continue
        spec = obj.fields.get(name)
        if spec is None:
            continue
        if spec.type == "enum" and spec.values and value not in spec.values:
            yield warning(
                "W002",
                f"{text.what} compares {name} with '{value}', which is not one of its values "
                f"({', '.join(spec.values)})",
                span,
                hint_with("use one of the enum's values", value, spec.values),
            )
        elif spec.type in (*NUMERIC, "boolean"):
            yield warning(
                "W002",
                f"{text.what} compares {spec.type} field '{name}' with the text '{value}', which is never equal",
                span,
                "compare with a number (1000) or true/false, without quotes",
            )


def _literal_problem(spec: m.FieldSpec, value: Any, region: str) -> str | None:
    """Why a literal cannot be stored in a field of this type (``is not a number``), or None;
    a phone number without +country code is read in ``region``."""
    if value is None or (isinstance(value, str) and ("{{" in value or "{%" in value)):
        return None
    kind = spec.type
    if kind in NUMERIC:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "is not a number"
        if kind == "integer" and isinstance(value, float) and not value.is_integer():
            return "is not a whole number"
    elif kind == "boolean" and not isinstance(value, bool):
        return "is not true or false"
    elif kind == "enum" and spec.values and str(value) not in spec.values:
        return f"is not one of its values ({', '.join(spec.values)})"
    elif kind in ("date", "datetime"):
        parse = date.fromisoformat if kind == "date" else datetime.fromisoformat
        try:
            parse(str(value))
        except ValueError:
            return f"is not an ISO {kind} (e.g. 2026-03-01)"
    elif kind == "phone" and phone_problem(str(value), region):
        return f"is not a phone number any numbering plan has (read in region {region})"
    return None


def check_set_values(bundle: m.Bundle) -> Iterator[Issue]:
    """W002: ``update_fields`` writes a literal the field's type cannot hold; E060 bad ``due``."""
    for site in action_sites(bundle):
        action = site.action
        if action.due and "{" not in action.due:
            try:
                parse_duration(action.due)
            except DurationError as exc:
                yield error(
                    "E060",
                    f"'due' of {site.owner}: {exc}",
                    value_span(action.where, "due"),
                    "write a duration (1d, 4h) or a date template ({{ record.due_date }})",
                )
        if action.type not in ("update_fields", "create_record"):
            continue
        obj = bundle.objects.get(written_object(bundle, site.object, action))
        if obj is None:
            continue
        for name, value in action.set.items():
            spec = obj.fields.get(name)
            problem = _literal_problem(spec, value, bundle.config.phone_region) if spec is not None else None
            if spec is None or problem is None:
                continue
            hint = f"write a value of type {spec.type}, or a template ({{{{ ... }}}}) that renders one"
            if spec.type == "enum":
                hint = hint_with("use one of the enum's values", str(value), spec.values)
            elif spec.type == "phone":
                hint = f"{phone_hint(bundle.config.phone_region)}, or a template that renders one"
            yield warning(
                "W002",
                f"{site.owner} sets {spec.type} field '{name}' to {value!r}, which {problem}",
                value_span(action.where, "set", name),
                hint,
            )
