"""Fetch what an event leaves out: a webhook Source's ``fetch:`` reads the full record first.

A Bitrix24 event (``ONCRMDEALUPDATE``) carries only ``data[FIELDS][ID]``; the deal itself is read
with the REST method ``crm.deal.get`` through the portal's inbound webhook,
``https://<portal>.bitrix24.<tld>/rest/<user id>/<webhook token>/crm.deal.get.json``, which answers
``{"result": {"ID": "42", "TITLE": …}, "time": {…}}`` or, on failure, an HTTP error status with
``{"error": "<CODE>", "error_description": "<text>"}`` (https://apidocs.bitrix24.com/error-codes.html).
The answer becomes ``fetched`` in the Source's map (``{{ fetched.result.TITLE }}``), beside
``payload`` and ``headers``.

Where the fetch happens, and why. Bitrix24's documentation promises no re-delivery of an online
event handler's call (undelivered events are kept only for *offline* handlers,
https://apidocs.bitrix24.com/api-reference/events/offline-events.html), so a fetch made inside
the webhook request and answered 503 on failure would lose the event. Instead the handler stores
each event as a pending fetch, an outbox row on the channel ``fetch:<source>``
(:func:`pending_fetches`), and answers 202; the outbox is the store's durable, retried,
dead-lettered queue of calls that leave the daemon, which a fetch is. The deliverer sends the row
with ``runtime.daemon.fetching.FetchSender``: one attempt of :meth:`Fetcher.fetch` per claim, a
transient failure (a timeout, a refused connection, any 5xx or 429, Bitrix24's
``QUERY_LIMIT_EXCEEDED`` answered with 503, https://apidocs.bitrix24.ru/limits.html) retried with
the outbox's backoff up to ``retries`` + 1 attempts, a permanent one (``"Not found"`` for a deleted
deal, a revoked webhook's ``NO_AUTH_FOUND``, ``insufficient_scope``, any other 4xx, an answer
without ``result``) dead-lettered at once, where operators see and can retry it. Only then, from
a complete answer, is the change mapped and stored: never a half-empty record.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx

from flowctl.engine.state import Effect
from flowctl.sources.errors import Invalid, PayloadTooLarge
from flowctl.sources.mapping import MapProblem, Value, compile_value
from flowctl.spec import model as m
from flowctl.spec.env import needed, substitute

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 10.0
MAX_FETCHES = 50  # items of one delivery a fetching source reads (Bitrix24 sends one event a call)
MAX_ANSWER_BYTES = 4 * 1024 * 1024
BACKOFF_SECONDS = 0.5  # before the first retry; doubled for each next one, at most BACKOFF_CAP
BACKOFF_CAP = 8.0
#: Bitrix24 error codes a later attempt may get past (limits.html, error-codes.html).
TRANSIENT_CODES = frozenset(
    {"QUERY_LIMIT_EXCEEDED", "INTERNAL_SERVER_ERROR", "ERROR_UNEXPECTED_ANSWER", "OVERLOAD_LIMIT"}
)


class FetchFailed(Exception):
    """The record could not be read; ``transient`` says whether a later attempt may succeed."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient


def masked(url: str) -> str:
    """``url`` without what may be secret: its origin and the method name (last path segment) only."""
    try:
        parts = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "<invalid url>"
    port = f":{parts.port}" if parts.port else ""
    method = parts.path.rstrip("/").rsplit("/", 1)[-1]
    return f"{parts.scheme}://{parts.host}{port}/…/{method}"


