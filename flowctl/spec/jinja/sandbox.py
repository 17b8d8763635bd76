"""The sandboxed Jinja2 environment: no Python internals, and nothing a render builds is unbounded.

Jinja's ``ImmutableSandboxedEnvironment`` refuses internals (``''.__class__``) and changing
values (``record.update(...)``). It does not bound sizes: ``(['a'*100000]*100000)|join`` asks for
10**10 characters and ends in a ``MemoryError`` that takes the daemon down. Here every road to a
large value is bounded, before the value is built:

- ``*`` and ``**`` (``'a' * 10**9``, ``10**100000``) and ``+`` of texts and lists;
- ``~`` (``s~s~s`` repeated), ``join`` (filter and ``str.join``), ``%``, ``format``, ``replace``,
  ``translate``, ``indent``, ``center`` and the other padding filters and methods, ``sum`` of lists;
- turning a value into text (printing it, ``string``, ``tojson``, ``pprint``): the size of its
  text is counted item by item first, so ``dict.fromkeys(range(100000), 'a'*100000)`` is refused
  after a few items instead of after 10**10 characters;
- everything a render writes, including ``{% set %}`` blocks, macro calls and ``{% filter %}``
  blocks: one budget per render, counted by the generated code at every write;
- loops: one budget of iterations per render (nested ``range(100000)`` loops).

Going over raises :class:`LimitExceeded` (a ``SecurityError``), which the render turns into a
``TemplateLimitError`` naming the template's line and the limit.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.filters import make_attrgetter
from jinja2.runtime import Context, markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace, missing

from flowctl.spec.jinja.filters import FILTERS

MAX_ITEMS = 100_000  # items or bits a single `*` / `**` may produce; more is an attack or a bug
MAX_TEXT = 1_000_000  # characters of any text a template builds, and of all it writes in one render
MAX_LOOPS = 1_000_000  # loop iterations of one render, all loops together


class LimitExceeded(SecurityError):
    """A value or the output of a render would go over ``limit`` ``unit``."""

    def __init__(self, what: str, limit: int, unit: str) -> None:
        super().__init__(f"{what} would be more than {limit:,} {unit}")
        self.limit = limit
        self.unit = unit


def _too_long(what: str, size: int, limit: int = MAX_TEXT, unit: str = "characters") -> None:
    if size > limit:
        raise LimitExceeded(what, limit, unit)


# --- the budget of one render -------------------------------------------------------------------


@dataclass(slots=True)
class _Budget:
    loops: int = 0
    written: int = 0


_BUDGET: ContextVar[_Budget | None] = ContextVar("flowctl_budget", default=None)

# The context of the render in progress, so an undefined field can be named by its path.
_RENDERING: ContextVar[Mapping[str, Any] | None] = ContextVar("flowctl_rendering", default=None)


def begin_render(context: Mapping[str, Any]) -> tuple[Token[Mapping[str, Any] | None], Token[_Budget | None]]:
    """One render starts: a fresh budget of loop iterations and written characters; pass what it
    returns to :func:`end_render` (in a ``finally``)."""
    return _RENDERING.set(context), _BUDGET.set(_Budget())


def end_render(tokens: tuple[Token[Mapping[str, Any] | None], Token[_Budget | None]]) -> None:
    _BUDGET.reset(tokens[1])
    _RENDERING.reset(tokens[0])


def _budget() -> _Budget:
    budget = _BUDGET.get()
    return budget if budget is not None else _Budget()  # outside a render (Jinja called directly): per call


def _loop_budget(iterable: Any) -> Any:
    """Every ``{% for %}`` iterates through this (see ``_Environment._parse``): nested loops over
    ``range(100000)`` would otherwise run 10**10 times and never answer."""
    budget = _budget()
    for item in iterable:
        budget.loops += 1
        if budget.loops > MAX_LOOPS:
            raise LimitExceeded("the loops of the template", MAX_LOOPS, "iterations")
        yield item


# --- sizes of values as text --------------------------------------------------------------------


def text_size(value: Any, limit: int = MAX_TEXT) -> int:
    """The length of ``str(value)``, counted without building it; stops soon after passing ``limit``.

    Containers are walked item by item (each item costs at least one character), so the count
    takes at most about ``limit`` steps whatever the value: a dict of 100,000 keys sharing one
    100,000-character value is known to be too long after about ten of them.
    """
    if isinstance(value, str):
        return len(value)
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        return value.bit_length() * 10 // 33 + 2  # digits, never under the true count by more than one
    if isinstance(value, bytes | bytearray):
        return len(value) * 4 + 3  # at most \xNN per byte
    if isinstance(value, Namespace):
        return 12 + text_size(getattr(value, "_Namespace__attrs", {}), limit)
    if isinstance(value, Mapping):
        total = 2
        for key, item in value.items():
            total += text_size(key, limit - total) + text_size(item, limit - total) + 2
            if total > limit:
                return total
        return total
    if isinstance(value, list | tuple | set | frozenset):
        total = 2
        for item in value:
            total += text_size(item, limit - total) + 2
            if total > limit:
                return total
        return total
    return len(str(value))  # numbers, dates, Undefined, ranges, cyclers: small by construction


def _as_text(what: str, value: Any) -> None:
    _too_long(what, text_size(value))


def _refuse_large(what: str, *numbers: Any) -> None:
    """A text operation whose size argument (width, length, count) would exhaust memory."""
    for number in numbers:
        if isinstance(number, int) and not isinstance(number, bool) and abs(number) > MAX_TEXT:
            raise LimitExceeded(f"{what} with {number}", MAX_TEXT, "characters")


def _sized(result: Any, what: str) -> Any:
    """Any text, list or mapping a filter or a call returns stays under the limit."""
    if isinstance(result, str | bytes | list | tuple | dict | set | frozenset):
        _too_long(what, len(result))
    return result


# --- the growing operations, each checked before it builds --------------------------------------

_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|[0-9]+)?(?:\.(\*|[0-9]+))?")


def _check_printf(text: str, args: Any) -> None:
    """``text % args`` (and the ``format`` filter) must not pad to a giant width or precision,
    nor print more than the limit of its arguments."""
    values = args if isinstance(args, tuple) else (args,)
    for match in _PRINTF.finditer(text):
        for part in match.groups():
            if part == "*":
                _refuse_large("a '*' width", *values)
            elif part:
                _refuse_large("a width", int(part))
    _too_long("the text of '%'", len(text) + sum(text_size(v) for v in values))


def _check_format(text: str, args: Any, kwargs: Mapping[str, Any]) -> None:
    """``text.format(...)`` must not pad to a giant width ('{:>999999999}') nor print too much."""
    for _, _, spec, _ in string.Formatter().parse(text):
        if not spec:
            continue
        if "{" in spec:  # a width given as an argument: '{:{}}'.format(x, 10**9)
            _refuse_large("a format width", *args, *kwargs.values())
        for digits in re.findall(r"[0-9]+", spec):
            _refuse_large("a format width", int(digits))
    fields = text.count("{") or 1  # each argument may be printed once per replacement field
    _too_long("the text of format()", len(text) + fields * sum(text_size(v) for v in (*args, *kwargs.values())))


def _check_replace(text: str, old: Any, new: Any) -> None:
    if isinstance(old, str) and isinstance(new, str):
        grows = (text.count(old) if old else len(text) + 1) * max(len(new) - len(old), 0)
        _refuse_large("replace", len(text) + grows)


def _check_join(separator: Any, items: list[Any]) -> None:
    size = len(str(separator)) * max(len(items) - 1, 0)
    _too_long("the text of join", size)
    for item in items:
        size += text_size(item, MAX_TEXT - size)
        _too_long("the text of join", size)


def _check_translate(text: str, table: Any) -> None:
    if isinstance(table, Mapping):
        longest = max((len(v) for v in table.values() if isinstance(v, str)), default=1)
        _too_long("the text of translate", len(text) * longest)


def _check_indent(text: Any, width: Any = 4, *args: Any, **kwargs: Any) -> None:
    _refuse_large("indent", width)
    size = len(width) if isinstance(width, str) else width if isinstance(width, int) else 4
    _too_long("the text of indent", len(str(text)) + (str(text).count("\n") + 1) * size)


def _check_sum(values: Any, attribute: Any = None, start: Any = 0) -> None:
    if isinstance(start, str | list | tuple):
        items = list(values) if not isinstance(values, list | tuple) else values
        _too_long(
            "the result of sum", len(start) + sum(len(v) if isinstance(v, str | list | tuple) else 1 for v in items)
        )


# --- the environment ----------------------------------------------------------------------------


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


class _CodeGenerator(CodeGenerator):
    """Jinja's code generator, with every write and every ``~`` going through the environment.

    ``environment.spend(text)`` counts what a render writes, wherever it goes (the output, a
    ``{% set %}`` block, a macro's result); ``environment.bounded_concat`` checks ``a ~ b`` before joining.
    """

    def _output_const_repr(self, group: Iterable[Any]) -> str:
        return f"environment.spend({super()._output_const_repr(group)})"

    def _output_child_pre(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        self.write("environment.spend(")
        super()._output_child_pre(node, frame, finalize)

    def _output_child_post(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        super()._output_child_post(node, frame, finalize)
        self.write(")")

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        if frame.eval_ctx.volatile:
            markup = "context.eval_ctx.autoescape"
        else:
            markup = "True" if frame.eval_ctx.autoescape else "False"
        self.write(f"environment.bounded_concat({markup}, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


#: Names a dict answers as attributes: Jinja reads ``d.name`` as the attribute when there is one.
_DICT_ATTRIBUTES = frozenset(dir(dict))


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox, with every growing operation bounded (see the module's docstring)."""

    code_generator_class = _CodeGenerator
    # Intercepting also stops Jinja from folding such constants at compile (= validate) time.
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def spend(self, text: str) -> str:
        budget = _BUDGET.get()  # None outside CompiledTemplate.render (Jinja called directly): not counted
        if budget is not None:
            budget.written += len(text)
            if budget.written > MAX_TEXT:
                raise LimitExceeded("what the template writes", MAX_TEXT, "characters")
        return text

    def bounded_concat(self, markup: bool, parts: tuple[Any, ...]) -> str:
        size = 0
        for part in parts:
            size += text_size(part, MAX_TEXT - size)
            _too_long("the text of '~'", size)
        return markup_join(parts) if markup else str_join(parts)

    def getattr(self, obj: Any, attribute: str) -> Any:
        """``record.title`` on a context dict: its key, without first the attribute lookup that
        fails (an exception for every field a template prints). Anything else, and a key that a
        dict attribute shadows (``record.items``), as Jinja's sandbox does."""
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        integers = isinstance(left, int) and isinstance(right, int)
        if operator == "**" and integers and abs(left) > 1 and right * left.bit_length() > MAX_ITEMS:
            raise LimitExceeded(f"{left} ** {right}", MAX_ITEMS, "bits")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                sized = isinstance(seq, str | list | tuple) and isinstance(times, int)
                if sized and len(seq) * times > MAX_ITEMS:
                    raise LimitExceeded(f"repeating a value {times} times", MAX_ITEMS, "items")
        if operator == "+" and isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
            unit = "characters" if isinstance(left, str) else "items"
            _too_long("the result of '+'", len(left) + len(right), unit=unit)
        if operator == "%" and isinstance(left, str):
            _check_printf(left, right)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        owner = getattr(__obj, "__self__", None)
        wrapped = getattr(__obj, "__wrapped__", None)  # str.format, wrapped by the sandbox
        name = getattr(__obj, "__name__", "")
        if (
            wrapped is not None
            and isinstance(getattr(wrapped, "__self__", None), str)
            and wrapped.__name__ in ("format", "format_map")
        ):
            _check_format(
                wrapped.__self__,
                args,
                kwargs if wrapped.__name__ == "format" else (args[0] if args and isinstance(args[0], Mapping) else {}),
            )
        elif isinstance(owner, str | bytes | int) and not isinstance(owner, bool):
            _refuse_large(f"{type(owner).__name__}.{name}", *args, *kwargs.values())
            if name == "replace" and isinstance(owner, str) and len(args) >= 2:
                _check_replace(owner, args[0], args[1])
            if name == "expandtabs" and isinstance(owner, str):
                _refuse_large("expandtabs", owner.count("\t") * (args[0] if args and isinstance(args[0], int) else 8))
            if name == "join" and isinstance(owner, str) and args:
                items = list(args[0])
                _check_join(owner, items)
                args = (items, *args[1:])
            if name == "translate" and isinstance(owner, str) and args:
                _check_translate(owner, args[0])
        return _sized(super().call(__context, __obj, *args, **kwargs), f"the result of {name or 'a call'}()")

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, "_loop_budget", [], [], None, None, lineno=loop.iter.lineno)
        return tree


