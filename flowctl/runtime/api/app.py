"""The daemon's HTTP API (v1): records, events, webhooks and operations, as one Starlette app.

Writes are accepted asynchronously but durably: a handler validates the request against the
current configuration, hands one ``NewChange`` to ``Ingest`` and answers ``202`` only after the
group commit that stored it, with the change's ``seq``. The worker processes it later. An
``Idempotency-Key`` header makes a write repeatable: the repeat stores nothing and gets the first
answer (same ``seq``, ``"duplicate": true``). The store keeps the fingerprint of what the key was
first used for, so the same key with another request is refused (409), whenever it comes back.

Every error answers ``{"error": {"code", "message", "details"}}`` with the status its class
(``sources.errors.RequestError``) names. ``openapi()`` is the hand-written description of all of it.

The app only needs a :class:`ServiceView`; ``create_app(svc)`` reads ``svc.bundle`` on every
request, so a hot reload takes effect on the next request.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import itertools
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flowctl.engine.state import Record, Run
from flowctl.ports import AppendResult, Clock, NewChange, StoredChange
from flowctl.runtime.api.metrics import CONTENT_TYPE, Metrics
from flowctl.runtime.api.readback import (
    MAX_WAIT,
    processed_json,
    read_record,
    record_json,
    requested_wait,
    wait_processed,
)
from flowctl.runtime.daemon.ingest import unavailable
from flowctl.sources.checks import check_change, fingerprint
from flowctl.sources.errors import (
    BadRequest,
    Conflict,
    InternalError,
    Invalid,
    MethodNotAllowed,
    Misconfigured,
    NotFound,
    PayloadTooLarge,
    RequestError,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
)
from flowctl.sources.payloads import NUL_PROBLEM, has_nul, json_type, parse_json
from flowctl.sources.webhooks import WebhookSource, resolve_secret
from flowctl.spec import model as m

log = logging.getLogger("flowctl.http")

T = TypeVar("T")
MAX_ID = 256
MAX_KEY = 255
#: An Idempotency-Key is stored as ``api/<key>``: a Source's name holds no '/', so no webhook key
#: (``<source>:<event_id>``) or polling key can equal one, whatever either side sends
API_KEYS = "api/"
MAX_LIST = 1000
COMMIT_TIMEOUT = 30.0


# --------------------------------------------------------------------------------------------
# what the app needs from the service


class RecordReader(Protocol):
    def record(self, object: str, id: str) -> Record | None: ...
    def list_records(self, object: str, stage: str = "", limit: int = 100, after: str = "") -> list[Record]: ...
    def open_changes(self, object: str, id: str) -> list[StoredChange]: ...
    def change(self, seq: int) -> StoredChange | None: ...
    def list_runs(self, limit: int = 50, status: str = "", object: str = "", record_id: str = "") -> list[Run]: ...


class ChangeSink(Protocol):
    def submit(self, change: NewChange) -> Future[AppendResult]: ...

    def submit_async(self, change: NewChange) -> asyncio.Future[AppendResult]: ...

    def cancel(self, waiter: asyncio.Future[AppendResult]) -> bool: ...


class ServiceView(Protocol):
    """What ``create_app`` uses of the running service."""

    @property
    def bundle(self) -> m.Bundle: ...  # the current configuration (replaced on reload)
    @property
    def store(self) -> RecordReader: ...
    @property
    def ingest(self) -> ChangeSink: ...
    @property
    def metrics(self) -> Metrics: ...
    @property
    def env(self) -> Mapping[str, str]: ...  # resolves ${ENV} in api_token and source secrets
    @property
    def clock(self) -> Clock: ...
    def readiness(self) -> list[str]: ...  # why changes cannot be taken and processed now ([] = ready)
    def degraded(self) -> list[str]: ...  # what works only in part (a channel missing its ${ENV})
    def refuse_move(self, record: Record, stage: str, pipeline: str = "") -> str: ...  # why not ('' = allowed)


# --------------------------------------------------------------------------------------------
# listening


def listen_allowed(listen: str, token: str) -> str:
    """Why the daemon must not listen on ``listen`` ('' when it may): beyond loopback needs a token
    (one of only spaces is none)."""
    if token.strip():
        return ""
    host = listen.rpartition(":")[0] if ":" in listen else listen
    host = host.strip().removeprefix("[").removesuffix("]")
    if host == "localhost":
        return ""
    try:
        if ipaddress.ip_address(host).is_loopback:
            return ""
    except ValueError:
        pass  # a host name, or '' (every interface): not loopback
    return f"refusing to listen on {listen} without api_token"


# --------------------------------------------------------------------------------------------
# per-configuration settings, rebuilt when the bundle changes


@dataclass(frozen=True, slots=True)
class _Settings:
    bundle: m.Bundle
    token: bytes  # b'' = no api_token configured
    token_unset: bool  # api_token is configured but resolves empty
    request_bytes: int
    hooks: Mapping[str, WebhookSource | str]  # request path -> source, or why it could not be built


def _settings(bundle: m.Bundle, env: Mapping[str, str]) -> _Settings:
    config = bundle.config
    # a token of only spaces is no token: nobody could send it (the Authorization value is stripped)
    token = resolve_secret(config.api_token, env).strip() if config.api_token else ""
    hooks: dict[str, WebhookSource | str] = {}
    for source in bundle.sources.values():
        if source.type != "webhook" or not source.path:
            continue
        built: WebhookSource | str
        try:
            built = WebhookSource(source, env)
        except Exception as exc:  # noqa: BLE001 - a broken source answers 500, the others keep working
            log.error("webhook source %s cannot be used: %s", source.name, exc)
            built = f"webhook source {source.name} is misconfigured"
        if isinstance(built, WebhookSource) and built.misconfigured:
            log.error("%s", built.misconfigured)
        path = source.path if source.path.startswith("/hooks/") else "/hooks" + source.path
        hooks[path] = built
    return _Settings(bundle=bundle, token=token.encode(), token_unset=bool(config.api_token) and not token,
                     request_bytes=config.limits.request_bytes, hooks=hooks)  # fmt: skip


# --------------------------------------------------------------------------------------------
# request helpers

_JSON_TYPES = ("application/json",)


def _check_content_type(request: Request, *, lenient: bool = False) -> None:
    """A body must be JSON; no Content-Type at all is read as JSON. ``lenient`` admits text/plain."""
    given = request.headers.get("content-type")
    if given is None:
        return
    media = given.partition(";")[0].strip().lower()
    if media in _JSON_TYPES or (media.startswith("application/") and media.endswith("+json")):
        return
    if lenient and media == "text/plain":
        return
    raise UnsupportedMediaType(f"send the body as Content-Type: application/json, not {given[:80]}")


async def _read_body(request: Request, limit: int, setting: str = "limits.request_bytes in flowctl.yaml") -> bytes:
    """The body, refusing (413) anything over ``limit`` bytes before and while reading it; the
    message names ``setting``, the one to raise, since a client cannot tell which limit it hit."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise BadRequest(f"Content-Length must be a number, not {declared[:40]!r}") from None
        if size > limit:
            raise PayloadTooLarge(f"the body is {size} bytes, more than the limit of {limit}; send less or "
                                  f"raise {setting}")  # fmt: skip
    chunks: list[bytes] = []
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise PayloadTooLarge(f"the body is more than the limit of {limit} bytes; send less or "
                                      f"raise {setting}")  # fmt: skip
            chunks.append(chunk)
    except ClientDisconnect:
        raise BadRequest("the client disconnected before sending the whole body") from None
    return b"".join(chunks)


