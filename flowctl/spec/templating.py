"""The one Jinja2 environment of flowctl: sandboxed, strict, deterministic, with our filters.

Conditions (``if:``) are expressions without braces, text fields are templates. Both are compiled
once per distinct source string and cached, because the same few strings are rendered for every
record. Every failure a user can cause surfaces as :class:`TemplateError`.
"""

from __future__ import annotations

import functools
import re
import string
import unicodedata
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.parser import Parser
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing

__all__ = [
    "CompiledExpression",
    "CompiledTemplate",
    "FieldRef",
    "Problem",
    "TemplateError",
    "check_expression",
    "check_template",
    "compile_expression",
    "compile_template",
    "environment",
    "make_environment",
    "referenced_fields",
    "referenced_names",
]


class TemplateError(Exception):
    """A template or condition failed to compile or render; ``message`` says why for a user."""

    def __init__(self, message: str, *, source: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.source = source

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, kw_only=True, slots=True)
class Problem:
    message: str
    offset: int = 0  # 0-based char offset into the source where known (Jinja gives lines only), else 0


@dataclass(frozen=True, kw_only=True, slots=True)
class FieldRef:
    name: str
    offset: int  # 0-based char offset of the field name in the source: source[offset:].startswith(name)


# --- filters ------------------------------------------------------------------------------------

_D_STROKE = str.maketrans({"đ": "d", "Đ": "D"})


@functools.lru_cache(maxsize=8192)
def _strip_char(char: str) -> str:
    """One character without its marks (cached: SMS texts reuse a small alphabet)."""
    if char.isascii():
        return char
    char = char.translate(_D_STROKE)
    kept = "".join(c for c in unicodedata.normalize("NFD", char) if not unicodedata.combining(c))
    return unicodedata.normalize("NFC", kept)


def unaccent(value: object) -> str:
    """Vietnamese (and other Latin) text to ASCII letters, so brandname SMS stay GSM-7."""
    if value is None:
        return ""
    text = str(value)
    if text.isascii():
        return text
    # đ/Đ are letters of their own, not d plus a mark, so NFD alone would keep them.
    return "".join(map(_strip_char, unicodedata.normalize("NFC", text)))


def money(value: object, symbol: str = "₫", sep: str = ".", decimals: int = 0) -> str:
    """``1500000`` -> ``1.500.000 ₫``; rounds half up to ``decimals`` (the đồng has no subunit)."""
    if value is None:
        return ""
    amount = _to_decimal(value)
    try:
        rounded = amount.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
    except InvalidOperation:
        raise ValueError(f"money: {value!r} is too large to format") from None
    whole, _, fraction = f"{abs(rounded):f}".partition(".")
    head = len(whole) % 3 or 3
    grouped = sep.join([whole[:head], *(whole[i : i + 3] for i in range(head, len(whole), 3))])
    text = ("-" if rounded < 0 else "") + grouped
    if fraction:
        text += ("," if sep == "." else ".") + fraction
    return f"{text} {symbol}" if symbol else text


