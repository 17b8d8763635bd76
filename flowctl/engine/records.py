"""Check a requested record write against its object type before anything is stored.

The API answers 4xx with these problems and stores nothing: an unknown object type, an
unknown stage, a missing required field, a value of the wrong type, too many fields.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from flowctl.spec import model as m
from flowctl.spec.phones import DEFAULT_REGION, phone_problem

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _type_problem(spec: m.FieldSpec, value: Any, region: str = DEFAULT_REGION) -> str:
    """Why ``value`` does not fit ``spec`` ('' when it fits). None is always allowed here; a
    phone number without +country code is read in ``region`` (Config ``phone_region``)."""
    if value is None:
        return ""
    t = spec.type
    if t in ("string", "text", "user", "url"):
        return "" if isinstance(value, str) else f"must be text, not {type(value).__name__}"
    if t in ("number", "money"):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return "" if ok else f"must be a number, not {type(value).__name__}"
    if t == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
        return "" if ok else f"must be an integer, not {type(value).__name__}"
    if t == "boolean":
        return "" if isinstance(value, bool) else "must be true or false"
    if t == "date":
        if isinstance(value, str):
            try:
                date.fromisoformat(value)
            except ValueError:
                return f"'{value}' is not a date (write YYYY-MM-DD)"
            return ""
        return "must be a date as text (YYYY-MM-DD)"
    if t == "datetime":
        if isinstance(value, str):
            try:
                datetime.fromisoformat(value)
            except ValueError:
                return f"'{value}' is not a date and time (ISO 8601)"
            return ""
        return "must be an ISO 8601 date and time"
    if t == "email":
        return "" if isinstance(value, str) and _EMAIL.match(value) else f"'{value}' is not an email address"
    if t == "phone":
        return phone_problem(value, region)
    if t == "enum":
        return "" if value in spec.values else f"'{value}' is not one of: {', '.join(spec.values)}"
    if t == "ref":
        return "" if isinstance(value, str | int) and not isinstance(value, bool) else "must be a record id"
    if t == "list":
        return "" if isinstance(value, list) else "must be a list"
    return ""


#: Field types whose values are text: a number written for one is the text as written.
TEXT_TYPES = ("string", "text", "user", "url", "email", "phone", "enum")


def typed_value(spec: m.FieldSpec, value: Any, written: str = "", region: str = DEFAULT_REGION) -> tuple[Any, str]:
    """``value`` as ``spec``'s type stores it, and why it cannot be ('' when it can): how a test
    types the records it seeds (YAML says ``7`` or ``"7"``, the field says which it is).

    A number for a text field becomes its text, as ``written`` when given (``phone: 0944000111``
    keeps its leading zero); text for a number, integer or boolean field is read as one; a
    boolean for a text field is refused (``status: true`` is not ``"true"``).
    """
    if value is None:
        return None, ""
    t = spec.type
    if t in TEXT_TYPES:
        if isinstance(value, bool):
            return value, f"{str(value).lower()} is not text; write it in quotes if it is meant as text"
        if isinstance(value, int | float):
            value = written or str(value)
    elif t in ("number", "money", "integer") and not isinstance(value, bool):
        if isinstance(value, str):
            number = _number(value.strip())
            if number is None:
                return value, f"'{value}' is not {'a whole number' if t == 'integer' else 'a number'}"
            value = number
        if t == "integer" and isinstance(value, float):
            if not value.is_integer():
                return value, f"{value} is not a whole number"
            value = int(value)
    elif t == "boolean" and isinstance(value, str):
        word = value.strip().lower()
        if word not in ("true", "false", "yes", "no"):
            return value, f"'{value}' is not true or false"
        value = word in ("true", "yes")
    return value, _type_problem(spec, value, region)


def _number(text: str) -> int | float | None:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return None


def typed_fields(
    bundle: m.Bundle, object: str, fields: Mapping[str, Any], written: Mapping[str, str]
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """``fields`` typed by ``object``'s field types (see ``typed_value``), and (field, problem)
    for each value that cannot be. Built-in fields (``owner``) are text."""
    obj = bundle.objects.get(object)
    out: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    for name, value in fields.items():
        spec = obj.fields.get(name) if obj is not None else None
        if spec is None:
            if name not in m.BUILTIN_FIELDS:
                problems.append((name, f"field '{name}' is not defined on {object}"))
                continue
            spec = m.FieldSpec(name=name)
        typed, why = typed_value(spec, value, written.get(name, ""), bundle.config.phone_region)
        if why:
            problems.append((name, f"field '{name}' ({spec.type}) {why}"))
        out[name] = typed
    return out, problems


def check_fields(bundle: m.Bundle, object: str, fields: Mapping[str, Any], *, complete: bool) -> list[str]:
    """Problems of ``fields`` for ``object``; ``complete`` (a put) also checks required fields."""
    obj = bundle.objects.get(object)
    if obj is None:
        known = ", ".join(sorted(bundle.objects)) or "none are defined"
        return [f"unknown object type '{object}' (known: {known})"]
    limit = bundle.config.limits.fields_per_record
    if len(fields) > limit:  # alone: one line, not a problem per field of a huge request
        return [
            f"{len(fields)} fields for one {object} record, more than the limit of {limit}; send fewer "
            "fields or raise limits.fields_per_record in flowctl.yaml"
        ]
    problems = []
    for name, value in fields.items():
        spec = obj.fields.get(name)
        if spec is None:
            if name in m.BUILTIN_FIELDS:
                continue
            problems.append(f"field '{name}' is not defined on {object}")
            continue
        why = _type_problem(spec, value, bundle.config.phone_region)
        if why:
            problems.append(f"field '{name}' ({spec.type}) {why}")
    if complete:
        for name, spec in obj.fields.items():
            if spec.required and fields.get(name) in (None, ""):
                problems.append(f"field '{name}' is required on {object}")
    return problems


def check_stage(bundle: m.Bundle, object: str, stage: str, pipeline: str = "") -> list[str]:
    """Problems of placing a record of ``object`` in ``stage`` (of ``pipeline``, when named)."""
    if pipeline:
        problem = pipeline_problem(bundle, object, pipeline)
        if problem:
            return [problem]
        found = bundle.pipelines[pipeline]
        return [no_stage(found, stage)] if stage and found.stage(stage) is None else []
    if not stage:
        return []
    pipelines = bundle.pipelines_for(object)
    if not pipelines:
        return [f"{object} has no pipeline, so it has no stage '{stage}'"]
    if any(p.stage(stage) for p in pipelines):
        return []
    known = ", ".join(s.id for p in pipelines for s in p.stages)
    return [f"unknown stage '{stage}' for {object} (stages: {known})"]


def pipeline_problem(bundle: m.Bundle, object: str, pipeline: str) -> str:
    """Why records of ``object`` cannot be in ``pipeline`` ('' when they can)."""
    found = bundle.pipelines.get(pipeline)
    if found is not None and found.object == object:
        return ""
    known = ", ".join(sorted(p.name for p in bundle.pipelines_for(object))) or "none"
    if found is None:
        return f"unknown pipeline '{pipeline}' (pipelines of {object}: {known})"
    return f"pipeline {pipeline} is for {found.object} records, not {object} (pipelines of {object}: {known})"


def no_stage(pipeline: m.Pipeline, stage: str) -> str:
    known = ", ".join(s.id for s in pipeline.stages)
    return f"pipeline {pipeline.name} has no stage '{stage}' (stages: {known})"