async def _json_object(request: Request, limit: int) -> dict[str, Any]:
    _check_content_type(request)
    body = parse_json(await _read_body(request, limit))
    if not isinstance(body, dict):
        raise BadRequest(f"the body must be a JSON object, not {json_type(body)}")
    return body


def _hook_id_problems(change: NewChange, source: str) -> list[str]:
    """A webhook's mapped id and event id obey the API's length limits: a longer one would fail
    the store's index (PostgreSQL refuses btree keys over ~2.7 kB) and the sender retry forever."""
    problems = []
    if len(change.record_id) > MAX_ID:
        problems.append(f"map.id gave an id of {len(change.record_id)} characters; a record id is at most {MAX_ID}")
    event_id = change.idempotency_key.removeprefix(f"{source}:")
    if event_id != change.idempotency_key and len(event_id) > MAX_KEY:
        problems.append(f"map.event_id gave an event id of {len(event_id)} characters; at most {MAX_KEY}")
    return problems


def _members(body: Mapping[str, Any], required: tuple[str, ...], optional: tuple[str, ...]) -> list[str]:
    allowed = required + optional
    problems = [f"'{name}' is required" for name in required if name not in body]
    problems += [f"unknown member '{name}' (allowed: {', '.join(allowed)})" for name in body if name not in allowed]
    return problems


def _string(body: Mapping[str, Any], name: str, problems: list[str], *, required: bool = False) -> str:
    value = body.get(name, "")
    if not isinstance(value, str):
        problems.append(f"'{name}' must be a string, not {json_type(value)}")
        return ""
    if required and not value.strip():
        problems.append(f"'{name}' must not be empty")
    return value


def _object(body: Mapping[str, Any], name: str, problems: list[str]) -> dict[str, Any]:
    value = body.get(name, {})
    if not isinstance(value, dict):
        problems.append(f"'{name}' must be an object, not {json_type(value)}")
        return {}
    return value


def _record_json(record: Record) -> dict[str, Any]:
    return {"object": record.object, "id": record.id, "fields": dict(record.fields), "stage": record.stage,
            "pipeline": record.pipeline, "owner": record.owner, "version": record.version}  # fmt: skip


def _error(exc: RequestError) -> Response:
    headers = dict(exc.headers)
    if exc.status == 401:
        headers.setdefault("WWW-Authenticate", 'Bearer realm="flowctl"')
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


def _accepted(result: AppendResult) -> Response:
    duplicate = "true" if result.duplicate else "false"
    body = f'{{"accepted":true,"seq":{result.seq},"duplicate":{duplicate}}}'
    return Response(body, status_code=202, media_type="application/json")


