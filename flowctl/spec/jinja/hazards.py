"""What the sandbox would refuse at render, found by reading the template: validate reports it (E051).

Four kinds, each a :class:`Problem` at the place it is written:

- **Python internals**: reading a private name (``''.__class__``, ``x|attr('__globals__')``,
  ``{{ __builtins__ }}``), or reaching one through a format string (``'{0.__class__}'.format(x)``);
- **names a template is not given** (``{{ config }}``, ``{{ request.application }}``): only when
  the caller knows which names its context has (record texts and Template documents do);
- **what the sandbox cannot do**: change a value (``record.update(...)``), include, import or
  extend another template;
- **resource bombs written with constants**: ``'a' * 10**9``, ``range(10**9)``, ``10**100000``,
  ``'x'|center(10**9)``, ``'%0999999999d' % 1``, nested constant loops of more than the loop
  budget, a macro that calls itself unconditionally. Sizes are computed abstractly: the text
  ``'a' * 10**9`` is never built here.

A bomb built from values only known at render (a record's field, a loop variable) is left to the
sandbox's limits (``sandbox.py``); this module never renders.
"""

from __future__ import annotations

import re
import string
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from jinja2 import TemplateError, nodes
from jinja2.sandbox import MAX_RANGE

from flowctl.spec.jinja.errors import Problem
from flowctl.spec.jinja.sandbox import MAX_ITEMS, MAX_LOOPS, MAX_TEXT, environment

_PRIVATE = re.compile(r"^(?:__|_[A-Za-z0-9]+__)")  # dunders and name-mangled privates
_INTERNALS = "templates run in a sandbox that refuses Python internals"

#: Methods that change the value they belong to; the immutable sandbox refuses every one.
_MUTATING = frozenset(
    {
        "append",
        "extend",
        "insert",
        "remove",
        "pop",
        "popitem",
        "clear",
        "update",
        "setdefault",
        "add",
        "discard",
        "sort",
        "reverse",
        "difference_update",
        "intersection_update",
        "symmetric_difference_update",
    }
)
#: The tags that load another template, none of which the sandbox can do.
_LOADING: dict[type[nodes.Node], str] = {
    nodes.Include: "include",
    nodes.Import: "import",
    nodes.FromImport: "from",
    nodes.Extends: "extends",
}
#: Names every Jinja template has (not from its context).
_JINJA_NAMES = frozenset({"loop", "caller", "varargs", "kwargs", "self"})
#: Filters and methods whose argument is a width, a count or a length of the text they build.
_WIDTH_FILTERS = frozenset({"center", "indent", "wordwrap", "batch", "slice", "truncate"})
_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "to_bytes", "expandtabs"})
_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|[0-9]+)?(?:\.(\*|[0-9]+))?")


@dataclass(frozen=True, slots=True)
class _Sized:
    """A text or list known only by its length (``'a' * 10**9`` is never built)."""

    length: int
    item: int = 1  # the longest text of one item (of a list); 1 for a text


@dataclass(frozen=True, slots=True)
class _Finding:
    message: str
    lineno: int
    name: str = ""  # what to point at on that line


def find(source: str, tree: nodes.Template, names: Collection[str] | None = None) -> list[Problem]:
    """Every hazard of ``tree`` (parsed from ``source``): internals, then the rest, each in source
    order. ``names``: the names the context gives; ``None`` when the caller does not know them."""
    findings = [*_impossible(tree), *_bombs(tree)]
    if names is not None:
        findings += _unknown_names(tree, names)
    # an attempt at Python internals first: it is what a reader must see about such a template
    return [*_placed(source, _internals(tree)), *_placed(source, findings)]


def _placed(source: str, findings: Iterable[_Finding]) -> list[Problem]:
    problems = []
    for finding in findings:
        start = _line_offset(source, finding.lineno)
        found = source.find(finding.name, start) if finding.name else start
        problems.append(Problem(message=finding.message, offset=max(found, 0)))
    return sorted(problems, key=lambda problem: problem.offset)


def _line_offset(source: str, lineno: int) -> int:
    offset = 0
    for _ in range(lineno - 1):  # Jinja numbers lines by "\n" only
        offset = source.find("\n", offset) + 1
        if offset == 0:
            return 0
    return offset


# --- Python internals ---------------------------------------------------------------------------


def _internals(tree: nodes.Template) -> Iterator[_Finding]:
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter, nodes.Name, nodes.Call)):
        name = ""
        if isinstance(node, nodes.Getattr):
            name = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            name = str(node.arg.value)
        elif isinstance(node, nodes.Filter) and node.name == "attr" and node.args:
            if isinstance(node.args[0], nodes.Const):
                name = str(node.args[0].value)
        elif isinstance(node, nodes.Name):
            name = node.name
        elif isinstance(node, nodes.Call):
            yield from _format_internals(node)
            continue
        if name and _PRIVATE.match(name):
            yield _Finding(f"'{name}' cannot be read in a template: {_INTERNALS}", node.lineno, name)