def _to_decimal(value: object) -> Decimal:
    if isinstance(value, jinja2.Undefined):
        str(value)  # a StrictUndefined raises its own, better message here
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        raise ValueError(f"money: expected a number, got {type(value).__name__} {value!r}")
    try:
        amount = Decimal(value.strip() if isinstance(value, str) else str(value))
    except InvalidOperation:
        raise ValueError(f"money: expected a number, got {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"money: expected a finite number, got {value!r}")
    return amount


_DATE_TOKENS = re.compile(r"yyyy|yy|dd|MM|mm|HH|ss")


def format_date(value: object, pattern: str = "dd/mm/yyyy") -> str:
    """Format a date, datetime or ISO 8601 string with a pattern of the tokens below.

    Tokens: ``dd`` day 01-31, ``MM`` month 01-12, ``yyyy`` year, ``yy`` 2-digit year, ``HH`` hour
    00-23, ``ss`` seconds, and ``mm``: minutes when the token before it is ``HH`` or the token after
    it is ``ss`` (as in Excel: ``dd/mm/yyyy HH:mm``), otherwise month. Everything else is copied.
    A pattern containing ``%`` is a strftime pattern instead. Times are shown in the value's own
    offset (no conversion); a date shows 00 for time tokens.
    """
    if value is None or value == "":
        return ""
    moment = _to_date(value)
    if "%" in pattern:
        return moment.strftime(pattern)
    hour, minute, second = (getattr(moment, a, 0) for a in ("hour", "minute", "second"))
    values = {
        "yyyy": f"{moment.year:04d}",
        "yy": f"{moment.year % 100:02d}",
        "dd": f"{moment.day:02d}",
        "MM": f"{moment.month:02d}",
        "HH": f"{hour:02d}",
        "ss": f"{second:02d}",
    }
    tokens = list(_DATE_TOKENS.finditer(pattern))
    out: list[str] = []
    pos = 0
    for i, match in enumerate(tokens):
        token = match.group()
        if token == "mm":
            after_hour = i > 0 and tokens[i - 1].group() == "HH"
            before_second = i + 1 < len(tokens) and tokens[i + 1].group() == "ss"
            token = "minute" if after_hour or before_second else "MM"
        out += [pattern[pos : match.start()], f"{minute:02d}" if token == "minute" else values[token]]
        pos = match.end()
    out.append(pattern[pos:])
    return "".join(out)


def _to_date(value: object) -> date:
    if isinstance(value, date):
        return value
    if isinstance(value, jinja2.Undefined):
        str(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"date: {value!r} is not an ISO date like 2026-03-29") from None
    raise ValueError(f"date: expected a date, got {type(value).__name__} {value!r}")


_PHONE_PUNCTUATION = re.compile(r"[\s.\-()/]")
_DIGITS = re.compile(r"[0-9]+")


def phone(value: object, style: str = "e164", country: str = "84") -> str:
    """Normalise a phone number: ``e164`` (``+84901234567``) or ``local`` (``0901 234 567``).

    A number without ``+`` or ``00`` is national in ``country``. ``local`` groups Vietnamese numbers
    only; numbers of other countries come back in E.164.
    """
    if value is None:
        return ""
    if isinstance(value, jinja2.Undefined):
        str(value)
    text = _PHONE_PUNCTUATION.sub("", str(value))
    if not text:
        return ""
    code = country.lstrip("+")
    international = text.startswith(("+", "00"))
    digits = text[1:] if text.startswith("+") else text[2:] if international else text
    if not _DIGITS.fullmatch(digits):
        raise ValueError(f"phone: {value!r} is not a phone number")
    if not international and digits.startswith("0"):
        digits = code + digits[1:]  # drop the trunk prefix
    elif not international and not (digits.startswith(code) and len(digits) >= len(code) + 9):
        digits = code + digits
    if style == "e164":
        return "+" + digits
    if style != "local":
        raise ValueError(f"phone: unknown style {style!r}, use 'e164' or 'local'")
    if not digits.startswith("84"):
        return "+" + digits
    national = "0" + digits[2:]
    if len(national) == 10:  # mobile: 0901 234 567
        return f"{national[:4]} {national[4:7]} {national[7:]}"
    if len(national) == 11 and national.startswith("02"):  # landline: 024 3123 4567
        return f"{national[:3]} {national[3:7]} {national[7:]}"
    return national


FILTERS: Mapping[str, Any] = {"unaccent": unaccent, "money": money, "date": format_date, "phone": phone}


# --- environment --------------------------------------------------------------------------------

_MAX_SIZE = 100_000  # items or bits a single `*` / `**` may produce; more is an attack or a bug

# The context of the render in progress, so an undefined field can be named by its path.
_RENDERING: ContextVar[Mapping[str, Any] | None] = ContextVar("flowctl_rendering", default=None)


class _Undefined(jinja2.StrictUndefined):
    """StrictUndefined whose message names the path the user wrote: 'record' has no field 'emial'."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        if self._undefined_hint or self._undefined_obj is missing:
            return super()._undefined_message
        owner = self._undefined_obj
        path = _find_path(_RENDERING.get() or {}, owner)
        where = repr(path) if path else f"'{type(owner).__name__}' value"
        noun = "field" if isinstance(owner, Mapping) else "attribute"
        return f"{where} has no {noun} {self._undefined_name!r}"


def _find_path(context: Mapping[str, Any], target: object, depth: int = 4) -> str | None:
    """Breadth-first search of the render context for ``target`` by identity (bounded)."""
    level: list[tuple[str, object]] = [(str(k), v) for k, v in context.items()]
    for _ in range(depth):
        following: list[tuple[str, object]] = []
        for path, value in level:
            if value is target:
                return path
            if isinstance(value, Mapping):
                following += [(f"{path}.{k}", v) for k, v in value.items()]
            elif isinstance(value, list | tuple):
                following += [(f"{path}[{i}]", v) for i, v in enumerate(value)]
        level = following[:1000]
    return None


_MAX_TEXT = 1_000_000  # characters one text operation (a filter, a method, `%`) may produce
_MAX_LOOPS = 1_000_000  # loop iterations of one render, all loops together
_LOOPS: ContextVar[list[int] | None] = ContextVar("flowctl_loops", default=None)
_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|[0-9]+)?(?:\.(\*|[0-9]+))?")


def _refuse_large(what: str, *numbers: Any) -> None:
    """A text operation whose size argument (width, length, count) would exhaust memory."""
    for number in numbers:
        if isinstance(number, int) and not isinstance(number, bool) and abs(number) > _MAX_TEXT:
            raise SecurityError(f"{what} with {number} is too large (at most {_MAX_TEXT})")


def _check_printf(text: str, args: Any) -> None:
    """``text % args`` (and the ``format`` filter) must not pad to a giant width or precision."""
    values = args if isinstance(args, tuple) else (args,)
    for match in _PRINTF.finditer(text):
        for part in match.groups():
            if part == "*":
                _refuse_large("a '*' width", *values)
            elif part:
                _refuse_large("a width", int(part))


def _check_format(text: str, args: Any, kwargs: Mapping[str, Any]) -> None:
    """``text.format(...)`` must not pad to a giant width: '{:>999999999}'."""
    for _, _, spec, _ in string.Formatter().parse(text):
        if not spec:
            continue
        if "{" in spec:  # a width given as an argument: '{:{}}'.format(x, 10**9)
            _refuse_large("a format width", *args, *kwargs.values())
        for digits in re.findall(r"[0-9]+", spec):
            _refuse_large("a format width", int(digits))


def _check_replace(text: str, old: Any, new: Any) -> None:
    if isinstance(old, str) and isinstance(new, str):
        grows = (text.count(old) if old else len(text) + 1) * max(len(new) - len(old), 0)
        _refuse_large("replace", len(text) + grows)


def _guarded(filter: Any, check: Any) -> Any:
    @functools.wraps(filter)
    def run(*args: Any, **kwargs: Any) -> Any:
        check(*args, **kwargs)
        return filter(*args, **kwargs)

    return run


def _loop_budget(iterable: Any) -> Any:
    """Every ``{% for %}`` iterates through this (see ``_Environment._parse``): nested loops over
    ``range(100000)`` would otherwise run 10**10 times and never answer."""
    counter = _LOOPS.get()
    if counter is None:
        counter = [0]  # outside a render (a test calling Jinja directly): this loop alone
    for item in iterable:
        counter[0] += 1
        if counter[0] > _MAX_LOOPS:
            raise SecurityError(f"the template loops more than {_MAX_LOOPS} times")
        yield item


class _Environment(ImmutableSandboxedEnvironment):
    """Also refuses `*` and `**` results that would exhaust memory or CPU (``'a' * 10**9``), the
    same through `%`, padding filters and text methods (``'x'|center(10**9)``), and renders that
    loop too often (nested ``range(100000)`` loops)."""

    # Intercepting also stops Jinja from folding such constants at compile (= validate) time.
    intercepted_binops = frozenset({"*", "**", "%"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        integers = isinstance(left, int) and isinstance(right, int)
        if operator == "**" and integers and abs(left) > 1 and right * left.bit_length() > _MAX_SIZE:
            raise SecurityError(f"{left} ** {right} is too large")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                sized = isinstance(seq, str | list | tuple) and isinstance(times, int)
                if sized and len(seq) * times > _MAX_SIZE:
                    raise SecurityError(f"repeating a value {times} times is too large")
        if operator == "%" and isinstance(left, str):
            _check_printf(left, right)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        owner = getattr(__obj, "__self__", None)
        wrapped = getattr(__obj, "__wrapped__", None)  # str.format, wrapped by the sandbox
        if isinstance(getattr(wrapped, "__self__", None), str) and wrapped.__name__ in ("format", "format_map"):
            _check_format(wrapped.__self__, args, kwargs if wrapped.__name__ == "format" else
                          (args[0] if args and isinstance(args[0], Mapping) else {}))  # fmt: skip
        elif isinstance(owner, str | bytes | int) and not isinstance(owner, bool):
            name = getattr(__obj, "__name__", "")
            _refuse_large(f"{type(owner).__name__}.{name}", *args, *kwargs.values())
            if name == "replace" and isinstance(owner, str) and len(args) >= 2:
                _check_replace(owner, args[0], args[1])
            if name == "expandtabs" and isinstance(owner, str):
                _refuse_large("expandtabs", owner.count("\t") * (args[0] if args and isinstance(args[0], int) else 8))
        return super().call(__context, __obj, *args, **kwargs)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, "_loop_budget", [], [], None, None, lineno=loop.iter.lineno)
        return tree


def _finalize(value: Any) -> Any:
    return "" if value is None else value  # a null field prints as nothing, not "None"


def make_environment(html: bool = False) -> ImmutableSandboxedEnvironment:
    """A fresh environment; use :func:`environment` unless you need your own. With ``html``,
    every value printed is HTML-escaped (``|safe`` marks markup the author trusts), so a
    customer named ``<a href=…>`` arrives as text, not as a link."""
    env = _Environment(undefined=_Undefined, autoescape=html, keep_trailing_newline=True, finalize=_finalize)
    env.filters.update(FILTERS)
    filters = env.filters
    filters["_loop_budget"] = _loop_budget
    filters["center"] = _guarded(filters["center"], lambda value, width=80: _refuse_large("center", width))
    filters["indent"] = _guarded(filters["indent"], lambda value, width=4, *a, **k: _refuse_large("indent", width))
    filters["format"] = _guarded(filters["format"], lambda value, *args, **kwargs: _check_printf(
        str(value), args or kwargs))  # fmt: skip
    filters["replace"] = _guarded(filters["replace"], lambda eval_ctx, value, old, new, count=None: _check_replace(
        str(value), str(old), str(new)))  # fmt: skip
    filters["batch"] = _guarded(filters["batch"], lambda value, linecount, *a, **k: _refuse_large("batch", linecount))
    filters["slice"] = _guarded(filters["slice"], lambda ctx, value, slices, *a, **k: _refuse_large("slice", slices))
    filters["wordwrap"] = _guarded(filters["wordwrap"], lambda env, s, width=79, *a, **k: _refuse_large(
        "wordwrap", width))  # fmt: skip
    # The engine is deterministic: nothing random in templates.
    del env.filters["random"]
    del env.globals["lipsum"]
    return env


@functools.cache
def environment(html: bool = False) -> ImmutableSandboxedEnvironment:
    """The shared environment (Jinja environments are safe to share once configured); ``html``
    for HTML bodies, which escape what they print."""
    return make_environment(html)


# --- compiling and rendering --------------------------------------------------------------------

# RecursionError: a macro that calls itself
_RENDER_ERRORS = (jinja2.TemplateError, ArithmeticError, LookupError, TypeError, ValueError, RecursionError)


@dataclass(frozen=True, slots=True)
class CompiledTemplate:
    source: str
    _template: jinja2.Template | None = field(repr=False)  # None: plain text, no Jinja needed

    def render(self, context: Mapping[str, Any]) -> str:
        """Render with ``context`` (e.g. ``{"record": {...}}``); raises :class:`TemplateError`."""
        if self._template is None:
            return self.source
        token = _RENDERING.set(context)
        loops = _LOOPS.set([0])
        try:
            return self._template.render(context)
        except _RENDER_ERRORS as exc:
            raise TemplateError(_message(exc), source=self.source) from exc
        finally:
            _LOOPS.reset(loops)
            _RENDERING.reset(token)


@dataclass(frozen=True, slots=True)
class CompiledExpression:
    source: str
    _expression: jinja2.environment.TemplateExpression = field(repr=False)

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        """The value of the expression; an undefined result is an error, not a falsy value."""
        token = _RENDERING.set(context)
        try:
            result = self._expression(context)
            if isinstance(result, jinja2.Undefined):
                str(result)  # raises the undefined error with its message
            return result
        except _RENDER_ERRORS as exc:
            raise TemplateError(_message(exc), source=self.source) from exc
        finally:
            _RENDERING.reset(token)


def _message(exc: BaseException) -> str:
    if isinstance(exc, jinja2.TemplateError):
        return exc.message or type(exc).__name__
    return str(exc)


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
        raise TemplateError(_syntax_message(exc, source, expression=False), source=source) from exc


@functools.lru_cache(maxsize=4096)
def compile_expression(source: str) -> CompiledExpression:
    """Compile a condition (no braces) once; raises :class:`TemplateError` on a syntax error."""
    try:
        return CompiledExpression(source, environment().compile_expression(source, undefined_to_none=False))
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(_syntax_message(exc, source, expression=True), source=source) from exc


# --- static checks ------------------------------------------------------------------------------


def _syntax_message(exc: jinja2.TemplateSyntaxError, source: str, *, expression: bool) -> str:
    message = exc.message or "syntax error"
    if message == "chunk after expression":
        message = "unexpected text after the end of the condition (a missing 'and', 'or' or operator?)"
    if expression and source.lstrip().startswith(("{{", "{%")):
        message += " (conditions are written without braces, e.g. record.amount >= 1000)"
    return message


def _line_offset(source: str, lineno: int) -> int:
    offset = 0
    for _ in range(lineno - 1):  # Jinja numbers lines by "\n" only
        offset = source.find("\n", offset) + 1
        if offset == 0:
            return 0
    return offset


def check_template(source: str) -> list[Problem]:
    """Syntax problems of a text template (including unknown filters); empty when it compiles."""
    return _check(source, expression=False)


def check_expression(source: str) -> list[Problem]:
    """Syntax problems of a condition (including unknown filters); empty when it compiles."""
    if not source.strip():
        return [Problem(message="the condition is empty")]
    return _check(source, expression=True)


def _check(source: str, *, expression: bool) -> list[Problem]:
    """Parse (cached, shared with the field analysis) instead of compiling to Python: the parse
    finds every syntax error, and the filters and tests the compiler would reject are looked up
    here. Compiling every string made ``validate`` twice as slow for nothing more."""
    try:
        tree = _parse(source, expression=expression)
    except TemplateError:
        try:
            _parse_raw(source, expression=expression)
        except jinja2.TemplateSyntaxError as exc:
            message = _syntax_message(exc, source, expression=expression)
            return [Problem(message=message, offset=_line_offset(source, exc.lineno))]
        raise  # pragma: no cover - _parse and _parse_raw agree
    env = environment()
    problems = _unsafe(source, tree)
    for node in tree.find_all((nodes.Filter, nodes.Test)):
        known = env.filters if isinstance(node, nodes.Filter) else env.tests
        if node.name not in known:
            kind = "filter" if isinstance(node, nodes.Filter) else "test"
            message = f"No {kind} named '{node.name}'."  # Jinja's own wording
            problems.append(Problem(message=message, offset=_line_offset(source, node.lineno)))
    return problems


_PRIVATE = re.compile(r"^(?:__|_[A-Za-z0-9]+__)")  # dunders and name-mangled privates


def _unsafe(source: str, tree: nodes.Template) -> list[Problem]:
    """Reads the sandbox refuses at render (``''.__class__``, ``x|attr('__globals__')``), reported
    by ``validate`` already, at the name."""
    names: list[tuple[str, int]] = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter)):
        if isinstance(node, nodes.Getattr):
            names.append((node.attr, node.lineno))
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            names.append((str(node.arg.value), node.lineno))
        elif isinstance(node, nodes.Filter) and node.name == "attr" and node.args:
            arg = node.args[0]
            if isinstance(arg, nodes.Const):
                names.append((str(arg.value), node.lineno))
    problems = []
    for name, lineno in names:
        if _PRIVATE.match(name):
            found = source.find(name, _line_offset(source, lineno))
            problems.append(Problem(message=f"'{name}' cannot be read in a template: templates run in a sandbox "
                                    "that refuses Python internals", offset=max(found, 0)))  # fmt: skip
    return sorted(problems, key=lambda problem: problem.offset)


@functools.lru_cache(maxsize=8192)
def _parse(source: str, *, expression: bool) -> nodes.Template:
    """The syntax tree of a template or condition (cached: checks ask for it several times)."""
    try:
        return _parse_raw(source, expression=expression)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(_syntax_message(exc, source, expression=expression), source=source) from exc


def _parse_raw(source: str, *, expression: bool) -> nodes.Template:
    env = environment()
    if not expression:
        return env.parse(source)
    parser = Parser(env, source, state="variable")
    expr = parser.parse_expression()
    if not parser.stream.eos:
        raise jinja2.TemplateSyntaxError("chunk after expression", parser.stream.current.lineno)
    template = nodes.Template([nodes.Output([expr], lineno=1)], lineno=1)
    template.set_environment(env)
    return template

def referenced_names(source: str, *, expression: bool) -> set[str]:
    """Top-level variables the source reads from its context (not globals like ``range``)."""
    names = meta.find_undeclared_variables(_parse(source, expression=expression))
    return names - set(environment().globals)


def referenced_fields(source: str, *, expression: bool, root: str = "record") -> list[FieldRef]:
    """Every ``root.X`` / ``root['X']`` read, in source order, skipping where ``root`` is rebound."""
    found: list[tuple[str, int]] = []
    _walk(_parse(source, expression=expression), root, frozenset(), found)
    positions = _token_positions(source, root, expression=expression)
    refs: list[FieldRef] = []
    for name, lineno in found:
        candidates = positions.get((name, lineno)) or next(
            (offsets for (n, _), offsets in positions.items() if n == name and offsets), []
        )
        refs.append(FieldRef(name=name, offset=candidates.pop(0) if candidates else 0))
    return sorted(refs, key=lambda ref: ref.offset)


def _bound(target: nodes.Node) -> set[str]:
    names = [target] if isinstance(target, nodes.Name) else target.find_all(nodes.Name)
    return {name.name for name in names}


def _walk(node: nodes.Node, root: str, bound: frozenset[str], found: list[tuple[str, int]]) -> None:
    """Collect (field, lineno) of reads of ``root``, tracking the names loops, macros and set bind."""
    if isinstance(node, nodes.For):
        _walk(node.iter, root, bound, found)
        inner = bound | _bound(node.target)
        if node.test is not None:
            _walk(node.test, root, inner, found)
        _walk_body(node.body, root, inner, found)
        _walk_body(node.else_, root, bound, found)
        return
    if isinstance(node, nodes.Macro | nodes.CallBlock):
        for child in [*node.defaults, *([node.call] if isinstance(node, nodes.CallBlock) else [])]:
            _walk(child, root, bound, found)
        _walk_body(node.body, root, bound | {arg.name for arg in node.args}, found)
        return
    if isinstance(node, nodes.With):
        for value in node.values:
            _walk(value, root, bound, found)
        _walk_body(node.body, root, bound.union(*(_bound(t) for t in node.targets)), found)
        return
    if isinstance(node, nodes.Getattr | nodes.Getitem) and _is_root(node.node, root, bound):
        if isinstance(node, nodes.Getattr):
            found.append((node.attr, node.lineno))
            return
        if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            found.append((node.arg.value, node.lineno))
            return
    callee = node.node if isinstance(node, nodes.Call) else None
    is_method = isinstance(callee, nodes.Getattr) and _is_root(callee.node, root, bound)
    if isinstance(node, nodes.Call) and is_method:
        # record.get('x') calls a method and reads no field
        arguments: list[nodes.Node | None] = [*node.args, *node.kwargs, node.dyn_args, node.dyn_kwargs]
        for argument in arguments:
            if argument is not None:
                _walk(argument, root, bound, found)
        return
    for name in node.fields:
        value = getattr(node, name)
        if isinstance(value, list):
            _walk_body(value, root, bound, found)
        elif isinstance(value, nodes.Node):
            _walk(value, root, bound, found)


def _walk_body(body: list[Any], root: str, bound: frozenset[str], found: list[tuple[str, int]]) -> None:
    for item in body:
        if isinstance(item, nodes.Node):
            _walk(item, root, bound, found)
        if isinstance(item, nodes.Assign | nodes.AssignBlock):
            bound = bound | _bound(item.target)  # {% set %} binds for the statements after it


def _is_root(node: nodes.Node, root: str, bound: frozenset[str]) -> bool:
    return isinstance(node, nodes.Name) and node.name == root and root not in bound


def _token_positions(source: str, root: str, *, expression: bool) -> dict[tuple[str, int], list[int]]:
    """Char offsets of ``root.X`` / ``root['X']`` token runs, keyed by (field, line)."""
    env = environment()
    raw = env.lexer.tokeniter(source, None, state="variable") if expression else env.lex(source)
    tokens: list[tuple[int, str, str, int]] = []
    cursor = 0
    for lineno, kind, value in raw:
        # Tokens carry no offsets; each raw token value appears in order in the source
        # (whitespace control may have stripped some text, which `find` skips over).
        start = source.find(value, cursor)
        cursor = start + len(value) if start >= 0 else cursor
        if kind not in ("whitespace", "data", "comment"):
            tokens.append((lineno, kind, value, start))
    positions: dict[tuple[str, int], list[int]] = {}
    for i, (_, kind, value, _) in enumerate(tokens):
        if kind != "name" or value != root or (i and tokens[i - 1][1:3] == ("operator", ".")):
            continue
        following = tokens[i + 1 : i + 4]
        if len(following) >= 2 and following[0][1:3] == ("operator", ".") and following[1][1] == "name":
            key, offset = (following[1][2], following[0][0]), following[1][3]
        elif len(following) == 3 and following[0][1:3] == ("operator", "[") and following[1][1] == "string":
            key, offset = (following[1][2][1:-1], following[0][0]), following[1][3] + 1
        else:
            continue
        positions.setdefault(key, []).append(offset)
    return positions
