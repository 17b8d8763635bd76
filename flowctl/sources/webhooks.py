"""Webhook sources: authenticate a delivery, map its JSON payload to record changes.

Nothing here knows HTTP frameworks: :meth:`WebhookSource.authenticate` and
:meth:`WebhookSource.changes` take the headers, the raw body and the time, and either return the
``NewChange`` list or raise a :class:`RequestError` whose class says the HTTP status. The same
errors, :func:`parse_json` and :func:`check_change` serve the records API in ``runtime.api``.

Authentication (``auth:``)

* ``hmac``: the header ``signature_header`` (default ``X-Signature``) carries the hex
  HMAC-SHA256 of the raw body keyed with ``secret``, optionally written ``sha256=<hex>``.
  Timestamped variant: when the request also carries ``X-Timestamp: <unix seconds>``, the
  signature covers ``<timestamp>.<body>`` instead, and a timestamp more than 5 minutes from now
  (either way) is refused, so a captured delivery cannot be replayed later. Within the window a
  repeat is harmless when the map has an ``event_id`` (see below).
* ``bearer``: ``Authorization: Bearer <secret>``.
* ``none``: anyone may post (keep such sources on a private network).

Secrets are ``${ENV}`` references resolved when the source is built; a secret that resolves
empty makes the source answer 500 (misconfigured) rather than accept unsigned deliveries.

Mapping (``map:``) — Jinja2 templates over ``payload`` (the JSON body, or one item when the body
is a list) and ``headers`` (lower-case names; ``authorization``, ``cookie`` and the signature
header are left out):

* ``object``, ``id`` (required): which record.
* ``op``: put (alias create, replace), patch (update, upsert; the default), move, delete or
  event (the default when ``event`` is given).
* ``fields``: a mapping of field → template, or one template giving the whole mapping.
* ``stage`` (put, move), ``event`` and ``data`` (event; default: what ``fields`` gives).
* ``event_id``: the delivery's id; the change's idempotency key becomes ``<source>:<event_id>``
  so a redelivered webhook changes nothing. Inside one list delivery an item giving an event id
  and the same change as an earlier item is a repeat and dropped; distinct items under one id
  (an id of the whole delivery) are keyed ``<source>:<event_id>:<n>`` in order. Without
  ``event_id`` every item is a new change. API Idempotency-Keys live apart (see ``runtime.api``).

A template that is a single ``{{ expression }}`` keeps the expression's type (a number stays a
number, ``{{ payload.data }}`` gives the mapping itself); any other template gives text.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, ClassVar

from flowctl.channels.base import resolve_env
from flowctl.channels.env import needed
from flowctl.engine.records import check_fields, check_stage
from flowctl.ports import ChangeOp, NewChange
from flowctl.spec import model as m
from flowctl.spec.templating import TemplateError, compile_expression, compile_template

MAX_DEPTH = 32  # JSON nesting deeper than this is refused (no CRM sends it; parsers choke on it)
MAX_ITEMS = 1000  # items of one list delivery
REPLAY_WINDOW_SECONDS = 300
TIMESTAMP_HEADER = "X-Timestamp"

# --------------------------------------------------------------------------------------------
# errors: one class per HTTP answer


class RequestError(Exception):
    """A request the daemon refuses; ``status`` and ``code`` go into the error body."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"

    def __init__(self, message: str, details: Sequence[str] = (), headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = list(details)
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadRequest(RequestError):
    status, code = 400, "bad_request"


class InvalidJson(RequestError):
    status, code = 400, "invalid_json"


class Unauthorized(RequestError):
    status, code = 401, "unauthorized"


class NotFound(RequestError):
    status, code = 404, "not_found"


class MethodNotAllowed(RequestError):
    status, code = 405, "method_not_allowed"


class Conflict(RequestError):
    status, code = 409, "conflict"


class PayloadTooLarge(RequestError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(RequestError):
    status, code = 415, "unsupported_media_type"


class Invalid(RequestError):
    """The request parsed but does not fit: every problem is listed in ``details``."""

    status, code = 422, "invalid"

    @classmethod
    def of(cls, problems: Sequence[str]) -> Invalid:
        if len(problems) == 1:
            return cls(problems[0], problems)
        return cls(f"{len(problems)} problems: " + "; ".join(problems), problems)


class Misconfigured(RequestError):
    status, code = 500, "misconfigured"


class InternalError(RequestError):
    status, code = 500, "internal"


class Unavailable(RequestError):
    status, code = 503, "unavailable"

    def __init__(self, message: str, details: Sequence[str] = (), retry_after: int = 1) -> None:
        super().__init__(message, details, {"Retry-After": str(retry_after)})


# --------------------------------------------------------------------------------------------
# helpers shared with the records API

def resolve_secret(text: str, env: Mapping[str, str]) -> str:
    """``text`` with its ``${ENV}`` references resolved as channels resolve theirs (``${NAME}``,
    ``${NAME:-default}``, ``$${NAME}``); '' when a variable it needs is unset or empty, so that
    the caller refuses to work without its secret."""
    if any(not env.get(name) for name in needed(text)):
        return ""
    return resolve_env(text, env)


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


def parse_json(body: bytes) -> Any:
    """The JSON value of ``body``; raises :class:`InvalidJson` naming what is wrong with it."""
    if not body.strip():
        raise InvalidJson("the request body is empty; send a JSON document")
    try:
        value = json.loads(body, parse_float=_finite, parse_constant=_no_constants)
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


def _emptied_required(bundle: m.Bundle, object: str, fields: Mapping[str, Any]) -> list[str]:
    obj = bundle.objects.get(object)
    if obj is None:
        return []
    return [f"field '{name}' is required on {object} and cannot be emptied"
            for name, value in fields.items()
            if value in (None, "") and (spec := obj.fields.get(name)) is not None and spec.required]  # fmt: skip


def has_nul(value: Any) -> bool:
    """Whether text anywhere in ``value`` (keys included) holds a NUL character, which PostgreSQL
    cannot store in text or jsonb; iterative, like :func:`_depth`."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                return True
        elif isinstance(node, Mapping):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list | tuple):
            stack.extend(node)
    return False


NUL_PROBLEM = "text must not contain NUL (\\u0000) characters"


def check_change(bundle: m.Bundle, change: NewChange) -> list[str]:
    """Every problem of a requested change against the configuration ('' list when it is fine).

    Moves are checked against the stored record separately (that needs the store).
    """
    if has_nul([change.object, change.record_id, change.stage, change.pipeline, change.event, change.fields,
                change.data]):  # fmt: skip
        return [NUL_PROBLEM]  # the same answer on every store, not a 503 from PostgreSQL alone
    if change.object not in bundle.objects:
        return check_fields(bundle, change.object, {}, complete=False)
    if change.op == "put":
        return [*check_fields(bundle, change.object, change.fields, complete=True),
                *check_stage(bundle, change.object, change.stage, change.pipeline)]  # fmt: skip
    if change.op == "patch":
        return [*check_fields(bundle, change.object, change.fields, complete=False),
                *_emptied_required(bundle, change.object, change.fields)]  # fmt: skip
    if change.op == "move":
        if not change.stage:
            return ["a move needs the stage to move to"]
        return check_stage(bundle, change.object, change.stage, change.pipeline)
    if change.op == "event" and not change.event:
        return ["an event needs a name"]
    return []


def fingerprint(change: NewChange) -> str:
    """What a change asks for, as the sha256 hex of its canonical JSON (not its key, source or
    time): equal for a repeat of the same request, different for another request under the key."""
    text = json.dumps([change.op, change.object, change.record_id, change.stage, change.pipeline, change.event,
                       change.fields, change.data], sort_keys=True, separators=(",", ":"), default=str)  # fmt: skip
    return hashlib.sha256(text.encode()).hexdigest()


# --------------------------------------------------------------------------------------------
# mapping


class _MapProblem(Exception):
    pass


Value = Callable[[Mapping[str, Any]], Any]
_SINGLE = re.compile(r"^\s*\{\{-?(.*?)-?\}\}\s*$", re.DOTALL)
_OPS: Mapping[str, ChangeOp] = {
    "put": "put", "create": "put", "replace": "put",
    "patch": "patch", "update": "patch", "upsert": "patch",
    "move": "move", "delete": "delete", "remove": "delete", "event": "event",
}  # fmt: skip


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
            raise _MapProblem(f"{where}: {exc.message}") from None
        except Exception as exc:  # noqa: BLE001 - whatever a template does with hostile input is a 4xx
            raise _MapProblem(f"{where}: {type(exc).__name__}: {exc}") from None

    return evaluate


def _plain(value: Any, where: str, depth: int = 0) -> Any:
    """``value`` as plain JSON data (tuples become lists), or a problem naming ``where``."""
    if depth > MAX_DEPTH:
        raise _MapProblem(f"{where} is nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _MapProblem(f"{where} gave {value}, which is not a JSON number")
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}", depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    raise _MapProblem(f"{where} gave a {type(value).__name__}, which is not JSON data")


_TEXT_TYPES = frozenset({"string", "text", "user", "url", "email", "phone", "enum", "ref", "date", "datetime"})
_NUMBER = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")


def _coerce(spec: m.FieldSpec | None, value: Any) -> Any:
    """A mapped value converted to its field's type when that is exact (CRMs send numbers as
    text and ids as numbers); anything else is left for ``check_fields`` to report."""
    if spec is None or value is None or isinstance(value, bool):
        return value
    if spec.type in _TEXT_TYPES and isinstance(value, int | float):
        return str(value)
    if isinstance(value, str) and _NUMBER.match(value.strip()):
        text = value.strip()
        if spec.type == "integer" and "." not in text:
            return int(text)
        if spec.type in ("number", "money"):
            return int(text) if "." not in text else float(text)
    if spec.type == "boolean" and isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


def _text(value: Any, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _MapProblem(f"{where} must give text, not {json_type(value)}")
    text = str(value).strip()
    if not text:
        raise _MapProblem(f"{where} gave an empty value")
    return text


class WebhookSource:
    """One ``kind: Source`` of type webhook, compiled once: auth, limits and the map."""

    def __init__(self, source: m.Source, env: Mapping[str, str]) -> None:
        self.name = source.name
        self.path = source.path
        self.auth = source.auth
        self.secret = resolve_secret(source.secret, env).encode() if source.secret else b""
        self.signature_header = source.signature_header or "X-Signature"
        self.max_bytes = source.max_bytes
        self._hidden = {"authorization", "cookie", self.signature_header.lower()}
        spec = dict(source.map)
        for required in ("object", "id"):
            if required not in spec:
                raise ValueError(f"source {self.name}: map.{required} is required")
        self._map: dict[str, Value] = {key: compile_value(value, f"map.{key}") for key, value in spec.items()}

    @property
    def misconfigured(self) -> str:
        """Why the source cannot accept anything ('' when it can)."""
        if self.auth in ("hmac", "bearer") and not self.secret:
            return f"webhook source {self.name} has no secret (is its ${{ENV}} variable set?)"
        return ""

    # ---------------------------------------------------------------- auth

    def check_headers(self, headers: Mapping[str, str]) -> None:
        """What can be checked before reading the body: the secret, bearer token, signature header."""
        if self.misconfigured:
            raise Misconfigured(f"webhook source {self.name} is not configured; see the daemon's log")
        if self.auth == "bearer":
            scheme, _, token = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.secret):
                raise Unauthorized(f"webhook {self.path} needs Authorization: Bearer <its secret>",
                                   headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
        elif self.auth == "hmac" and not headers.get(self.signature_header):
            raise Unauthorized(f"webhook {self.path} needs a {self.signature_header} header "
                               "(hex HMAC-SHA256 of the body)")  # fmt: skip

    def authenticate(self, headers: Mapping[str, str], body: bytes, now: datetime) -> None:
        """Raise :class:`Unauthorized` unless the delivery is signed (or carries the token)."""
        self.check_headers(headers)
        if self.auth != "hmac":
            return
        given = headers.get(self.signature_header, "").strip()
        if given[:7].lower() == "sha256=":
            given = given[7:]
        stamp = headers.get(TIMESTAMP_HEADER)
        signed = body if stamp is None else stamp.strip().encode() + b"." + body
        expected = hmac.new(self.secret, signed, hashlib.sha256).hexdigest().encode()
        if not hmac.compare_digest(given.lower().encode(), expected):
            covers = "the body" if stamp is None else f"'<{TIMESTAMP_HEADER}>.<body>'"
            raise Unauthorized(f"the {self.signature_header} signature does not match {covers} "
                               "(expected hex HMAC-SHA256 with the source's secret)")  # fmt: skip
        if stamp is not None:
            try:
                sent = float(stamp)
            except ValueError:
                raise Unauthorized(f"{TIMESTAMP_HEADER} must be unix seconds, not {stamp[:40]!r}") from None
            age = now.timestamp() - sent
            if not math.isfinite(age) or abs(age) > REPLAY_WINDOW_SECONDS:
                raise Unauthorized(f"{TIMESTAMP_HEADER} {stamp[:40]} is more than {REPLAY_WINDOW_SECONDS // 60} "
                                   "minutes from now: a replayed or delayed delivery is refused")  # fmt: skip

    # ---------------------------------------------------------------- mapping

    def changes(self, payload: Any, headers: Mapping[str, str], now: datetime,
                objects: Mapping[str, m.ObjectType] = m.EMPTY) -> list[NewChange]:  # fmt: skip
        """The changes a (parsed, authenticated) delivery asks for; raises :class:`Invalid`.

        With ``objects`` (the bundle's object types), mapped field values are converted to their
        field's type where that is exact: ``"1500"`` for a money field becomes 1500, ``901234567``
        for a phone field becomes text, ``"true"`` for a boolean becomes true.
        """
        items = payload if isinstance(payload, list) else [payload]
        if len(items) > MAX_ITEMS:
            raise PayloadTooLarge(f"a delivery may hold at most {MAX_ITEMS} items, this one has {len(items)}")
        visible = {k: v for k, v in headers.items() if k.lower() not in self._hidden}
        changes: list[NewChange] = []
        problems: list[str] = []
        event_ids: list[str] = []
        for index, item in enumerate(items):
            prefix = f"item {index}: " if isinstance(payload, list) else ""
            try:
                change, event_id = self._change(item, visible, now, objects)
            except _MapProblem as exc:
                problems.append(prefix + str(exc))
                continue
            changes.append(change)
            event_ids.append(event_id)
        if problems:
            raise Invalid.of(problems)
        return self._keyed(changes, event_ids) if len(changes) > 1 else changes

    def _keyed(self, changes: list[NewChange], event_ids: list[str]) -> list[NewChange]:
        """The changes of one delivery with its repeats dropped: an item mapping to the event id
        and the same change as an earlier item is that item again. Distinct items sharing one
        event id (an id of the whole delivery, from a header say) are keyed
        ``<source>:<event_id>:<n>``, ``n`` counting the distinct items of that id in order, so the
        same delivery sent again is still a repeat. Items without an event id keep their own keys."""
        groups: dict[str, list[tuple[str, NewChange]]] = {}
        order: list[NewChange | str] = []  # a change without an event id, or the event id of a group
        for change, event_id in zip(changes, event_ids, strict=True):
            if not event_id:
                order.append(change)
                continue
            group = groups.get(event_id)
            if group is None:
                group = groups[event_id] = []
                order.append(event_id)
            asked = fingerprint(change)
            if all(seen != asked for seen, _ in group):
                group.append((asked, change))
        keyed: list[NewChange] = []
        for entry in order:
            if isinstance(entry, NewChange):
                keyed.append(entry)
                continue
            group = groups[entry]
            if len(group) == 1:
                keyed.append(group[0][1])
            else:
                keyed += [replace(c, idempotency_key=f"{c.idempotency_key}:{n}") for n, (_, c) in enumerate(group)]
        return keyed

    def _change(self, item: Any, headers: Mapping[str, str], now: datetime,
                objects: Mapping[str, m.ObjectType]) -> tuple[NewChange, str]:  # fmt: skip
        context = {"payload": item, "headers": headers}
        mapped = self._map
        object = _text(mapped["object"](context), "map.object")
        record_id = _text(mapped["id"](context), "map.id")
        event = _text(mapped["event"](context), "map.event") if "event" in mapped else ""
        op_text = _text(mapped["op"](context), "map.op").lower() if "op" in mapped else ("event" if event else "patch")
        op = _OPS.get(op_text)
        if op is None:
            raise _MapProblem(f"map.op gave '{op_text}'; use one of: {', '.join(_OPS)}")
        fields: dict[str, Any] = {}
        if "fields" in mapped and op in ("put", "patch", "event"):
            value = _plain(mapped["fields"](context), "map.fields")
            if not isinstance(value, dict):
                raise _MapProblem(f"map.fields must give an object of fields, not {json_type(value)}")
            fields = value
            obj = objects.get(object)
            if obj is not None and op != "event":
                fields = {name: _coerce(obj.fields.get(name), v) for name, v in fields.items()}
        data = fields
        if op == "event" and "data" in mapped:
            data = _plain(mapped["data"](context), "map.data")
            if not isinstance(data, dict):
                raise _MapProblem(f"map.data must give an object, not {json_type(data)}")
        if op == "event" and not event:
            raise _MapProblem("map.op is event but the map has no event")
        stage = _text(mapped["stage"](context), "map.stage") if "stage" in mapped and op in ("put", "move") else ""
        if op == "move" and not stage:
            raise _MapProblem("map.op is move but the map has no stage")
        event_id = _text(mapped["event_id"](context), "map.event_id") if "event_id" in mapped else ""
        key = f"{self.name}:{event_id}" if event_id else uuid.uuid4().hex
        change = NewChange(object=object, record_id=record_id, op=op, idempotency_key=key,
                           fields=fields if op != "event" else {}, stage=stage, event=event,
                           data=data if op == "event" else {}, source=self.name, received_at=now)  # fmt: skip
        return change, event_id
