"""Helpers shared by the checks: places of values, the actions of a bundle, name suggestions.

Checks point at the *value* that is wrong (``template: welcom`` → the ``welcom``), falling back
to its key, then to the nearest ancestor the loader recorded. For an error inside a string
(``record.X`` in a condition, a Jinja2 syntax error) ``text_span`` goes further and re-reads the
source line to turn an offset in the string into the column where the author typed it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowctl.spec import model as m
from flowctl.spec.loader import VALUE
from flowctl.spec.places import PathPart, Span, Where


def value_span(where: Where, *keys: PathPart) -> Span:
    """The span of the value under ``keys``; else of its key; else of the nearest ancestor."""
    return where.at(*keys, VALUE)


def item_span(where: Where, key: str, index: int) -> Span:
    """The span of item ``index`` of the list under ``key`` (or of the value if it is a scalar)."""
    span = where.marks.get((*where.path, key, index))
    return span if span is not None else value_span(where, key)


def name_span(doc: m.Document) -> Span:
    """The span of a document's ``metadata.name`` value."""
    return Where(doc.where.file, (), doc.where.marks).at("metadata", "name", VALUE)


def has_key(where: Where, *keys: PathPart) -> bool:
    return (*where.path, *keys) in where.marks


def suggest(name: str, options: Iterable[str]) -> str:
    """``did you mean 'x'?`` or, for a short list, the list itself; '' when nothing helps."""
    choices = sorted(set(options))
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    if not choices:
        return ""
    shown = ", ".join(choices[:12]) + (", …" if len(choices) > 12 else "")
    return f"known: {shown}"


def hint_with(base: str, name: str, options: Iterable[str]) -> str:
    """``base`` followed by a suggestion for ``name`` among ``options``."""
    extra = suggest(name, options)
    if not extra:
        return base
    return f"{base} ({extra})" if extra.startswith("did") else f"{base}; {extra}"


# -------------------------------------------------------------------------------- strings


def _read_lines(path: Path) -> list[str] | None:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def text_span(root: str, span: Span, text: str, offset: int | None) -> Span:
    """Where character ``offset`` of the scalar ``text`` (which starts at ``span``) is in its file.

    Handles plain and quoted one-line scalars and literal (``|``) blocks by re-reading the
    source line and checking that the text really is there; anything else (escapes, folded
    scalars, files that changed) falls back to the start of the value.
    """
    if offset is None or offset < 0 or offset > len(text) or span.line < 1:
        return span
    lines = _read_lines(Path(root) / span.file)
    if lines is None or span.line > len(lines):
        return span
    line = lines[span.line - 1]
    start = span.col - 1
    if start >= len(line):
        return span
    prefix = text[:offset]
    lead = line[start]
    if lead in "\"'":
        if "\n" not in prefix and line[start + 1 : start + 1 + len(prefix)] == prefix:
            return Span(span.file, span.line, span.col + 1 + offset)
        return span
    if lead == "|":
        row = prefix.count("\n")
        text_line = text.split("\n")[row]
        index = span.line + row  # 0-based index of the content line: the block starts below
        if index >= len(lines):
            return span
        source = lines[index]
        if text_line and not source.endswith(text_line):
            return span
        indent = len(source) - len(text_line)
        column = offset - (prefix.rfind("\n") + 1)
        return Span(span.file, index + 1, indent + column + 1)
    if lead == ">":
        return span
    if "\n" not in prefix and line[start : start + len(prefix)] == prefix:
        return Span(span.file, span.line, span.col + offset)
    return span


def offset_span(file: str, text: str, offset: int | None) -> Span:
    """Line and column of ``offset`` in the whole text of ``file`` (a template file)."""
    if offset is None or offset < 0:
        return Span(file, 1, 1)
    offset = min(offset, len(text))
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return Span(file, line, col)


def template_file(root: str, template: m.Template, name: str) -> str | None:
    """The path (relative to ``root``) of a template's ``*_file``, found as the builder finds it."""
    base = Path(root)
    doc_dir = (base / template.where.file).parent
    for path in (doc_dir / name, base / name, base / "templates" / name):
        try:
            if path.is_file():
                try:
                    return path.relative_to(base).as_posix()
                except ValueError:
                    return path.as_posix()
        except OSError:
            continue
    return None


def leaves(value: Any, path: tuple[PathPart, ...] = ()) -> Iterator[tuple[tuple[PathPart, ...], Any]]:
    """Every scalar of a JSON-like value with its path."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from leaves(item, (*path, str(key)))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from leaves(item, (*path, i))
    else:
        yield path, value


# -------------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class Site:
    """An action and the automation it belongs to."""

    action: m.Action
    object: str
    owner: str  # "flow 'x', node 'y'" — for messages
    doc: m.Document
    automation: tuple[str, ...]  # ("flow", name) or ("stage", pipeline, stage id) or ("care", name)


def action_sites(bundle: m.Bundle) -> Iterator[Site]:
    """Every action of every flow node, stage rule and care process, in document order."""
    for flow in bundle.flows.values():
        for node in flow.nodes.values():
            if node.action is not None:
                yield Site(node.action, flow.object, f"flow '{flow.name}', node '{node.id}'", flow, ("flow", flow.name))
    for pipeline in bundle.pipelines.values():
        for stage in pipeline.stages:
            for rule in stage.rules:
                yield Site(
                    rule.action,
                    pipeline.object,
                    f"pipeline '{pipeline.name}', stage '{stage.id}', rule '{rule.name}'",
                    pipeline,
                    ("stage", pipeline.name, stage.id),
                )
    for care in bundle.care.values():
        for i, action in enumerate(care.actions):
            yield Site(action, care.object, f"care process '{care.name}', action {i + 1}", care, ("care", care.name))


def field_names(obj: m.ObjectType) -> set[str]:
    return set(obj.fields) | set(m.BUILTIN_FIELDS)


def stages_of(bundle: m.Bundle, object_name: str, pipeline: str = "") -> set[str]:
    if pipeline:
        found = bundle.pipelines.get(pipeline)
        return {s.id for s in found.stages} if found else set()
    return {s.id for p in bundle.pipelines_for(object_name) for s in p.stages}
