"""JSON hardening: what a request body may be before anything maps or stores it.

:func:`parse_json` refuses, with a message naming what is wrong, what ``json.loads`` would accept
but nothing downstream can handle: empty bodies, numbers too large for a float, NaN and Infinity,
nesting deeper than ``MAX_DEPTH``, lone surrogate escapes. :func:`has_nul` finds NUL characters,
which PostgreSQL cannot store in text or jsonb. The records API and webhook deliveries share them.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from flowctl.sources.errors import InvalidJson

MAX_DEPTH = 32  # JSON nesting deeper than this is refused (no CRM sends it; parsers choke on it)


def json_type(value: object) -> str:
    """The JSON name of a parsed value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return {dict: "object", list: "array", str: "string", int: "integer", float: "number"}.get(
        type(value), type(value).__name__
    )


def _finite(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise ValueError(f"the number {text[:40]} is too large")
    return number


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


#: ``json.loads(…, parse_float=_finite, parse_constant=_no_constants)`` builds a decoder per call
_DECODER = json.JSONDecoder(parse_float=_finite, parse_constant=_no_constants)


def parse_json(body: bytes) -> Any:
    """The JSON value of ``body``; raises :class:`InvalidJson` naming what is wrong with it."""
    if not body.strip():
        raise InvalidJson("the request body is empty; send a JSON document")
    try:
        # as json.loads reads bytes: UTF-8, -16 or -32 as the first bytes tell, a BOM skipped
        value = _DECODER.decode(body.decode(json.detect_encoding(body), "surrogatepass"))
    except RecursionError:
        raise InvalidJson(f"the JSON is nested deeper than {MAX_DEPTH} levels") from None
    except UnicodeDecodeError:
        raise InvalidJson("the request body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise InvalidJson(f"the request body is not valid JSON: {exc.msg} at {where}") from None
    except ValueError as exc:  # a huge number, NaN/Infinity
        raise InvalidJson(f"the request body is not valid JSON: {exc}") from None
    # a value cannot nest deeper than it has brackets: most bodies skip the walk
    if body.count(b"{") + body.count(b"[") > MAX_DEPTH and _depth(value) > MAX_DEPTH:
        raise InvalidJson(f"the JSON is nested deeper than {MAX_DEPTH} levels")
    if _SURROGATE_ESCAPE.search(body) and _lone_surrogate(value):
        # json.loads accepts "\ud800" alone; no store can encode it, so it is bad input, not a 503
        raise InvalidJson("the request body is not valid JSON: a \\uD800-\\uDFFF escape outside a surrogate pair")
    return value


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            try:
                node.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def _depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0), iteratively so nothing recurses."""
    if not isinstance(value, dict | list):
        return 0
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return deepest


#: The types a parsed JSON body is made of.
_PLAIN = frozenset({str, dict, list, int, float, bool, type(None)})


def has_nul(value: Any) -> bool:
    """Whether text anywhere in ``value`` (keys included) holds a NUL character, which PostgreSQL
    cannot store in text or jsonb; iterative, like :func:`_depth`."""
    stack = [value]
    while stack:
        node = stack.pop()
        kind = type(node)
        if kind in _PLAIN:  # what JSON bodies hold, told apart without the Mapping ABC's check
            if kind is str and "\x00" in node:
                return True
            if kind is dict:
                stack.extend(node.keys())
                stack.extend(node.values())
            elif kind is list:
                stack.extend(node)
        elif isinstance(node, str):
            if "\x00" in node:
                return True
        elif isinstance(node, Mapping):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list | tuple):
            stack.extend(node)
    return False


NUL_PROBLEM = "text must not contain NUL (\\u0000) characters"
