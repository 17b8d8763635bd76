"""What ``validate`` reads from a template without rendering it: syntax problems, attempts to
reach Python internals or to exhaust the sandbox, and the fields and names it uses.

Everything here parses (cached) and never renders: the checks run on every string of a bundle.
"""

from __future__ import annotations

import functools
from collections.abc import Collection
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.parser import Parser

from flowctl.spec.jinja import hazards
from flowctl.spec.jinja.errors import FieldRef, Problem, TemplateError
from flowctl.spec.jinja.sandbox import environment


def syntax_message(exc: jinja2.TemplateSyntaxError, source: str, *, expression: bool) -> str:
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


def check_template(source: str, names: Collection[str] | None = None) -> list[Problem]:
    """Problems of a text template: syntax, unknown filters and what the sandbox would refuse
    (``hazards.py``); empty when it compiles and is safe. ``names``: the values its context gives,
    when known (then a name outside them is a problem too)."""
    return _check(source, expression=False, names=names)


def check_expression(source: str, names: Collection[str] | None = None) -> list[Problem]:
    """Problems of a condition, as :func:`check_template`."""
    if not source.strip():
        return [Problem(message="the condition is empty")]
    return _check(source, expression=True, names=names)


def _check(source: str, *, expression: bool, names: Collection[str] | None) -> list[Problem]:
    """Parse (cached, shared with the field analysis) instead of compiling to Python: the parse
    finds every syntax error, and the filters and tests the compiler would reject are looked up
    here. Compiling every string made ``validate`` twice as slow for nothing more."""
    try:
        tree = _parse(source, expression=expression)
    except TemplateError:
        try:
            _parse_raw(source, expression=expression)
        except jinja2.TemplateSyntaxError as exc:
            message = syntax_message(exc, source, expression=expression)
            return [Problem(message=message, offset=_line_offset(source, exc.lineno))]
        raise  # pragma: no cover - _parse and _parse_raw agree
    env = environment()
    problems = hazards.find(source, tree, None if names is None else frozenset(names))
    for node in tree.find_all((nodes.Filter, nodes.Test)):
        known = env.filters if isinstance(node, nodes.Filter) else env.tests
        if node.name not in known:
            kind = "filter" if isinstance(node, nodes.Filter) else "test"
            message = f"No {kind} named '{node.name}'."  # Jinja's own wording
            problems.append(Problem(message=message, offset=_line_offset(source, node.lineno)))
    return problems


@functools.lru_cache(maxsize=8192)
def _parse(source: str, *, expression: bool) -> nodes.Template:
    """The syntax tree of a template or condition (cached: checks ask for it several times)."""
    try:
        return _parse_raw(source, expression=expression)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(syntax_message(exc, source, expression=expression), source=source) from exc


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


def template_tree(source: str) -> nodes.Template:
    """The parsed syntax tree of a text template (cached); raises :class:`TemplateError`."""
    return _parse(source, expression=False)


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