def _conflicts(change: NewChange, result: AppendResult) -> bool:
    """Whether ``change`` reused a stored key for a different request (changes stored before
    fingerprints were kept have none, and count as repeats)."""
    return result.duplicate and bool(change.fingerprint and result.fingerprint) and (
        result.fingerprint != change.fingerprint)


class CommitTimeout(Exception):
    """The store did not take a write in time; it was taken out of the queue, so it is not stored."""


class _Deadlines:
    """Fails the writes the store has not taken within ``seconds``: one sweeping task per event
    loop rather than a timer per request. Waiters are watched in the order they were submitted,
    all with the same timeout, so the oldest is always first. A write is failed only if ``cancel``
    takes it out of the ingest queue; one a commit already has gets that commit's real outcome
    (a 503 must mean "not stored": a client retrying without a key would store it twice)."""

    def __init__(self, seconds: float, cancel: Callable[[asyncio.Future[Any]], bool] | None = None) -> None:
        self.seconds = seconds
        self.cancel = cancel
        self.pending: dict[asyncio.AbstractEventLoop, deque[tuple[float, asyncio.Future[Any]]]] = {}

    def watch(self, waiter: asyncio.Future[Any]) -> None:
        loop = waiter.get_loop()
        queue = self.pending.get(loop)
        if queue is None:
            queue = self.pending[loop] = deque()
            loop.create_task(self._sweep(loop, queue))
        queue.append((time.monotonic() + self.seconds, waiter))

    async def _sweep(self, loop: asyncio.AbstractEventLoop, queue: deque[tuple[float, asyncio.Future[Any]]]) -> None:
        try:
            while queue:
                await asyncio.sleep(min(0.5, self.seconds / 4))
                now = time.monotonic()
                while queue and (queue[0][0] <= now or queue[0][1].done()):
                    _, waiter = queue.popleft()
                    if not waiter.done() and (self.cancel is None or self.cancel(waiter)):
                        waiter.set_exception(CommitTimeout())
        finally:
            self.pending.pop(loop, None)


# --------------------------------------------------------------------------------------------
# the API

Handler = Callable[[Request], Awaitable[Response]]


