"""Templates at the leaves of a mapping: how a source's ``map:`` turns a payload into values.

:func:`compile_value` compiles a YAML value once: a string is a Jinja2 template (a single
``{{ expression }}`` keeps the expression's type), a mapping or list is compiled member by member,
anything else is a constant. Evaluating it raises :class:`MapProblem` naming the place in the map
and what went wrong; webhook and SQL polling sources share it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from flowctl.spec.templating import TemplateError, compile_expression, compile_template


class MapProblem(Exception):
    """A value of the map could not be computed for this payload; the message names where."""


Value = Callable[[Mapping[str, Any]], Any]
_SINGLE = re.compile(r"^\s*\{\{-?(.*?)-?\}\}\s*$", re.DOTALL)


def compile_value(value: Any, where: str) -> Value:
    """A function of the template context giving ``value`` evaluated (templates at the leaves).

    A single ``{{ expression }}`` keeps its type; other templates give text; other values are
    constants. Raises :class:`TemplateError` on a syntax error.
    """
    if isinstance(value, str):
        single = _SINGLE.match(value)
        if single and not any(mark in single[1] for mark in ("{{", "}}", "{%", "{#")):
            return _leaf(compile_expression(single[1].strip()).evaluate, where)
        template = compile_template(value)
        return _leaf(template.render, where)
    if isinstance(value, Mapping):
        parts = {str(k): compile_value(v, f"{where}.{k}") for k, v in value.items()}
        return lambda context: {k: part(context) for k, part in parts.items()}
    if isinstance(value, list | tuple):
        items = [compile_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
        return lambda context: [item(context) for item in items]
    return lambda context: value


def _leaf(fn: Callable[[Mapping[str, Any]], Any], where: str) -> Value:
    def evaluate(context: Mapping[str, Any]) -> Any:
        try:
            return fn(context)
        except TemplateError as exc:
            raise MapProblem(f"{where}: {exc.message}") from None
        except Exception as exc:  # noqa: BLE001 - whatever a template does with hostile input is a 4xx
            raise MapProblem(f"{where}: {type(exc).__name__}: {exc}") from None

    return evaluate
