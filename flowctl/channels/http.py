"""The ``http`` channel: SMS gateways, call centres and outbound webhooks over HTTP(S).

The request body is the channel's ``body`` (a JSON-shaped template, or a text template) rendered
with the message; without one, a ``webhook`` effect sends its own rendered ``body`` (to its own
``url`` when it has one) and any other effect sends its params as JSON. Every request carries
``Idempotency-Key: <outbox key>`` so a gateway can drop a resend.

``${ENV}`` references in the channel's url, headers and body are substituted into the *template*
(never into rendered record data, which could otherwise read any variable by containing
``${NAME}``). In a webhook effect, which arrives rendered, only names the config references are
resolved (see :func:`flowctl.channels.build_senders`).
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import weakref
from collections.abc import Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx

from flowctl.channels.base import (
    ENV_REFERENCE,
    PermanentFailure,
    Receipt,
    Secrets,
    TemporaryFailure,
    resolve_env,
    shorten,
)
from flowctl.channels.clients import ThreadClients
from flowctl.ports import OutboxRow
from flowctl.spec.model import Channel
from flowctl.spec.templating import TemplateError, compile_expression, compile_template

__all__ = ["HttpSender", "Request"]

DEFAULT_TIMEOUT = 30.0
#: Requests in flight at once per HTTP channel (the client pools its connections).
CONCURRENCY = 4
KEEPALIVE_SECONDS = 5.0  # an idle connection to a gateway is closed after this (httpx's default)
RETRY_STATUSES = frozenset({408, 429})
_WHOLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\{\{|\}\}).)*)\}\}\s*$", re.DOTALL)


class Request:
    """An HTTP request ready to send: what a channel makes of one outbox row."""

    __slots__ = ("content", "headers", "method", "url")

    def __init__(self, method: str, url: str, headers: dict[str, str], content: bytes) -> None:
        self.method = method
        self.url = url
        self.headers = headers
        self.content = content


class _MaskHttpxLog(logging.Filter):
    """httpx logs every request's full URL at INFO (``HTTP Request: POST https://…?key=…``); a
    channel's URL may carry a key or a password, which is masked here as in every other message."""

    def __init__(self) -> None:
        super().__init__()
        self.senders: weakref.WeakSet[Secrets] = weakref.WeakSet()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = message
        for secrets_ in list(self.senders):
            masked = secrets_.mask(masked)
        if masked != message:
            record.msg, record.args = masked, ()
        return True


_HTTPX_LOG = _MaskHttpxLog()
logging.getLogger("httpx").addFilter(_HTTPX_LOG)