class HttpApi:
    """The handlers, bound to one service; :func:`create_app` routes to them."""

    def __init__(self, svc: ServiceView, *, commit_timeout: float = COMMIT_TIMEOUT) -> None:
        self.svc = svc
        self.commit_timeout = commit_timeout
        metrics = svc.metrics
        self.requests = metrics.counter("flowctl_http_requests_total", "HTTP requests answered, by route and status.",
                                        ("route", "status"))  # fmt: skip
        self.latency = metrics.histogram("flowctl_http_request_seconds", "Time to answer an HTTP request.", ("route",))
        self.accepted = metrics.counter("flowctl_changes_accepted_total",
                                        "Record changes and events stored for processing.", ("source",))  # fmt: skip
        self.duplicates = metrics.counter("flowctl_changes_duplicate_total",
                                          "Writes whose idempotency key was already stored.", ("source",))  # fmt: skip
        self._settings: _Settings | None = None
        self._deadlines = _Deadlines(commit_timeout, getattr(svc.ingest, "cancel", None))
        # a write without Idempotency-Key gets a key of its own: random per process, then a serial
        self._key_prefix, self._key_serial = f"auto-{secrets.token_hex(8)}-", itertools.count()
        self._openapi = {secured: json.dumps(openapi(secured=secured), separators=(",", ":")).encode()
                         for secured in (False, True)}  # fmt: skip

    # ---------------------------------------------------------------- plumbing

    def settings(self) -> _Settings:
        bundle = self.svc.bundle
        current = self._settings
        if current is None or current.bundle is not bundle:
            current = self._settings = _settings(bundle, self.svc.env)
        return current

    def instrument(self, template: str, handler: Handler) -> Handler:
        """``handler`` answering errors in the error shape, counted and timed per route."""
        requests, latency = self.requests, self.latency

        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            try:
                response = await handler(request)
            except RequestError as exc:
                response = _error(exc)
            except Exception:
                log.exception("%s %s failed", request.method, template)
                response = _error(InternalError("internal error; see the daemon's log"))
            route = f"{request.method} {template}"
            latency.observe(time.perf_counter() - started, route=route)
            requests.inc(route=route, status=str(response.status_code))
            return response

        return endpoint

    def authorize(self, request: Request, settings: _Settings) -> None:
        if settings.token_unset:
            raise Misconfigured("api_token is set in Config but resolves empty or to only spaces (is its ${ENV} "
                                "variable set?)")  # fmt: skip
        if not settings.token:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), settings.token):
            raise Unauthorized("this API needs Authorization: Bearer <api_token>")

    def _record_path(self, request: Request, settings: _Settings) -> tuple[str, str]:
        object, record_id = request.path_params["object"], request.path_params.get("id", "")
        if object not in settings.bundle.objects:
            known = ", ".join(sorted(settings.bundle.objects)) or "none are defined"
            raise NotFound(f"unknown object type '{object}' (known: {known})")
        if len(record_id) > MAX_ID:
            raise BadRequest(f"a record id is at most {MAX_ID} characters")
        if "\x00" in record_id:
            raise BadRequest(f"the record id: {NUL_PROBLEM}")
        return object, record_id

    @staticmethod
    def _idempotency_key(request: Request) -> str:
        key = request.headers.get("idempotency-key", "").strip()
        if len(key) > MAX_KEY:
            raise BadRequest(f"Idempotency-Key is at most {MAX_KEY} characters")
        return key

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await run_in_threadpool(fn, *args)
        except RequestError:
            raise
        except Exception as exc:  # noqa: BLE001 - any store failure is "try again later"
            # an outage is logged once by the daemon's threads, not once per request
            (log.debug if unavailable(exc) else log.warning)("store read failed: %s", exc)
            raise Unavailable("the store cannot be read right now; retry later") from None

    async def _check_moves(self, changes: list[NewChange]) -> None:
        """Moves are refused (422) when the stored record may not enter the stage. A record not
        stored yet (its creation may still be queued) is checked again by the worker."""
        problems: list[str] = []
        for change in changes:
            if change.op != "move":
                continue
            record = await self._read(self.svc.store.record, change.object, change.record_id)
            if record is not None and not record.deleted:
                reason = self.svc.refuse_move(record, change.stage, change.pipeline)
                if reason:
                    problems.append(reason)
        if problems:
            raise Invalid.of(problems)

    async def _commit(self, changes: list[NewChange]) -> list[AppendResult]:
        """Store ``changes`` through Ingest; returns after the commit, or raises Unavailable (503)."""
        try:
            waiters = [self.svc.ingest.submit_async(change) for change in changes]
            for waiter in waiters:
                self._deadlines.watch(waiter)
            # one change (the API): no gather, which costs a task per waiter
            results = [await waiters[0]] if len(waiters) == 1 else list(await asyncio.gather(*waiters))
        except CommitTimeout:
            raise Unavailable(f"the write was not stored: the store did not take it within {self.commit_timeout:g} s; "
                              "retry with the same Idempotency-Key", retry_after=5) from None  # fmt: skip
        except RequestError:
            raise
        except Exception as exc:  # noqa: BLE001 - StoreUnavailable or anything else: not stored, retry
            # Ingest logs an outage once, not once per request
            (log.debug if unavailable(exc) else log.warning)("write not stored: %s", exc)
            raise Unavailable("the store could not save the write; retry with the same Idempotency-Key") from None
        for change, result in zip(changes, results, strict=True):
            if not _conflicts(change, result):  # a conflict is answered 409: neither stored nor a repeat
                (self.duplicates if result.duplicate else self.accepted).inc(source=change.source)
        return results

    async def _write(self, change: NewChange, settings: _Settings, explicit_key: bool,
                     wait: float | None = None) -> Response:  # fmt: skip
        problems = check_change(settings.bundle, change)
        if problems:
            raise Invalid.of(problems)
        await self._check_moves([change])
        if explicit_key:  # the store keeps it with the change: a reuse is judged after a restart too
            change = replace(change, fingerprint=fingerprint(change))
        (result,) = await self._commit([change])
        if _conflicts(change, result):
            given = change.idempotency_key.removeprefix(API_KEYS)
            raise Conflict(f"Idempotency-Key '{given}' was already used for a different request (change "
                           f"{result.seq}); use a new key for a new write")  # fmt: skip
        if wait is None:
            return _accepted(result)
        return await self._after_waiting(change, result, wait)

    async def _after_waiting(self, change: NewChange, result: AppendResult, seconds: float) -> Response:
        """``Prefer: wait=N``: 200 with the outcome once the change is processed, else the 202."""
        store = self.svc.store
        applied = {"Preference-Applied": f"wait={seconds:g}"}
        done = await wait_processed(lambda seq: self._read(store.change, seq), result.seq, seconds)
        if done is None:
            response = _accepted(result)
            response.headers.update(applied)
            return response
        record, pending = await self._read(read_record, store, change.object, change.record_id)
        runs = await self._read(store.list_runs, 100, "", change.object, change.record_id)
        return JSONResponse(processed_json(done, result.duplicate, record, pending, runs), headers=applied)

    def _change(self, request: Request, **values: Any) -> tuple[NewChange, bool]:
        given = self._idempotency_key(request)
        key = f"{API_KEYS}{given}" if given else f"{self._key_prefix}{next(self._key_serial):x}"
        change = NewChange(idempotency_key=key, source="api", received_at=self.svc.clock.now(),
                           **values)  # fmt: skip
        return change, bool(given)

    # ---------------------------------------------------------------- records

    async def record(self, request: Request) -> Response:
        settings = self.settings()
        self.authorize(request, settings)
        object, record_id = self._record_path(request, settings)
        method = request.method
        if method in ("GET", "HEAD"):  # as the last acknowledged write left it, processed or not
            record, pending = await self._read(read_record, self.svc.store, object, record_id)
            if record is None:
                raise NotFound(f"{object} {record_id} does not exist")
            return JSONResponse(record_json(record, pending=pending))
        wait = requested_wait(request.headers.get("prefer", ""))
        if method == "DELETE":
            change, keyed = self._change(request, object=object, record_id=record_id, op="delete")
            return await self._write(change, settings, keyed, wait)
        body = await _json_object(request, settings.request_bytes)
        put = method == "PUT"
        problems = _members(body, ("fields",), ("stage", "pipeline") if put else ())
        fields = _object(body, "fields", problems)
        stage = _string(body, "stage", problems)
        pipeline = _string(body, "pipeline", problems)
        if problems:
            raise Invalid.of(problems)
        change, keyed = self._change(request, object=object, record_id=record_id, op="put" if put else "patch",
                                     fields=fields, stage=stage, pipeline=pipeline)  # fmt: skip
        return await self._write(change, settings, keyed, wait)

    async def move(self, request: Request) -> Response:
        settings = self.settings()
        self.authorize(request, settings)
        object, record_id = self._record_path(request, settings)
        body = await _json_object(request, settings.request_bytes)
        problems = _members(body, ("stage",), ("pipeline",))
        stage = _string(body, "stage", problems, required=True)
        pipeline = _string(body, "pipeline", problems)
        if problems:
            raise Invalid.of(problems)
        change, keyed = self._change(request, object=object, record_id=record_id, op="move", stage=stage,
                                     pipeline=pipeline)  # fmt: skip
        return await self._write(change, settings, keyed)

    async def records(self, request: Request) -> Response:
        settings = self.settings()
        self.authorize(request, settings)
        object, _ = self._record_path(request, settings)
        query = request.query_params
        text = query.get("limit", "100")
        try:
            limit = int(text)
        except ValueError:
            limit = 0
        if not 1 <= limit <= MAX_LIST:
            raise BadRequest(f"limit must be a whole number from 1 to {MAX_LIST}, not {text[:40]!r}")
        if has_nul([query.get("stage", ""), query.get("after", "")]):
            raise BadRequest(f"stage and after: {NUL_PROBLEM}")
        found = await self._read(self.svc.store.list_records, object, query.get("stage", ""), limit,
                                 query.get("after", ""))  # fmt: skip
        items = [_record_json(r) for r in found if not r.deleted]
        after = found[-1].id if len(found) >= limit else None
        return JSONResponse({"items": items, "next": after})

    async def event(self, request: Request) -> Response:
        settings = self.settings()
        self.authorize(request, settings)
        body = await _json_object(request, settings.request_bytes)
        problems = _members(body, ("event", "object", "id"), ("data",))
        event = _string(body, "event", problems, required=True)
        object = _string(body, "object", problems, required=True)
        data = _object(body, "data", problems)
        record_id = body.get("id", "")
        if isinstance(record_id, bool) or not isinstance(record_id, str | int):
            problems.append(f"'id' must be a string or an integer, not {json_type(record_id)}")
        elif not str(record_id).strip() or len(str(record_id)) > MAX_ID:
            problems.append(f"'id' must be 1 to {MAX_ID} characters")
        if problems:
            raise Invalid.of(problems)
        change, keyed = self._change(request, object=object, record_id=str(record_id), op="event", event=event,
                                     data=data)  # fmt: skip
        return await self._write(change, settings, keyed, requested_wait(request.headers.get("prefer", "")))

    # ---------------------------------------------------------------- webhooks

    async def hook(self, request: Request) -> Response:
        settings = self.settings()
        path = request.scope["path"]
        source = settings.hooks.get(path)
        if source is None:
            raise NotFound(f"no webhook source listens on {path}")
        if isinstance(source, str):
            raise Misconfigured(source)
        headers = request.headers
        source.check_headers(headers)
        _check_content_type(request, lenient=True)
        setting = (f"max_bytes of Source {source.name}" if source.max_bytes < settings.request_bytes
                   else "limits.request_bytes in flowctl.yaml")  # fmt: skip
        body = await _read_body(request, min(source.max_bytes, settings.request_bytes), setting)
        now = self.svc.clock.now()
        source.authenticate(headers, body, now)
        changes = source.changes(parse_json(body), headers, now, settings.bundle.objects)
        problems = [f"item {i}: {p}" if len(changes) > 1 else p for i, change in enumerate(changes)
                    for p in (*_hook_id_problems(change, source.name),
                              *check_change(settings.bundle, change))]  # fmt: skip
        if problems:
            raise Invalid.of(problems)
        await self._check_moves(changes)
        results = await self._commit(changes) if changes else []
        answer = [{"seq": r.seq, "duplicate": r.duplicate} for r in results]
        repeat = bool(results) and all(r.duplicate for r in results)
        return JSONResponse({"accepted": True, "changes": answer, "duplicate": repeat}, status_code=202)

    # ---------------------------------------------------------------- operations

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        try:
            problems = list(await run_in_threadpool(self.svc.readiness))
        except Exception as exc:  # noqa: BLE001 - a failing check means not ready
            log.warning("readiness check failed: %s", exc)
            problems = ["the readiness check failed; see the daemon's log"]
        if problems:
            raise Unavailable(f"not ready: {'; '.join(problems)}", problems, retry_after=5)
        degraded = self.svc.degraded()
        if degraded:  # still ready: changes are taken and processed, the messages concerned are held
            return JSONResponse({"status": "degraded", "problems": degraded})
        return JSONResponse({"status": "ready"})

    async def metrics(self, request: Request) -> Response:
        # behind api_token when one is set (queue depths, sources and routes are not for everyone);
        # Prometheus sends it as a bearer token. /healthz and /readyz stay open for load balancers.
        self.authorize(request, self.settings())
        text = await run_in_threadpool(self.svc.metrics.render)  # callbacks may read the store
        return Response(text, media_type=CONTENT_TYPE)

    async def openapi(self, request: Request) -> Response:
        return Response(self._openapi[bool(self.settings().bundle.config.api_token)], media_type="application/json")