def _finalize(value: Any) -> Any:
    if value is None:
        return ""  # a null field prints as nothing, not "None"
    if not isinstance(value, str):
        _as_text("the printed value", value)
    return value


def _guarded(filter: Callable[..., Any], check: Callable[..., Any] | None = None) -> Callable[..., Any]:
    """``filter`` with ``check`` (same arguments) run first, and its result's size checked after."""
    what = f"the result of |{getattr(filter, '__name__', 'filter')}"

    if check is None:

        @functools.wraps(filter)
        def unchecked(*args: Any, **kwargs: Any) -> Any:
            return _sized(filter(*args, **kwargs), what)

        return unchecked

    @functools.wraps(filter)
    def run(*args: Any, **kwargs: Any) -> Any:
        check(*args, **kwargs)
        return _sized(filter(*args, **kwargs), what)

    return run


def _join(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def join(eval_ctx: Any, value: Iterable[Any], d: str = "", attribute: str | int | None = None) -> str:
        if attribute is not None:
            value = map(make_attrgetter(eval_ctx.environment, attribute), value)
        items = list(value)
        _check_join(d, items)
        return str(original(eval_ctx, items, d))

    return join


#: Filters that turn their whole input into text; it is measured first.
_AS_TEXT = ("string", "tojson", "pprint", "urlencode", "xmlattr", "escape", "e", "forceescape", "safe")


def make_environment(html: bool = False) -> ImmutableSandboxedEnvironment:
    """A fresh environment; use :func:`environment` unless you need your own. With ``html``,
    every value printed is HTML-escaped (``|safe`` marks markup the author trusts), so a
    customer named ``<a href=…>`` arrives as text, not as a link."""
    env = _Environment(undefined=_Undefined, autoescape=html, keep_trailing_newline=True, finalize=_finalize)
    env.filters.update(FILTERS)
    filters = env.filters
    checks: dict[str, Callable[..., Any]] = {
        "center": lambda value, width=80: _refuse_large("center", width),
        "indent": _check_indent,
        "format": lambda value, *args, **kwargs: _check_printf(str(value), args or kwargs),
        "replace": lambda eval_ctx, value, old, new, count=None: _check_replace(str(value), str(old), str(new)),
        "batch": lambda value, linecount, *a, **k: _refuse_large("batch", linecount),
        "slice": lambda ctx, value, slices, *a, **k: _refuse_large("slice", slices),
        "wordwrap": lambda env, s, width=79, *a, **k: _refuse_large("wordwrap", width),
        "sum": lambda env, values, attribute=None, start=0: _check_sum(values, attribute, start),
    }
    for name in _AS_TEXT:
        checks[name] = _text_check(filters[name])
    filters["join"] = _join(filters["join"])
    for name, original in list(filters.items()):
        filters[name] = _guarded(original, checks.get(name))
    filters["_loop_budget"] = _loop_budget
    # The engine is deterministic: nothing random in templates.
    del env.filters["random"]
    del env.globals["lipsum"]
    return env


def _text_check(filter: Callable[..., Any]) -> Callable[..., None]:
    """A check that measures the value a text filter is given (after its context argument, if any)."""
    passes = getattr(filter, "jinja_pass_arg", None) is not None

    def check(*args: Any, **kwargs: Any) -> None:
        values = args[1:] if passes else args
        if values:
            _as_text("the text of a filter", values[0])

    return check


@functools.cache
def environment(html: bool = False) -> ImmutableSandboxedEnvironment:
    """The shared environment (Jinja environments are safe to share once configured); ``html``
    for HTML bodies, which escape what they print."""
    return make_environment(html)