class HttpSender:
    """Sends rows through ``channel`` (type ``http``); thread-safe, with one pooled ``httpx.Client``
    per sending thread.

    Why not one client for all: httpcore's synchronous pool, shared between threads, can close a
    keep-alive connection that it has just handed to another thread, after that thread sent its
    request (encode/httpcore#1110). The gateway got the message, the answer is lost
    (``ReadError: Bad file descriptor``), and the retry sends it a second time. A pool used by one
    thread at a time has no such race; the deliverer's lanes are a few long-lived threads, so the
    extra connections are few.
    """

    concurrency = CONCURRENCY

    def __init__(
        self, channel: Channel, env: Mapping[str, str], *, keepalive_expiry: float = KEEPALIVE_SECONDS
    ) -> None:
        self.channel = channel
        self.env = env
        self.timeout = channel.timeout.value.total_seconds() if channel.timeout else DEFAULT_TIMEOUT
        self.secrets = Secrets()
        _HTTPX_LOG.senders.add(self.secrets)
        self._clients = ThreadClients(self.timeout, httpx.Limits(keepalive_expiry=keepalive_expiry))

    @property
    def max_attempts(self) -> int:
        return self.channel.max_attempts

    def mask(self, text: str) -> str:
        return self.secrets.mask(text)

    def close(self) -> None:
        self._clients.close()

    # ---- building the request

    def request(self, row: OutboxRow) -> Request:
        """The request for ``row``; raises :class:`PermanentFailure` (missing ``${ENV}``, bad template)."""
        channel = self.channel
        payload = row.payload
        context = _context(row)
        webhook = row.action == "webhook"
        url = str(payload.get("url") or "") if webhook else ""
        url = self._resolve(url, secret=False) if url else self._template(channel.url, context, "url", secret=False)
        self._hide_url_secrets(url)
        if not url:
            raise PermanentFailure(f"channel {channel.name} has no url")
        if urlsplit(url).scheme not in ("http", "https"):
            raise PermanentFailure(f"channel {channel.name}: the url must start with http:// or https://")
        method = str((payload.get("method") if webhook else "") or channel.method or "POST").upper()

        headers = {name: self._template(value, context, f"header {name}") for name, value in channel.headers.items()}
        if webhook:
            headers.update({str(k): self._resolve(str(v)) for k, v in (payload.get("headers") or {}).items()})

        if channel.body is not None:
            body = self._body(channel.body, context)
        elif webhook:
            body = self._resolve_value(payload.get("body"))
        else:
            body = dict(payload)
        if isinstance(body, str):
            content = body.encode()
            _default(headers, "Content-Type", "text/plain; charset=utf-8")
        else:
            content = json.dumps(body, ensure_ascii=False, default=str).encode()
            _default(headers, "Content-Type", "application/json")
        headers["Idempotency-Key"] = row.key
        return Request(method, url, headers, content)

    def _resolve(self, value: str, *, secret: bool = True) -> str:
        return resolve_env(value, self.env, self.secrets if secret else None)

    def _hide_url_secrets(self, url: str) -> None:
        """A URL is no secret as a whole (messages show its origin, so operators see which
        gateway failed), but its password and query values may be: those get masked."""
        parts = urlsplit(url)
        raw = [item.partition("=")[2] for item in parts.query.split("&")]  # as written: 'k+Z/x=' stays
        password = parts.password or ""
        for value in [password, unquote(password), *raw, *(v for _, v in parse_qsl(parts.query))]:
            self.secrets.add(value)

    def _resolve_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._resolve(value)
        if isinstance(value, Mapping):
            return {str(k): self._resolve_value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._resolve_value(v) for v in value]
        return value

    def _template(self, source: str, context: Mapping[str, Any], where: str, *, secret: bool = True) -> str:
        """Render ``source``; its ``${ENV}`` references become values only after rendering.

        Each reference is swapped for an unguessable placeholder first, so the rendered data
        can neither contain a reference that gets resolved nor forge a placeholder.
        """
        if "{{" not in source and "{%" not in source:
            return self._resolve(source, secret=secret)
        nonce = secrets.token_hex(8)
        values: dict[str, str] = {}

        def hold(match: re.Match[str]) -> str:
            token = f"@@env-{nonce}-{len(values)}@@"
            values[token] = self._resolve(match.group(0), secret=secret)
            return token

        try:
            rendered = compile_template(ENV_REFERENCE.sub(hold, source)).render(context)
        except TemplateError as exc:
            raise PermanentFailure(f"channel {self.channel.name}: the {where} template failed: {exc}") from None
        for token, value in values.items():
            rendered = rendered.replace(token, value)
        return rendered

    def _body(self, body: Any, context: Mapping[str, Any], path: str = "body") -> Any:
        """Render a JSON-shaped body. A string that is exactly one ``{{ expression }}`` keeps the
        expression's value (``{{ payload }}`` stays an object, ``{{ segments }}`` a number)."""
        if isinstance(body, Mapping):
            return {str(k): self._body(v, context, f"{path}.{k}") for k, v in body.items()}
        if isinstance(body, list | tuple):
            return [self._body(v, context, f"{path}[{i}]") for i, v in enumerate(body)]
        if not isinstance(body, str):
            return body
        whole = _WHOLE_EXPRESSION.match(body)
        if whole and "${" not in body:
            try:
                value = compile_expression(whole.group("expr").strip()).evaluate(context)
            except TemplateError as exc:
                raise PermanentFailure(f"channel {self.channel.name}: the {path} template failed: {exc}") from None
            if not isinstance(value, str):
                return _jsonable(value)
        return self._template(body, context, path)

    # ---- sending

    def send(self, row: OutboxRow) -> Receipt:
        request = self.request(row)
        where = f"{request.method} {_origin(request.url)}"
        try:
            response = self._clients.get().request(
                request.method, request.url, content=request.content, headers=request.headers
            )
        except httpx.TimeoutException:
            raise TemporaryFailure(f"{where}: timed out after {self.timeout:g}s") from None
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            raise TemporaryFailure(self.mask(f"{where}: {type(exc).__name__}: {shorten(reason, 200)}")) from None
        status = response.status_code
        if 200 <= status < 300:
            return Receipt(f"HTTP {status}")
        excerpt = shorten(response.text, 200) if response.content else ""
        reason = self.mask(f"{where}: HTTP {status}" + (f": {excerpt}" if excerpt else ""))
        if status >= 500 or status in RETRY_STATUSES:
            raise TemporaryFailure(reason, retry_after=_retry_after(response))
        raise PermanentFailure(reason)


def _context(row: OutboxRow) -> dict[str, Any]:
    """What a channel template sees: the params themselves, plus the row's identity."""
    payload = dict(row.payload)
    return {
        "to": "",
        "text": "",
        "subject": "",
        "html": "",
        **payload,
        "payload": payload,
        "key": row.key,
        "action": row.action,
        "object": row.object,
        "record_id": row.record_id,
        "run_id": row.run_id,
        "channel": row.channel,
    }


def _default(headers: dict[str, str], name: str, value: str) -> None:
    if not any(existing.lower() == name.lower() for existing in headers):
        headers[name] = value


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value if value is None or isinstance(value, bool | int | float | str) else str(value)


def _origin(url: str) -> str:
    """``https://host:port`` only: paths and queries may hold tokens (``/bot<token>/send``)."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}"


def _retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds: a number, or an HTTP date relative to the response's ``Date``."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
        sent = parsedate_to_datetime(response.headers["Date"]) if "Date" in response.headers else None
    except (TypeError, ValueError, IndexError):
        return None
    if sent is None:
        return None
    return max(0.0, (when.astimezone(UTC) - sent.astimezone(UTC)).total_seconds())