def _format_internals(call: nodes.Call) -> Iterator[_Finding]:
    """``'{0.__class__}'.format(x)``: a format string reads attributes of its arguments."""
    callee = call.node
    if not (
        isinstance(callee, nodes.Getattr)
        and callee.attr in ("format", "format_map")
        and isinstance(callee.node, nodes.Const)
        and isinstance(callee.node.value, str)
    ):
        return
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(callee.node.value) if field]
    except ValueError:
        return
    for field in fields:
        for part in re.split(r"[.\[\]]", field)[1:]:
            if _PRIVATE.match(part):
                yield _Finding(
                    f"the format string reads '{part}', which cannot be read in a template: {_INTERNALS}",
                    call.lineno,
                    part,
                )
                return


# --- what the sandbox cannot do -----------------------------------------------------------------


def _impossible(tree: nodes.Template) -> Iterator[_Finding]:
    for node in tree.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends, nodes.Call)):
        if isinstance(node, nodes.Call):
            callee = node.node
            if isinstance(callee, nodes.Getattr) and callee.attr in _MUTATING:
                yield _Finding(
                    f"'.{callee.attr}()' changes a value, which templates cannot do (they run in an "
                    "immutable sandbox); build a new value instead, e.g. with '~' or a filter",
                    node.lineno,
                    callee.attr,
                )
            continue
        keyword = _LOADING[type(node)]
        yield _Finding(
            f"'{{% {keyword} %}}' is not available: a template cannot load another template or file; "
            "put the text in this template or in a macro",
            node.lineno,
            keyword,
        )


# --- names --------------------------------------------------------------------------------------


def _unknown_names(tree: nodes.Template, names: Collection[str]) -> Iterator[_Finding]:
    from jinja2 import meta

    guarded = {
        node.node.name
        for node in tree.find_all(nodes.Test)
        if node.name in ("defined", "undefined") and isinstance(node.node, nodes.Name)
    }
    guarded |= {
        node.node.name
        for node in tree.find_all(nodes.Filter)
        if node.name in ("default", "d") and isinstance(node.node, nodes.Name)
    }
    known = set(names) | set(environment().globals) | _JINJA_NAMES | guarded
    try:
        unknown = meta.find_undeclared_variables(tree) - known
    except TemplateError:  # an unknown filter stops Jinja's analysis; it is reported on its own
        return
    if not unknown:
        return
    given = ", ".join(sorted(names))
    for node in tree.find_all(nodes.Name):
        if node.name in unknown and not _PRIVATE.match(node.name):
            unknown.discard(node.name)
            yield _Finding(
                f"'{node.name}' is not a value templates are given here (they get: {given})", node.lineno, node.name
            )


# --- resource bombs written with constants ------------------------------------------------------


def _bombs(tree: nodes.Template) -> Iterator[_Finding]:
    values: dict[str, Any] = {}  # {% set name = constant %} at any depth: a name's last constant value
    for assign in tree.find_all(nodes.Assign):
        if isinstance(assign.target, nodes.Name):
            try:
                values[assign.target.name] = _value(assign.node, values)
            except _Bomb:
                pass  # reported where the expression is walked below
            except (_Unknown, *_NOT_CONSTANT):
                values.pop(assign.target.name, None)
    seen: set[int] = set()
    for node in tree.find_all(nodes.Expr):
        if id(node) in seen:
            continue
        try:
            _value(node, values)
        except _Bomb as bomb:
            seen.update(id(inner) for inner in node.find_all(nodes.Expr))
            yield _Finding(
                f"{bomb.what} would be more than the sandbox allows ({bomb.limit:,} {bomb.unit}); "
                "the render would fail",
                node.lineno,
                bomb.at,
            )
        except (_Unknown, *_NOT_CONSTANT):
            continue
    for output in tree.find_all(nodes.Output):
        for child in output.nodes:
            try:
                printed = _maybe(child, values) if not isinstance(child, nodes.TemplateData) else None
            except _Bomb:
                continue  # reported above
            if isinstance(printed, _Sized) and printed.length * (printed.item + 2) > MAX_TEXT:
                yield _Finding(
                    f"printing this value would write more than the sandbox allows ({MAX_TEXT:,} "
                    "characters); the render would fail",
                    child.lineno,
                    "{{",
                )
    yield from _loops(tree, values)
    yield from _recursion(tree)


class _Unknown(Exception):
    """Not a constant: known only at render."""


