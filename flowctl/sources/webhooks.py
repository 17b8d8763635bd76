"""Webhook sources: authenticate a delivery, map its JSON payload to record changes.

Nothing here knows HTTP frameworks: :meth:`WebhookSource.authenticate` and
:meth:`WebhookSource.changes` take the headers, the raw body and the time, and either return the
``NewChange`` list or raise a :class:`RequestError` whose class says the HTTP status. The same
errors (``sources.errors``), :func:`~flowctl.sources.payloads.parse_json` and
:func:`~flowctl.sources.checks.check_change` serve the records API in ``runtime.api`` too.

Authentication (``auth:``)

* ``hmac``: the header ``signature_header`` (default ``X-Signature``) carries the hex
  HMAC-SHA256 of the raw body keyed with ``secret``, optionally written ``sha256=<hex>``.
  Timestamped variant: when the request also carries ``X-Timestamp: <unix seconds>``, the
  signature covers ``<timestamp>.<body>`` instead, and a timestamp more than 5 minutes from now
  (either way) is refused, so a captured delivery cannot be replayed later. Within the window a
  repeat is harmless when the map has an ``event_id`` (see below).
* ``bearer``: ``Authorization: Bearer <secret>``.
* ``body_token``: a shared token in a field of the parsed body, ``field`` a dotted path
  (``auth.application_token`` for Bitrix24's ``auth[application_token]``), compared in constant
  time with ``secret``. The body is parsed before this check, so only its size limit guards the
  parser; the token is all the sender proves (Bitrix24 signs nothing).
* ``zalo_oa``: Zalo Official Account events: ``X-ZEvent-Signature: mac=<hex>``, the SHA-256 of
  ``app_id + body + timestamp + secret`` (the OA secret key), ``timestamp`` being the field of
  the JSON body (milliseconds; seconds are read as such when the value is below 10^11). A
  timestamp more than 5 minutes from now is refused, as with ``hmac``.
* ``none``: anyone may post (keep such sources on a private network).

Secrets are ``${ENV}`` references resolved when the source is built; a secret that resolves
empty makes the source answer 500 (misconfigured) rather than accept unsigned deliveries.

Mapping (``map:``) — Jinja2 templates over ``payload`` (the JSON body, or one item when the body
is a list; a form body, read into nested objects by ``sources.forms``) and ``headers`` (lower-case
names; ``authorization``, ``cookie`` and the signature
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

Fetch (``fetch:``, ``sources.fetch``): the full record an event only names is read from the
sender's REST API before mapping, and the map reads it as ``fetched``.

A template that is a single ``{{ expression }}`` keeps the expression's type (a number stays a
number, ``{{ payload.data }}`` gives the mapping itself); any other template gives text.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from flowctl.ports import ChangeOp, NewChange
from flowctl.sources.checks import fingerprint
from flowctl.sources.errors import Invalid, Misconfigured, PayloadTooLarge, RequestError, Unauthorized
from flowctl.sources.fetch import Fetcher
from flowctl.sources.forms import parse_payload
from flowctl.sources.mapping import MapProblem, Value, compile_value
from flowctl.sources.payloads import MAX_DEPTH, json_type, parse_json
from flowctl.spec import model as m
from flowctl.spec.env import needed, substitute

REPLAY_WINDOW_SECONDS = 300
TIMESTAMP_HEADER = "X-Timestamp"
ZALO_SIGNATURE_HEADER = "X-ZEvent-Signature"
SECRET_SCHEMES = ("hmac", "bearer", "body_token", "zalo_oa")  # the schemes that need a secret
MAX_ITEMS = 1000  # items of one list delivery
_OPS: Mapping[str, ChangeOp] = {
    "put": "put",
    "create": "put",
    "replace": "put",
    "patch": "patch",
    "update": "patch",
    "upsert": "patch",
    "move": "move",
    "delete": "delete",
    "remove": "delete",
    "restore": "restore",
    "undelete": "restore",
    "event": "event",
}


def resolve_secret(text: str, env: Mapping[str, str]) -> str:
    """``text`` with its ``${ENV}`` references resolved as channels resolve theirs (``${NAME}``,
    ``${NAME:-default}``, ``$${NAME}``); '' when a variable it needs is unset or empty, so that
    the caller refuses to work without its secret."""
    if any(not env.get(name) for name in needed(text)):
        return ""
    return substitute(text, env)


def _fresh(sent: float, now: datetime, what: str) -> None:
    """Refuse a delivery stamped more than the replay window away from now (either way)."""
    age = now.timestamp() - sent
    if not math.isfinite(age) or abs(age) > REPLAY_WINDOW_SECONDS:
        raise Unauthorized(
            f"{what} is more than {REPLAY_WINDOW_SECONDS // 60} minutes from now: "
            "a replayed or delayed delivery is refused"
        )


def _without(payload: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    """``payload`` with the field at ``path`` removed (copying only the mappings on the way)."""
    head, *rest = path
    if not rest:
        return {k: v for k, v in payload.items() if k != head}
    return {**payload, head: _without(payload[head], tuple(rest))}


def _plain(value: Any, where: str, depth: int = 0) -> Any:
    """``value`` as plain JSON data (tuples become lists), or a problem naming ``where``."""
    if depth > MAX_DEPTH:
        raise MapProblem(f"{where} is nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise MapProblem(f"{where} gave {value}, which is not a JSON number")
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v, f"{where}.{k}", depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    raise MapProblem(f"{where} gave a {type(value).__name__}, which is not JSON data")


_TEXT_TYPES = frozenset({"string", "text", "user", "url", "email", "phone", "enum", "ref", "date", "datetime"})
_NUMBER = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")
_STAMP = re.compile(r"[0-9]{1,20}")  # Zalo's timestamp: unix milliseconds as text


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
        raise MapProblem(f"{where} must give text, not {json_type(value)}")
    text = str(value).strip()
    if not text:
        raise MapProblem(f"{where} gave an empty value")
    return text


class WebhookSource:
    """One ``kind: Source`` of type webhook, compiled once: auth, limits and the map."""

    def __init__(self, source: m.Source, env: Mapping[str, str]) -> None:
        self.name = source.name
        self.path = source.path
        self.auth = source.auth
        self.secret = resolve_secret(source.secret, env).encode() if source.secret else b""
        self.app_id = resolve_secret(source.app_id, env) if source.app_id else ""
        self.token_field = tuple(source.auth_field.split(".")) if source.auth_field else ()
        header = source.signature_header or "X-Signature"
        zalo_default = self.auth == "zalo_oa" and header == "X-Signature"
        self.signature_header = ZALO_SIGNATURE_HEADER if zalo_default else header
        self.max_bytes = source.max_bytes
        self._hidden = {"authorization", "cookie", self.signature_header.lower()}
        spec = dict(source.map)
        for required in ("object", "id"):
            if required not in spec:
                raise ValueError(f"source {self.name}: map.{required} is required")
        self._map: dict[str, Value] = {key: compile_value(value, f"map.{key}") for key, value in spec.items()}
        self._event_id_text = spec.get("event_id", "")
        self.fetcher = Fetcher(self.name, source.fetch, env) if source.fetch else None  # ``fetched`` in the map

    @property
    def misconfigured(self) -> str:
        """Why the source cannot accept anything ('' when it can)."""
        if self.auth in SECRET_SCHEMES and not self.secret:
            return f"webhook source {self.name} has no secret (is its ${{ENV}} variable set?)"
        if self.auth == "zalo_oa" and not self.app_id:
            return f"webhook source {self.name} has no app_id (is its ${{ENV}} variable set?)"
        if self.auth == "body_token" and not all(self.token_field):
            return f"webhook source {self.name} names no body field for its token (auth.field)"
        return ""

    # ---------------------------------------------------------------- auth

    def check_headers(self, headers: Mapping[str, str]) -> None:
        """What can be checked before reading the body: the secret, bearer token, signature header."""
        if self.misconfigured:
            raise Misconfigured(f"webhook source {self.name} is not configured; see the daemon's log")
        if self.auth == "bearer":
            scheme, _, token = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.secret):
                raise Unauthorized(
                    f"webhook {self.path} needs Authorization: Bearer <its secret>",
                    headers={"WWW-Authenticate": "Bearer"},
                )
        elif self.auth == "hmac" and not headers.get(self.signature_header):
            raise Unauthorized(
                f"webhook {self.path} needs a {self.signature_header} header (hex HMAC-SHA256 of the body)"
            )
        elif self.auth == "zalo_oa" and not headers.get(self.signature_header):
            raise Unauthorized(f"webhook {self.path} needs a {self.signature_header}: mac=<hex> header (Zalo OA)")

    def authenticate(self, headers: Mapping[str, str], body: bytes, now: datetime) -> None:
        """Raise :class:`Unauthorized` unless the delivery is signed (or carries the token)."""
        self.check_headers(headers)
        if self.auth == "zalo_oa":
            self._zalo(headers, body, now)
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
            raise Unauthorized(
                f"the {self.signature_header} signature does not match {covers} "
                "(expected hex HMAC-SHA256 with the source's secret)"
            )
        if stamp is not None:
            try:
                sent = float(stamp)
            except ValueError:
                raise Unauthorized(f"{TIMESTAMP_HEADER} must be unix seconds, not {stamp[:40]!r}") from None
            _fresh(sent, now, f"{TIMESTAMP_HEADER} {stamp[:40]}")

    def _zalo(self, headers: Mapping[str, str], body: bytes, now: datetime) -> None:
        """Zalo OA's ``mac``: SHA-256 of app id, raw body, the body's timestamp and the OA secret key."""
        given = headers.get(self.signature_header, "").strip()
        if given[:4].lower() == "mac=":
            given = given[4:].strip()
        try:
            payload = parse_json(body)
        except RequestError:
            payload = None
        stamp = payload.get("timestamp") if isinstance(payload, dict) else None
        if isinstance(stamp, bool) or not isinstance(stamp, str | int) or not _STAMP.fullmatch(str(stamp)):
            raise Unauthorized("a Zalo OA event must be a JSON object with its timestamp (milliseconds)")
        text = str(stamp)
        signed = self.app_id.encode() + body + text.encode() + self.secret
        expected = hashlib.sha256(signed).hexdigest().encode()
        if not hmac.compare_digest(given.lower().encode(), expected):
            raise Unauthorized(
                f"the {self.signature_header} mac does not match "
                "(expected hex SHA-256 of app_id + body + timestamp + the OA secret key)"
            )
        value = int(text)
        _fresh(value / 1000 if value >= 10**11 else value, now, f"the event's timestamp {text[:20]}")

    def check_payload(self, payload: Any) -> Any:
        """``body_token``: the token in the parsed body's ``field`` must equal the secret. Returns
        the payload without that field, so that no map can store or forward the token."""
        if self.auth != "body_token":
            return payload
        field = ".".join(self.token_field)
        value: Any = payload
        for key in self.token_field:
            value = value.get(key) if isinstance(value, dict) else None
        if not isinstance(value, str | int) or isinstance(value, bool) or not str(value):
            raise Unauthorized(f"webhook {self.path} needs its token in the body field {field}")
        if not hmac.compare_digest(str(value).encode(), self.secret):
            raise Unauthorized(f"the token in the body field {field} does not match the source's secret")
        return _without(payload, self.token_field)

    # ---------------------------------------------------------------- mapping

    def payload(self, headers: Mapping[str, str], body: bytes, now: datetime) -> Any:
        """An authenticated delivery's data: checked (signature, token), parsed by its
        Content-Type (JSON or a form), then checked again where the token is in the body."""
        self.authenticate(headers, body, now)
        return self.check_payload(parse_payload(body, headers.get("content-type")))

    def event_key(self, context: Mapping[str, Any]) -> str:
        """The map's event id for ``context`` before anything is fetched ('' without one, or when
        it cannot be computed yet); keys the pending fetch (``sources.fetch.pending_fetches``)."""
        if "event_id" not in self._map or "fetched" in str(self._event_id_text):
            return ""
        try:
            return _text(self._map["event_id"](context), "map.event_id")
        except MapProblem:
            return ""

    def visible(self, headers: Mapping[str, str]) -> dict[str, str]:
        """The headers a map may read (not the credentials)."""
        return {k: v for k, v in headers.items() if k.lower() not in self._hidden}

    def changes(
        self,
        payload: Any,
        headers: Mapping[str, str],
        now: datetime,
        objects: Mapping[str, m.ObjectType] = m.EMPTY,
        fetched: Sequence[Any] = (),
    ) -> list[NewChange]:
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
                change, event_id = self._change(item, visible, now, objects, fetched[index] if fetched else None)
            except MapProblem as exc:
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

    def _change(
        self,
        item: Any,
        headers: Mapping[str, str],
        now: datetime,
        objects: Mapping[str, m.ObjectType],
        fetched: Any = None,
    ) -> tuple[NewChange, str]:
        context = {"payload": item, "headers": headers}
        if fetched is not None:  # the full record sources.fetch read (``fetched`` in the map)
            context["fetched"] = fetched
        mapped = self._map
        object = _text(mapped["object"](context), "map.object")
        record_id = _text(mapped["id"](context), "map.id")
        event = _text(mapped["event"](context), "map.event") if "event" in mapped else ""
        op_text = _text(mapped["op"](context), "map.op").lower() if "op" in mapped else ("event" if event else "patch")
        op = _OPS.get(op_text)
        if op is None:
            raise MapProblem(f"map.op gave '{op_text}'; use one of: {', '.join(_OPS)}")
        fields: dict[str, Any] = {}
        if "fields" in mapped and op in ("put", "patch", "event"):
            value = _plain(mapped["fields"](context), "map.fields")
            if not isinstance(value, dict):
                raise MapProblem(f"map.fields must give an object of fields, not {json_type(value)}")
            fields = value
            obj = objects.get(object)
            if obj is not None and op != "event":
                fields = {name: _coerce(obj.fields.get(name), v) for name, v in fields.items()}
        data = fields
        if op == "event" and "data" in mapped:
            data = _plain(mapped["data"](context), "map.data")
            if not isinstance(data, dict):
                raise MapProblem(f"map.data must give an object, not {json_type(data)}")
        if op == "event" and not event:
            raise MapProblem("map.op is event but the map has no event")
        stage = _text(mapped["stage"](context), "map.stage") if "stage" in mapped and op in ("put", "move") else ""
        if op == "move" and not stage:
            raise MapProblem("map.op is move but the map has no stage")
        event_id = _text(mapped["event_id"](context), "map.event_id") if "event_id" in mapped else ""
        key = f"{self.name}:{event_id}" if event_id else uuid.uuid4().hex
        change = NewChange(
            object=object,
            record_id=record_id,
            op=op,
            idempotency_key=key,
            fields=fields if op != "event" else {},
            stage=stage,
            event=event,
            data=data if op == "event" else {},
            source=self.name,
            received_at=now,
        )
        return change, event_id