def create_app(svc: ServiceView, *, commit_timeout: float = COMMIT_TIMEOUT) -> Starlette:
    """The daemon's ASGI app over ``svc``."""
    api = HttpApi(svc, commit_timeout=commit_timeout)

    def route(path: str, handler: Handler, methods: list[str]) -> Route:
        return Route(path, api.instrument(path, handler), methods=methods)

    records = route("/v1/records/{object}/{id}", api.record, ["GET", "PUT", "PATCH", "DELETE"])
    routes = [
        records,
        route("/v1/records/{object}/{id}/stage", api.move, ["POST"]),
        route("/v1/records/{object}", api.records, ["GET"]),
        route("/v1/events", api.event, ["POST"]),
        route("/hooks/{path:path}", api.hook, ["POST"]),
        route("/healthz", api.healthz, ["GET"]),
        route("/readyz", api.readyz, ["GET"]),
        route("/metrics", api.metrics, ["GET"]),
        route("/openapi.json", api.openapi, ["GET"]),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        kind = {404: NotFound, 405: MethodNotAllowed}.get(exc.status_code, BadRequest)
        response = JSONResponse(kind(exc.detail).body(), status_code=exc.status_code, headers=exc.headers)
        api.requests.inc(route="unmatched", status=str(exc.status_code))
        return response

    app = _App(routes=routes, exception_handlers={HTTPException: http_error})
    app.record_endpoint = records.endpoint
    app.state.api = api
    return app


class _App(Starlette):
    """Starlette, with the hot route (``/v1/records/{object}/{id}``: put, patch, get, delete)
    going straight to its handler: the middleware and router layers cost as much as the handler
    itself. Every other request, and every error shape, is Starlette's as before."""

    record_endpoint: Handler | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        endpoint = self.record_endpoint
        if endpoint is not None and scope["type"] == "http" and scope["method"] in _FAST_METHODS:
            path: str = scope["path"]
            if path.startswith(_RECORDS) and not scope.get("root_path"):
                object, slash, record_id = path[len(_RECORDS) :].partition("/")
                if object and slash and record_id and "/" not in record_id:
                    scope["app"] = self
                    scope["path_params"] = {"object": object, "id": record_id}
                    response = await endpoint(Request(scope, receive, send))
                    await response(scope, receive, send)
                    return
        await super().__call__(scope, receive, send)


_RECORDS = "/v1/records/"
_FAST_METHODS = frozenset({"GET", "PUT", "PATCH", "DELETE"})


# --------------------------------------------------------------------------------------------
# OpenAPI 3.1


def _ref(name: str, kind: str = "schemas") -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(status): _ref(_ERROR_RESPONSES[status][0], "responses") for status in statuses}