#: What evaluating constants may raise (``range(1, 9, 0)``, ``1 ** -1``…): the render reports it.
_NOT_CONSTANT = (ArithmeticError, ValueError, TypeError)


class _Bomb(Exception):
    def __init__(self, what: str, limit: int, unit: str, at: str = "") -> None:
        super().__init__(what)
        self.what, self.limit, self.unit, self.at = what, limit, unit, at


def _length(value: Any) -> int | None:
    if isinstance(value, _Sized):
        return value.length
    if isinstance(value, str | list | tuple | range):
        return len(value)
    return None


def _item(value: Any) -> int:
    """The longest text of one item of a list (1 for a text or an unknown item)."""
    if isinstance(value, _Sized):
        return value.item
    if isinstance(value, list | tuple):
        return max((_length(item) or 1 for item in value), default=1)
    return 1


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _wide(what: str, *values: Any) -> None:
    for value in values:
        number = _int(value)
        if number is not None and abs(number) > MAX_TEXT:
            raise _Bomb(f"{what} with {number}", MAX_TEXT, "characters", what.split()[-1].strip("'|.()"))


def _value(node: nodes.Node, values: dict[str, Any]) -> Any:
    """The constant value of ``node`` (texts and lists built by ``*``/``+`` only as ``_Sized``), or
    :class:`_Unknown`; :class:`_Bomb` when the sandbox would refuse it."""
    if isinstance(node, nodes.Const):
        return node.value
    if isinstance(node, nodes.Name):
        if node.name in values:
            return values[node.name]
        raise _Unknown
    if isinstance(node, nodes.Neg):
        operand = _int(_value(node.node, values))
        if operand is None:
            raise _Unknown
        return -operand
    if isinstance(node, nodes.Tuple | nodes.List):
        items = [_value(item, values) for item in node.items]
        return tuple(items) if isinstance(node, nodes.Tuple) else items
    if isinstance(node, nodes.Pow):
        left, right = _int(_value(node.left, values)), _int(_value(node.right, values))
        if left is None or right is None:
            raise _Unknown
        if abs(left) > 1 and right * left.bit_length() > MAX_ITEMS:
            shown = str(left) if left.bit_length() < 64 else f"a {len(str(left))}-digit number"
            raise _Bomb(f"{shown} ** {right}", MAX_ITEMS, "bits", "**")
        return left**right
    if isinstance(node, nodes.Mul):
        left, right = _value(node.left, values), _value(node.right, values)
        for seq, times in ((left, right), (right, left)):
            size, count = _length(seq), _int(times)
            if size is not None and count is not None:
                if size * count > MAX_ITEMS:
                    raise _Bomb(f"repeating a value {count} times", MAX_ITEMS, "items", "*")
                return _Sized(size * count, _item(seq))
        if _int(left) is not None and _int(right) is not None:
            return left * right
        raise _Unknown
    if isinstance(node, nodes.Add | nodes.Concat):
        parts = [node.left, node.right] if isinstance(node, nodes.Add) else node.nodes
        evaluated = [_value(part, values) for part in parts]
        sizes = [_length(part) for part in evaluated]
        if isinstance(node, nodes.Add) and all(_int(part) is not None for part in evaluated):
            return sum(evaluated)
        if all(size is not None for size in sizes):
            total = sum(size or 0 for size in sizes)
            if total > MAX_TEXT:
                raise _Bomb("the text", MAX_TEXT, "characters", "~" if isinstance(node, nodes.Concat) else "+")
            return _Sized(total)
        raise _Unknown
    if isinstance(node, nodes.Mod):
        left, right = _value(node.left, values), _value(node.right, values)
        if isinstance(left, str):
            _printf(left, right)
        raise _Unknown
    if isinstance(node, nodes.Call):
        return _call(node, values)
    if isinstance(node, nodes.Filter) and node.node is not None:
        return _filter(node, values)
    raise _Unknown


def _printf(text: str, args: Any) -> None:
    arguments = args if isinstance(args, tuple) else (args,)
    for match in _PRINTF.finditer(text):
        for part in match.groups():
            if part == "*":
                _wide("a '*' width in '%'", *arguments)
            elif part:
                _wide("a width in '%'", int(part))


def _format_spec(text: str, args: list[Any]) -> None:
    try:
        specs = [spec for _, _, spec, _ in string.Formatter().parse(text) if spec]
    except ValueError:
        return
    for spec in specs:
        if "{" in spec:
            _wide("a width in format()", *args)
        for digits in re.findall(r"[0-9]+", spec):
            _wide("a width in format()", int(digits))


