"""The one Jinja2 language of flowctl: sandboxed, bounded, strict, deterministic, with our filters.

Conditions (``if:``) are expressions without braces, text fields are templates. Both are compiled
once per distinct source string and cached, because the same few strings are rendered for every
record. Every failure a user can cause surfaces as :class:`TemplateError`; a render that would
build too much (memory) as its subclass :class:`TemplateLimitError`, naming the line and the limit.

The parts live in ``flowctl/spec/jinja/``: ``filters`` (unaccent, money, date, phone), ``sandbox``
(the environment and its limits), ``static`` (what validate reads without rendering).
"""

from __future__ import annotations

import functools
import types
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import jinja2

from flowctl.spec.jinja.errors import FieldRef, Problem, TemplateError, TemplateLimitError
from flowctl.spec.jinja.filters import FILTERS, format_date, money, phone, unaccent
from flowctl.spec.jinja.sandbox import (
    _RENDERING,
    MAX_TEXT,
    LimitExceeded,
    begin_render,
    end_render,
    environment,
    make_environment,
)
from flowctl.spec.jinja.static import (
    check_expression,
    check_template,
    referenced_fields,
    referenced_names,
    syntax_message,
    template_tree,
)

__all__ = [
    "FILTERS",
    "MAX_TEXT",
    "CompiledExpression",
    "CompiledTemplate",
    "FieldRef",
    "Problem",
    "TemplateError",
    "TemplateLimitError",
    "check_expression",
    "check_template",
    "compile_expression",
    "compile_template",
    "environment",
    "format_date",
    "make_environment",
    "money",
    "named",
    "phone",
    "referenced_fields",
    "referenced_names",
    "template_tree",
    "unaccent",
]

# RecursionError: a macro that calls itself; MemoryError: a last resort, should a road to a large
# value remain unbounded, so one bad template fails its render and not the whole daemon.
_RENDER_ERRORS = (
    jinja2.TemplateError,
    ArithmeticError,
    LookupError,
    TypeError,
    ValueError,
    RecursionError,
    MemoryError,
)


@dataclass(frozen=True, slots=True)
class CompiledTemplate:
    source: str
    _template: jinja2.Template | None = field(repr=False)  # None: plain text, no Jinja needed

    def render(self, context: Mapping[str, Any], *, name: str = "") -> str:
        """Render with ``context`` (e.g. ``{"record": {...}}``); raises :class:`TemplateError`.

        ``name`` (``template 'welcome', text``) starts the message of a :class:`TemplateLimitError`.
        """
        if self._template is None:
            return self.source
        tokens = begin_render(context)  # not a context manager: this runs for every message
        try:
            return self._template.render(context)
        except _RENDER_ERRORS as exc:
            raise _error(exc, self.source, name) from exc
        finally:
            end_render(tokens)


@dataclass(frozen=True, slots=True)
class CompiledExpression:
    source: str
    _expression: jinja2.environment.TemplateExpression = field(repr=False)

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        """The value of the expression; an undefined result is an error, not a falsy value."""
        token = _RENDERING.set(context)  # no budget: an expression neither loops nor writes
        try:
            result = self._expression(context)
            if isinstance(result, jinja2.Undefined):
                str(result)  # raises the undefined error with its message
            return result
        except _RENDER_ERRORS as exc:
            raise _error(exc, self.source, "") from exc
        finally:
            _RENDERING.reset(token)


def _error(exc: BaseException, source: str, name: str) -> TemplateError:
    if isinstance(exc, LimitExceeded | MemoryError):
        line = _template_line(exc.__traceback__)
        where = ", ".join(part for part in (name, f"line {line}" if line else "") if part)
        if isinstance(exc, LimitExceeded):
            what, limit, unit = exc.message or "", exc.limit, exc.unit
        else:
            what, limit, unit = f"the render ran out of memory (limit {MAX_TEXT:,} characters)", MAX_TEXT, "characters"
        message = (f"{where}: {what}" if where else what) + (
            " (a fixed limit of the template sandbox: build less, e.g. print fields, not generated text)"
        )
        return TemplateLimitError(message, source=source, line=line, limit=limit, unit=unit)
    if isinstance(exc, jinja2.TemplateError):
        return TemplateError(exc.message or type(exc).__name__, source=source)
    return TemplateError(str(exc), source=source)


def _template_line(tb: types.TracebackType | None) -> int:
    """The template line the error was raised on: Jinja rewrites its frames to the template's lines."""
    line = 0
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_filename == "<template>" or "__jinja_template__" in tb.tb_frame.f_globals:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


@contextmanager
def named(name: str) -> Iterator[None]:
    """Renders inside start the message of a limit error with ``name`` (``template 'welcome'``)."""
    try:
        yield
    except TemplateLimitError as exc:
        raise TemplateLimitError(
            f"{name}, {exc.message}", source=exc.source, line=exc.line, limit=exc.limit, unit=exc.unit
        ) from exc


def _is_plain(source: str) -> bool:
    return "{{" not in source and "{%" not in source and "{#" not in source


@functools.lru_cache(maxsize=4096)
def compile_template(source: str, html: bool = False) -> CompiledTemplate:
    """Compile a template once (``html``: an HTML body, whose printed values are escaped);
    raises :class:`TemplateError` on a syntax error."""
    if _is_plain(source):
        return CompiledTemplate(source, None)
    try:
        template = environment(html).from_string(source)
        # Jinja keeps the globals as a ChainMap, which every render copies item by item; a plain
        # dict of the same values copies several times faster.
        template.globals = dict(template.globals)
        return CompiledTemplate(source, template)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(syntax_message(exc, source, expression=False), source=source) from exc


@functools.lru_cache(maxsize=4096)
def compile_expression(source: str) -> CompiledExpression:
    """Compile a condition (no braces) once; raises :class:`TemplateError` on a syntax error."""
    try:
        return CompiledExpression(source, environment().compile_expression(source, undefined_to_none=False))
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(syntax_message(exc, source, expression=True), source=source) from exc