def _form(params: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """``params`` as PHP-style query pairs (``filter[ID]=1``), the form Bitrix24's REST reads."""
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        if isinstance(value, Mapping):
            pairs += _form(value, name)
        elif isinstance(value, list | tuple):
            pairs += _form({str(i): v for i, v in enumerate(value)}, name)
        elif value is not None:
            pairs.append((name, str(value).lower() if isinstance(value, bool) else str(value)))
    return pairs


class Fetcher:
    """The compiled ``fetch:`` of one Source: ``await fetch(context)`` gives the REST answer."""

    def __init__(
        self,
        source: str,
        spec: m.SourceFetch,
        env: Mapping[str, str],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        backoff: float = BACKOFF_SECONDS,
    ) -> None:
        self.source = source
        self.unset = [name for name in needed(spec.url) if not env.get(name)]
        self.url = "" if self.unset else substitute(spec.url, env)
        self.method = spec.method
        self.timeout = spec.timeout.value.total_seconds() if spec.timeout else DEFAULT_TIMEOUT_SECONDS
        self.retries = max(0, spec.retries)
        self.backoff = backoff
        self._params: Value = compile_value(dict(spec.params), "fetch.params")
        self._transport = transport

    @property
    def misconfigured(self) -> str:
        """Why the fetch cannot run ('' when it can): its URL's ``${ENV}`` variable is unset."""
        if self.unset:
            return f"{', '.join(self.unset)} is not set (the fetch url of webhook source {self.source})"
        if not self.url:
            return f"webhook source {self.source} has no fetch url"
        return ""

    def params(self, context: Mapping[str, Any]) -> Any:
        """The request's parameters for ``context`` (``payload``, ``headers``); raises :class:`MapProblem`."""
        return self._params(context)

    async def fetch(self, params: Mapping[str, Any], retries: int | None = None) -> Any:
        """The parsed JSON answer to a call with ``params``; raises :class:`FetchFailed` when the
        record cannot be read after ``retries`` more attempts (default: the Source's ``retries``;
        the daemon's fetch queue passes 0 and retries on its own), or at once when retrying
        cannot help."""
        retries = self.retries if retries is None else retries
        async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=False, transport=self._transport) as client:
            attempt = 0
            while True:
                try:
                    return await self._once(client, params)
                except FetchFailed as exc:
                    if not exc.transient or attempt >= retries:
                        raise
                    delay = min(BACKOFF_CAP, self.backoff * 2**attempt)
                    log.info("source %s: fetch %d failed (%s); again in %.1fs", self.source, attempt + 1, exc, delay)
                    attempt += 1
                    await asyncio.sleep(delay)

    async def _once(self, client: httpx.AsyncClient, params: Mapping[str, Any]) -> Any:
        where = f"{self.method} {masked(self.url)}"
        try:
            if self.method == "GET":
                query: list[tuple[str, str | int | float | bool | None]] = list(_form(params))
                response = await client.get(self.url, params=query)
            else:
                response = await client.post(self.url, json=params)
        except httpx.TimeoutException:
            raise FetchFailed(f"{where} timed out after {self.timeout:g}s", transient=True) from None
        except httpx.HTTPError as exc:
            raise FetchFailed(f"{where} failed: {type(exc).__name__}", transient=True) from None
        status = response.status_code
        if len(response.content) > MAX_ANSWER_BYTES:
            raise FetchFailed(f"{where} answered more than {MAX_ANSWER_BYTES} bytes", transient=False)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        error = answer.get("error") if isinstance(answer, dict) else None
        if status >= 400 or error:
            code = str(error or "")
            text = str(answer.get("error_description", "")) if isinstance(answer, dict) else ""
            said = ": ".join(part for part in (code, text[:200]) if part) or "no error text"
            transient = status >= 500 or status == 429 or code in TRANSIENT_CODES
            raise FetchFailed(f"{where} answered {status} ({said})", transient=transient)
        if not isinstance(answer, dict) or "result" not in answer:
            raise FetchFailed(f"{where} answered {status} without a JSON 'result'", transient=False)
        return answer


CHANNEL_PREFIX = "fetch:"  # the outbox channel of a Source's pending fetches: ``fetch:<source>``


def pending_fetches(
    fetcher: Fetcher, items: Sequence[Any], headers: Mapping[str, str], event_key: Callable[[Mapping[str, Any]], str]
) -> list[Effect]:
    """One outbox row per item of a delivery: the fetch still to make, with what the map needs
    afterwards (``payload``, ``headers``) and the call's ``params``. Raises :class:`Invalid` when the
    params cannot be computed, :class:`PayloadTooLarge` for too many items. ``event_key`` gives the
    delivery's event id without ``fetched`` ('' when it has none, or it needs ``fetched``): a row's
    key is ``fetch:<source>:<event id>``, so a re-sent event is queued once."""
    if len(items) > MAX_FETCHES:
        raise PayloadTooLarge(f"a source that fetches takes at most {MAX_FETCHES} items a delivery, not {len(items)}")
    effects: list[Effect] = []
    for index, item in enumerate(items):
        context = {"payload": item, "headers": headers}
        prefix = f"item {index}: " if len(items) > 1 else ""
        try:
            params = fetcher.params(context)
        except MapProblem as exc:
            raise Invalid(prefix + str(exc), [prefix + str(exc)]) from None
        event_id = event_key(context)
        key = f"{CHANNEL_PREFIX}{fetcher.source}:{event_id}" if event_id else f"{CHANNEL_PREFIX}{uuid.uuid4().hex}"
        named = params.get("id", params.get("ID", "")) if isinstance(params, Mapping) else ""
        effects.append(
            Effect(
                key=key,
                action="fetch",
                run_id="",
                object="",
                record_id=str(named)[:200],
                channel=CHANNEL_PREFIX + fetcher.source,
                params={"params": params, "payload": item, "headers": dict(headers)},
            )
        )
    return effects