def _call(node: nodes.Call, values: dict[str, Any]) -> Any:
    args = [_maybe(arg, values) for arg in node.args]
    callee = node.node
    if isinstance(callee, nodes.Name) and callee.name == "range":
        numbers = [_int(arg) for arg in args]
        if numbers and all(n is not None for n in numbers):
            size = len(range(*numbers[:3]))  # type: ignore[arg-type]
            if size > MAX_RANGE:
                raise _Bomb(f"range() of {size} numbers", MAX_RANGE, "numbers", "range")
            return _Sized(size)
        raise _Unknown
    if isinstance(callee, nodes.Getattr) and callee.attr == "fromkeys" and args:
        keys, value = _length(args[0]), _length(args[1]) if len(args) > 1 else 4
        if keys is not None and value is not None:
            return _Sized(keys, value + 2 + _item(args[0]))  # printed: one "key: value" per key
    if isinstance(callee, nodes.Getattr):
        owner = _maybe(callee.node, values)
        if callee.attr in _WIDTH_METHODS:
            if callee.attr == "expandtabs" and isinstance(owner, str) and args and _int(args[0]) is not None:
                _wide("'.expandtabs()'", (owner.count("\t") or 1) * args[0])
            else:
                _wide(f"'.{callee.attr}()'", *args)
        if isinstance(owner, str) and callee.attr in ("format", "format_map"):
            _format_spec(owner, args)
        if callee.attr == "replace" and len(args) >= 2:
            _replace(owner, args[0], args[1])
    raise _Unknown


def _replace(text: Any, old: Any, new: Any) -> None:
    """At worst every ``old`` in ``text`` is replaced: its length over ``old``'s, times the growth."""
    size, old_size, new_size = _length(text), _length(old), _length(new)
    if size is None or old_size is None or new_size is None:
        return
    if size + (size // max(old_size, 1) + 1) * max(new_size - old_size, 0) > MAX_TEXT:
        raise _Bomb("the text of replace", MAX_TEXT, "characters", "replace")


def _filter(node: nodes.Filter, values: dict[str, Any]) -> Any:
    args = [_maybe(arg, values) for arg in node.args]
    subject = _maybe(node.node, values) if node.node is not None else None
    if node.name in _WIDTH_FILTERS:
        _wide(f"'|{node.name}'", *args[:1])
    elif node.name == "replace" and len(args) >= 2:
        _replace(subject, args[0], args[1])
    elif node.name == "format" and isinstance(subject, str):
        _printf(subject, tuple(args))
    elif node.name == "list" and _length(subject) is not None:
        return _Sized(_length(subject) or 0)
    elif node.name == "join" and _length(subject) is not None:
        separator = _length(args[0]) if args else 0
        if separator is not None and (_length(subject) or 0) * (_item(subject) + separator) > MAX_TEXT:
            raise _Bomb("the text of join", MAX_TEXT, "characters", "join")
    raise _Unknown


def _maybe(node: nodes.Node, values: dict[str, Any]) -> Any:
    """A constant value, or None when not constant (a bomb inside still counts)."""
    try:
        return _value(node, values)
    except (_Unknown, *_NOT_CONSTANT):
        return None


def _loops(tree: nodes.Template, values: dict[str, Any]) -> Iterator[_Finding]:
    """Nested loops whose constant counts multiply past the loop budget of a render."""

    def count(loop: nodes.For) -> int | None:
        target = loop.iter
        if isinstance(target, nodes.Filter) and target.name == "_loop_budget" and target.node is not None:
            target = target.node  # the sandbox wraps every loop's iterable
        return _length(_maybe(target, values))

    def walk(node: nodes.Node, product: int) -> Iterator[_Finding]:
        for child in node.iter_child_nodes():
            if isinstance(child, nodes.For):
                times = count(child)
                total = product * times if times is not None else product
                if times is not None and total > MAX_LOOPS:
                    yield _Finding(
                        f"these loops would run {total:,} times, more than the sandbox allows "
                        f"({MAX_LOOPS:,} iterations); the render would fail",
                        child.lineno,
                        "for",
                    )
                    continue
                yield from walk(child, total)
            else:
                yield from walk(child, product)

    yield from walk(tree, 1)


def _recursion(tree: nodes.Template) -> Iterator[_Finding]:
    """A macro whose body calls itself outside any ``if``: it can never stop."""
    for macro in tree.find_all(nodes.Macro):
        pending: list[nodes.Node] = list(macro.body)
        while pending:
            node = pending.pop()
            if isinstance(node, nodes.If | nodes.CondExpr | nodes.And | nodes.Or | nodes.Macro):
                continue
            if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name == macro.name:
                yield _Finding(
                    f"macro '{macro.name}' calls itself with no condition, so it never ends (the render would fail)",
                    node.lineno,
                    f"{macro.name}(",
                )
                break
            pending.extend(node.iter_child_nodes())