_ERROR_RESPONSES: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "The request is malformed: not JSON, not a JSON object, a bad header or query value."),
    401: ("Unauthorized", "Missing or wrong credentials (api_token, or the webhook's signature or token)."),
    404: ("NotFound", "No such object type, record or webhook path."),
    409: ("Conflict", "The Idempotency-Key was already used for a different request."),
    413: ("PayloadTooLarge", "The body is larger than limits.request_bytes (or the source's max_bytes)."),
    415: ("UnsupportedMediaType", "The body is not sent as application/json."),
    422: ("Invalid", "The request does not fit the configuration; every problem is listed in details."),
    500: ("Misconfigured", "The daemon's configuration is incomplete (an ${ENV} secret is unset)."),
    503: ("Unavailable", "The store could not be reached or did not take the write in time: nothing was "
          "stored. Retry later (a write with the same Idempotency-Key)."),
}

_WRITE_ERRORS = (400, 401, 404, 409, 413, 415, 422, 500, 503)


def openapi(*, secured: bool = False) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API (served at /openapi.json). ``secured``: Config sets an
    api_token, so every /v1 operation requires the bearer scheme; without one they require nothing."""
    json_body = {"application/json": {"schema": _ref("Error")}}
    responses: dict[str, Any] = {
        name: {"description": text, "content": json_body} for name, text in _ERROR_RESPONSES.values()
    }
    responses["Unavailable"]["headers"] = {
        "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "string"}}
    }
    responses["Unauthorized"]["headers"] = {
        "WWW-Authenticate": {"description": "The scheme to use: Bearer.", "schema": {"type": "string"}}
    }
    accepted = {"description": "Stored; the worker will process it. A repeat of an Idempotency-Key gets the "
                "first answer with duplicate true.",
                "content": {"application/json": {"schema": _ref("Accepted")}}}  # fmt: skip
    string = {"type": "string"}
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object", "required": ["error"], "additionalProperties": False,
            "properties": {"error": {
                "type": "object", "required": ["code", "message", "details"], "additionalProperties": False,
                "properties": {"code": string, "message": string, "details": {"type": "array", "items": string}},
            }},
        },
        "Accepted": {
            "type": "object", "required": ["accepted", "seq", "duplicate"], "additionalProperties": False,
            "properties": {"accepted": {"const": True}, "seq": {"type": "integer"}, "duplicate": {"type": "boolean"}},
        },
        "HookAccepted": {
            "type": "object", "required": ["accepted", "changes", "duplicate"], "additionalProperties": False,
            "properties": {
                "accepted": {"const": True},
                "changes": {"type": "array", "items": {
                    "type": "object", "required": ["seq", "duplicate"], "additionalProperties": False,
                    "properties": {"seq": {"type": "integer"}, "duplicate": {"type": "boolean"}},
                }},
                "duplicate": {"type": "boolean", "description": "true when every change was a repeat"},
            },
        },
        "Fields": {"type": "object", "description": "Field name → value, as the object type declares them.",
                   "additionalProperties": True},
        "Record": {
            "type": "object", "additionalProperties": False,
            "required": ["object", "id", "fields", "stage", "pipeline", "owner", "version"],
            "properties": {"object": string, "id": string, "fields": _ref("Fields"), "stage": string,
                           "pipeline": string, "owner": string, "version": {"type": "integer"},
                           "pending": {"type": "boolean", "description": "true while written changes of the "
                                       "record are not processed yet: it reads as they will leave it"}},
        },
        "Processed": {
            "type": "object", "additionalProperties": False,
            "required": ["accepted", "seq", "duplicate", "status", "error", "record", "runs"],
            "properties": {
                "accepted": {"const": True}, "seq": {"type": "integer"}, "duplicate": {"type": "boolean"},
                "status": {"enum": ["done", "failed"]}, "error": string,
                "record": {"oneOf": [_ref("Record"), {"type": "null"}]},
                "runs": {"type": "array", "items": {
                    "type": "object", "required": ["id", "automation", "status", "node"], "additionalProperties": False,
                    "properties": {"id": string, "automation": string, "status": string, "node": string}}},
            },
        },
        "RecordList": {
            "type": "object", "required": ["items", "next"], "additionalProperties": False,
            "properties": {"items": {"type": "array", "items": _ref("Record")},
                           "next": {"type": ["string", "null"], "description": "Pass as `after` for the next page."}},
        },
        "PutRecord": {
            "type": "object", "required": ["fields"], "additionalProperties": False,
            "properties": {"fields": _ref("Fields"),
                           "stage": {"type": "string", "description": "Stage to place the record in."},
                           "pipeline": {"type": "string", "description": "Pipeline, when the object has several."}},
        },
        "PatchRecord": {
            "type": "object", "required": ["fields"], "additionalProperties": False,
            "properties": {"fields": _ref("Fields")},
        },
        "Move": {
            "type": "object", "required": ["stage"], "additionalProperties": False,
            "properties": {"stage": {"type": "string", "minLength": 1, "pattern": r"\S"},
                           "pipeline": {"type": "string", "description": "Another pipeline of the record's object "
                                        "to move into (default: the record's own)."}},
        },
        "Event": {
            "type": "object", "required": ["event", "object", "id"], "additionalProperties": False,
            "properties": {
                "event": {"type": "string", "minLength": 1, "pattern": r"\S", "examples": ["invoice.paid"]},
                "object": {"type": "string", "minLength": 1, "pattern": r"\S", "examples": ["deal"]},
                "id": {"oneOf": [{"type": "string", "minLength": 1, "maxLength": MAX_ID, "pattern": r"\S"},
                                 {"type": "integer"}]},
                "data": {"type": "object", "additionalProperties": True},
            },
        },
        "Status": {"type": "object", "required": ["status"], "properties": {
            "status": string,
            "problems": {"type": "array", "items": string,
                         "description": "With status degraded: what works only in part, e.g. a channel whose "
                         "${ENV} variable is not set (its messages are held)."}}},
    }  # fmt: skip
    parameters = {
        "Object": {"name": "object", "in": "path", "required": True, "description": "An object type (ObjectType).",
                   "schema": {"type": "string", "minLength": 1}},
        "Id": {"name": "id", "in": "path", "required": True, "description": "The record's id.",
               "schema": {"type": "string", "minLength": 1, "maxLength": MAX_ID}},
        "IdempotencyKey": {"name": "Idempotency-Key", "in": "header", "required": False,
                           "description": "Makes the write repeatable: a repeat stores nothing and gets the first "
                           "answer; the same key with a different request is refused (409), after a restart too. "
                           "Without it each request is a new write.",
                           "schema": {"type": "string", "maxLength": MAX_KEY}},
        "Prefer": {"name": "Prefer", "in": "header", "required": False,
                   "description": f"wait=N: answer once the change is processed (200, with the record and the runs "
                   f"it started) or after N seconds (at most {MAX_WAIT:g}) with the usual 202; both say "
                   "Preference-Applied.", "schema": {"type": "string", "examples": ["wait=5"]}},
    }  # fmt: skip
    security: dict[str, Any] = {"security": [{"bearerAuth": []}]} if secured else {}

    def body(schema: str) -> dict[str, Any]:
        return {"required": True, "content": {"application/json": {"schema": _ref(schema)}}}

    def write(summary: str, schema: str | None = None) -> dict[str, Any]:
        op: dict[str, Any] = {"summary": summary, **security,
                              "parameters": [_ref("IdempotencyKey", "parameters")],
                              "responses": {"202": accepted, **_errors(*_WRITE_ERRORS)}}  # fmt: skip
        if schema:
            op["requestBody"] = body(schema)
        return op

    processed = {"description": "Prefer: wait=N, and the change was processed within N seconds.",
                 "headers": {"Preference-Applied": {"schema": string}},
                 "content": {"application/json": {"schema": _ref("Processed")}}}  # fmt: skip

    def waitable(op: dict[str, Any]) -> dict[str, Any]:
        return {**op, "parameters": [*op["parameters"], _ref("Prefer", "parameters")],
                "responses": {"200": processed, **op["responses"]}}  # fmt: skip

    record_params = [_ref("Object", "parameters"), _ref("Id", "parameters")]
    delete = write("Delete a record (recoverable, like a recycle bin).")
    delete["responses"] = {"202": accepted, **_errors(400, 401, 404, 409, 422, 500, 503)}
    paths: dict[str, Any] = {
        "/v1/records/{object}/{id}": {
            "parameters": record_params,
            "get": {"summary": "Read a record as the last accepted write left it (pending until processed).",
                    **security, "responses": {
                "200": {"description": "The record.", "content": {"application/json": {"schema": _ref("Record")}}},
                **_errors(400, 401, 404, 500, 503)}},
            "put": waitable(write("Create or replace a record.", "PutRecord")),
            "patch": waitable(write("Change some fields of a record (creates it when missing).", "PatchRecord")),
            "delete": waitable(delete),
        },
        "/v1/records/{object}/{id}/stage": {
            "parameters": record_params,
            "post": write("Move a record to a stage of its pipeline, or of another pipeline of its object.", "Move"),
        },
        "/v1/records/{object}": {
            "parameters": [_ref("Object", "parameters")],
            "get": {"summary": "List records of an object type, by id.", **security,
                    "parameters": [
                        {"name": "stage", "in": "query", "schema": string,
                         "description": "Only records in this stage."},
                        {"name": "limit", "in": "query",
                         "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIST, "default": 100}},
                        {"name": "after", "in": "query", "schema": string,
                         "description": "Only records with an id after this one (the previous page's next)."},
                    ],
                    "responses": {"200": {"description": "A page of records.",
                                          "content": {"application/json": {"schema": _ref("RecordList")}}},
                                  **_errors(400, 401, 404, 500, 503)}},
        },
        "/v1/events": {
            "post": waitable({**write("Send a named event about a record.", "Event"),
                              "responses": {"202": accepted, **_errors(400, 401, 409, 413, 415, 422, 500, 503)}}),
        },
        "/hooks/{path}": {
            "post": {
                "summary": "A webhook Source: authenticated (HMAC signature or bearer token), mapped to changes.",
                "description": "HMAC: the Source's signature_header carries hex HMAC-SHA256 of the body "
                "(optionally `sha256=`-prefixed). With an `X-Timestamp: <unix seconds>` header the signature "
                "covers `<timestamp>.<body>` and timestamps more than 5 minutes from now are refused.",
                "parameters": [{"name": "path", "in": "path", "required": True, "schema": string,
                                "description": "The Source's path below /hooks/."}],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"type": ["object", "array"], "description": "The payload, or a list of payloads."}}}},
                "responses": {
                    "202": {"description": "Every mapped change stored; an item repeating an earlier one "
                            "of the delivery (same event_id, same change) is dropped and gets no entry.",
                            "content": {"application/json": {"schema": _ref("HookAccepted")}}},
                    **_errors(400, 401, 404, 413, 415, 422, 500, 503),
                },
            },
        },
        "/healthz": {"get": {"summary": "The process is alive.", "responses": {"200": {
            "description": "Alive.", "content": {"application/json": {"schema": _ref("Status")}}}}}},
        "/readyz": {"get": {"summary": "Changes are taken and processed: the store answers, the workers run, the "
                            "engine runs a version.", "responses": {
            "200": {"description": "Ready (status ready), or ready with problems listed (status degraded).",
                    "content": {"application/json": {"schema": _ref("Status")}}},
            **_errors(503)}}},
        "/metrics": {"get": {"summary": "Prometheus metrics (text format 0.0.4); needs the api_token when one is set.",
                             **security, "responses": {"200": {
            "description": "The metrics.", "content": {"text/plain": {"schema": string}}}, **_errors(401, 500)}}},
        "/openapi.json": {"get": {"summary": "This document.", "responses": {"200": {
            "description": "OpenAPI 3.1.", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
    }  # fmt: skip
    return {
        "openapi": "3.1.0",
        "info": {"title": "flowctl daemon API", "version": "1",
                 "description": "Records, events and webhooks for flowctl. Writes answer 202 once stored. When "
                 "Config.api_token is set, every /v1 call and /metrics need `Authorization: Bearer <token>`."},
        "paths": paths,
        "components": {
            "schemas": schemas, "parameters": parameters, "responses": responses,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                               "description": "Config.api_token (required when it is set)."}},
        },
    }  # fmt: skip
