"""The API's routes: records, events, webhooks and operations, each declared next to its handler.

Each handler is declared with ``@routes.endpoint(path, method=Operation(...))``: the path
Starlette routes, and for each method what the OpenAPI document says of it (summary, parameters,
request body, responses). ``create_app`` routes ``routes.endpoints`` to the handlers and
:func:`openapi` assembles the document from the same declarations. Every error answers
``{"error": {"code", "message", "details"}}`` with the status its class (``sources.errors``) names.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from flowctl.ports import NewChange
from flowctl.runtime.api.access import allow_write
from flowctl.runtime.api.core import ApiCore, log
from flowctl.runtime.api.deadlines import COMMIT_TIMEOUT
from flowctl.runtime.api.idempotency import MAX_KEY
from flowctl.runtime.api.metrics import CONTENT_TYPE
from flowctl.runtime.api.openapi import (
    STRING,
    Operation,
    document,
    errors,
    json_content,
    ref,
    waitable,
    write,
)
from flowctl.runtime.api.readback import read_record, record_json, record_summary, requested_wait, restorable
from flowctl.runtime.api.requests import (
    MAX_ID,
    MAX_LIST,
    check_content_type,
    json_object,
    members,
    object_member,
    read_body,
    record_path,
    string,
)
from flowctl.runtime.api.routes import routes
from flowctl.runtime.api.view import ServiceView
from flowctl.runtime.reads.common import zone_of
from flowctl.runtime.reads.recycle_bin import deleted_item
from flowctl.sources.checks import check_change
from flowctl.sources.errors import BadRequest, Invalid, Misconfigured, NotFound, Unavailable
from flowctl.sources.fetch import pending_fetches
from flowctl.sources.forms import FORM_TYPES, is_form
from flowctl.sources.payloads import NUL_PROBLEM, has_nul, json_type
from flowctl.sources.webhooks import WebhookSource

RECORD = (ref("Object", "parameters"), ref("Id", "parameters"))


def hook_id_problems(change: NewChange, source: str) -> list[str]:
    """A webhook's mapped id and event id obey the API's length limits: a longer one would fail
    the store's index (PostgreSQL refuses btree keys over ~2.7 kB) and the sender retry forever."""
    problems = []
    if len(change.record_id) > MAX_ID:
        problems.append(f"map.id gave an id of {len(change.record_id)} characters; a record id is at most {MAX_ID}")
    event_id = change.idempotency_key.removeprefix(f"{source}:")
    if event_id != change.idempotency_key and len(event_id) > MAX_KEY:
        problems.append(f"map.event_id gave an event id of {len(event_id)} characters; at most {MAX_KEY}")
    return problems


class HttpApi(ApiCore):
    """The handlers, bound to one service; :func:`~flowctl.runtime.api.app.create_app` routes to them."""

    def __init__(self, svc: ServiceView, *, commit_timeout: float = COMMIT_TIMEOUT) -> None:
        super().__init__(svc, commit_timeout=commit_timeout)
        self._openapi = {
            secured: json.dumps(openapi(secured=secured), separators=(",", ":")).encode() for secured in (False, True)
        }

    # ---------------------------------------------------------------- records

    @routes.endpoint(
        "/v1/records/{object}/{id}",
        parameters=RECORD,
        get=Operation(
            "Read a record as the last accepted write left it (pending until processed).",
            {
                "200": {"description": "The record.", "content": json_content(ref("Record"))},
                **errors(400, 401, 403, 404, 500, 503),
            },
            role="viewer",
            operation_id="getRecord",
            tags=("records",),
        ),
        put=waitable(write("Create or replace a record.", "PutRecord", operation_id="putRecord", tags=("records",))),
        patch=waitable(
            write(
                "Change some fields of a record (creates it when missing).",
                "PatchRecord",
                operation_id="patchRecord",
                tags=("records",),
            )
        ),
        delete=waitable(
            write(
                "Delete a record (recoverable, like a recycle bin).",
                operation_id="deleteRecord",
                tags=("records",),
                statuses=(400, 401, 403, 404, 409, 422, 500, 503),
            )
        ),
    )
    async def record(self, request: Request) -> Response:
        access = self.access()
        object, record_id = record_path(request, access.bundle)
        method = request.method
        if method in ("GET", "HEAD"):  # as the last acknowledged write left it, processed or not
            record, pending = await self._read(read_record, self.svc.store, object, record_id)
            if record is None:
                raise NotFound(f"{object} {record_id} does not exist")
            return JSONResponse(record_json(record, pending=pending))
        allow_write(request.state.principal, object)
        wait = requested_wait(request.headers.get("prefer", ""))
        if method == "DELETE":
            change, keyed = self._change(request, object=object, record_id=record_id, op="delete")
            return await self._write(change, access, keyed, wait)
        body = await json_object(request, access.request_bytes)
        put = method == "PUT"
        problems = members(body, ("fields",), ("stage", "pipeline") if put else ())
        fields = object_member(body, "fields", problems)
        stage = string(body, "stage", problems)
        pipeline = string(body, "pipeline", problems)
        if problems:
            raise Invalid.of(problems)
        change, keyed = self._change(
            request,
            object=object,
            record_id=record_id,
            op="put" if put else "patch",
            fields=fields,
            stage=stage,
            pipeline=pipeline,
        )
        return await self._write(change, access, keyed, wait)

    @routes.endpoint(
        "/v1/records/{object}/{id}/stage",
        parameters=RECORD,
        post=write(
            "Move a record to a stage of its pipeline, or of another pipeline of its object.",
            "Move",
            operation_id="moveRecord",
            tags=("records",),
        ),
    )
    async def move(self, request: Request) -> Response:
        access = self.access()
        object, record_id = record_path(request, access.bundle)
        allow_write(request.state.principal, object)
        body = await json_object(request, access.request_bytes)
        problems = members(body, ("stage",), ("pipeline",))
        stage = string(body, "stage", problems, required=True)
        pipeline = string(body, "pipeline", problems)
        if problems:
            raise Invalid.of(problems)
        change, keyed = self._change(
            request, object=object, record_id=record_id, op="move", stage=stage, pipeline=pipeline
        )
        return await self._write(change, access, keyed)

    @routes.endpoint(
        "/v1/records/{object}/{id}/restore",
        parameters=RECORD,
        post=waitable(
            write(
                "Restore a deleted record from the recycle bin, with its fields, stage and owner; "
                "it runs on: restored automations, not on: created.",
                operation_id="restoreRecord",
                tags=("records",),
                statuses=(400, 401, 403, 404, 409, 500, 503),
            )
        ),
    )
    async def restore(self, request: Request) -> Response:
        access = self.access()
        object, record_id = record_path(request, access.bundle)
        allow_write(request.state.principal, object)
        wait = requested_wait(request.headers.get("prefer", ""))
        await self._read(restorable, self.svc.store, object, record_id)
        change, keyed = self._change(request, object=object, record_id=record_id, op="restore")
        return await self._write(change, access, keyed, wait)

    @routes.endpoint(
        "/v1/records/{object}",
        parameters=(ref("Object", "parameters"),),
        get=Operation(
            "List records of an object type, by id.",
            {
                "200": {"description": "A page of records.", "content": json_content(ref("RecordList"))},
                **errors(400, 401, 403, 404, 500, 503),
            },
            parameters=(
                {"name": "stage", "in": "query", "schema": STRING, "description": "Only records in this stage."},
                {
                    "name": "deleted",
                    "in": "query",
                    "schema": {"type": "boolean", "default": False},
                    "description": "true: the records in the recycle bin (deleted, restorable) instead.",
                },
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIST, "default": 100},
                },
                {
                    "name": "after",
                    "in": "query",
                    "schema": STRING,
                    "description": "Only records with an id after this one (the previous page's next).",
                },
            ),
            role="viewer",
            operation_id="listRecords",
            tags=("records",),
        ),
    )
    async def records(self, request: Request) -> Response:
        access = self.access()
        object, _ = record_path(request, access.bundle)
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
        flag = query.get("deleted", "false")
        if flag not in ("true", "false"):
            raise BadRequest(f"deleted must be true or false, not {flag[:40]!r}")
        stage, after = query.get("stage", ""), query.get("after", "")
        if flag == "true":  # the recycle bin: each with when it was deleted and will be forgotten
            zone, retention = zone_of(access.bundle), access.bundle.config.retention.deleted_records
            binned = await self._read(self.svc.store.deleted_records, object, after, limit, stage)
            items = [deleted_item(r, at, retention, zone) for r, at in binned]
            last = binned[-1][0].id if len(binned) >= limit else None
            return JSONResponse({"items": items, "next": last})
        found = await self._read(self.svc.store.list_records, object, stage, limit, after)
        items = [record_summary(r) for r in found if not r.deleted]
        return JSONResponse({"items": items, "next": found[-1].id if len(found) >= limit else None})

    @routes.endpoint(
        "/v1/events",
        post=waitable(
            write(
                "Send a named event about a record.",
                "Event",
                operation_id="sendEvent",
                tags=("records",),
                statuses=(400, 401, 403, 409, 413, 415, 422, 500, 503),
            )
        ),
    )
    async def event(self, request: Request) -> Response:
        access = self.access()
        body = await json_object(request, access.request_bytes)
        problems = members(body, ("event", "object", "id"), ("data",))
        event = string(body, "event", problems, required=True)
        object = string(body, "object", problems, required=True)
        data = object_member(body, "data", problems)
        record_id = body.get("id", "")
        if isinstance(record_id, bool) or not isinstance(record_id, str | int):
            problems.append(f"'id' must be a string or an integer, not {json_type(record_id)}")
        elif not str(record_id).strip() or len(str(record_id)) > MAX_ID:
            problems.append(f"'id' must be 1 to {MAX_ID} characters")
        if problems:
            raise Invalid.of(problems)
        allow_write(request.state.principal, object)
        change, keyed = self._change(
            request, object=object, record_id=str(record_id), op="event", event=event, data=data
        )
        return await self._write(change, access, keyed, requested_wait(request.headers.get("prefer", "")))

    # ---------------------------------------------------------------- webhooks

    @routes.endpoint(
        "/hooks/{path:path}",
        post=Operation(
            "A webhook Source: authenticated (HMAC signature or bearer token), mapped to changes.",
            {
                "202": {
                    "description": "Every mapped change stored; an item repeating an earlier one "
                    "of the delivery (same event_id, same change) is dropped and gets no entry.",
                    "content": json_content(ref("HookAccepted")),
                },
                **errors(400, 401, 404, 413, 415, 422, 500, 503),
            },
            description="HMAC: the Source's signature_header carries hex HMAC-SHA256 of the body "
            "(optionally `sha256=`-prefixed). With an `X-Timestamp: <unix seconds>` header the signature "
            "covers `<timestamp>.<body>` and timestamps more than 5 minutes from now are refused. "
            "body_token: a body field holds the shared token (Bitrix24's auth[application_token]). "
            "zalo_oa: `X-ZEvent-Signature: mac=<hex SHA-256 of app_id + body + timestamp + OA secret key>`. "
            "The body is JSON, or a form (urlencoded or multipart) whose PHP-style keys (`data[FIELDS][ID]`) "
            "nest as objects. "
            "A Source with `fetch:` answers 202 with `fetches` (one pending fetch per event, `duplicate` "
            "when its event id was queued before) and `changes` empty: the full record is read from the "
            "sender's REST API from the outbox, and only then stored as a change.",
            parameters=(
                {
                    "name": "path",
                    "in": "path",
                    "required": True,
                    "schema": STRING,
                    "description": "The Source's path below /hooks/.",
                },
            ),
            operation_id="receiveWebhook",
            tags=("webhooks",),
            request_body={
                "required": True,
                "content": {
                    **json_content(
                        {
                            "description": "The payload, or a list of payloads.",
                            "anyOf": [{"type": "object"}, {"type": "array", "items": {"type": "object"}}],
                        }
                    ),
                    **{
                        media: {"schema": {"type": "object", "description": "Form fields; PHP-style keys nest."}}
                        for media in FORM_TYPES
                    },
                },
            },
        ),
    )
    async def hook(self, request: Request) -> Response:
        access = self.access()
        path = request.scope["path"]
        source = access.hooks.get(path)
        if source is None:
            raise NotFound(f"no webhook source listens on {path}")
        if isinstance(source, str):
            raise Misconfigured(source)
        headers = request.headers
        source.check_headers(headers)
        if not is_form(headers.get("content-type")):
            check_content_type(request, lenient=True)
        setting = (
            f"max_bytes of Source {source.name}"
            if source.max_bytes < access.request_bytes
            else "limits.request_bytes in flowctl.yaml"
        )
        body = await read_body(request, min(source.max_bytes, access.request_bytes), setting)
        now = self.svc.clock.now()
        payload = source.payload(headers, body, now)
        if source.fetcher is not None:  # the full record is fetched later, from the outbox (sources.fetch)
            return await self._queue_fetches(source, payload, headers)
        changes = source.changes(payload, headers, now, access.bundle.objects)
        problems = [
            f"item {i}: {p}" if len(changes) > 1 else p
            for i, change in enumerate(changes)
            for p in (*hook_id_problems(change, source.name), *check_change(access.bundle, change))
        ]
        if problems:
            raise Invalid.of(problems)
        await self._check_moves(changes)
        results = await self._commit(changes) if changes else []
        answer = [{"seq": r.seq, "duplicate": r.duplicate} for r in results]
        repeat = bool(results) and all(r.duplicate for r in results)
        return JSONResponse({"accepted": True, "changes": answer, "duplicate": repeat}, status_code=202)

    async def _queue_fetches(self, source: WebhookSource, payload: Any, headers: Mapping[str, str]) -> Response:
        """Store each event of a fetching Source as a pending fetch (an outbox row) and answer 202."""
        items = payload if isinstance(payload, list) else [payload]
        fetcher = source.fetcher
        assert fetcher is not None
        effects = pending_fetches(fetcher, items, source.visible(headers), source.event_key)
        try:
            queued = await run_in_threadpool(self.svc.store.queue_outbox, effects, self.svc.clock.now())
        except Exception as exc:  # noqa: BLE001 - not stored: the sender should send again
            log.warning("webhook source %s: pending fetches not stored: %s", source.name, exc)
            raise Unavailable("the delivery was not stored; send it again", retry_after=5) from None
        answer = [{"key": e.key, "duplicate": e.key not in queued} for e in effects]
        repeat = all(item["duplicate"] for item in answer)
        return JSONResponse({"accepted": True, "changes": [], "fetches": answer, "duplicate": repeat}, status_code=202)

    # ---------------------------------------------------------------- operations

    @routes.endpoint(
        "/healthz",
        get=Operation(
            "The process is alive.",
            {"200": {"description": "Alive.", "content": json_content(ref("Status"))}},
            operation_id="healthz",
            tags=("operations",),
        ),
    )
    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    @routes.endpoint(
        "/readyz",
        get=Operation(
            "Changes are taken and processed: the store answers, the workers run, the engine runs a version.",
            {
                "200": {
                    "description": "Ready (status ready), or ready with problems listed (status degraded).",
                    "content": json_content(ref("Status")),
                },
                **errors(503),
            },
            operation_id="readyz",
            tags=("operations",),
        ),
    )
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

    @routes.endpoint(
        "/metrics",
        get=Operation(
            "Prometheus metrics (text format 0.0.4); needs a token (viewer or above) when Config sets one.",
            {
                "200": {"description": "The metrics.", "content": {"text/plain": {"schema": STRING}}},
                **errors(401, 403, 500),
            },
            role="viewer",
            operation_id="metrics",
            tags=("operations",),
        ),
    )
    async def metrics(self, request: Request) -> Response:
        # behind a token when one is set (queue depths, sources and routes are not for everyone);
        # Prometheus sends it as a bearer token. /healthz and /readyz stay open for load balancers.
        text = await run_in_threadpool(self.svc.metrics.render)  # callbacks may read the store
        return Response(text, media_type=CONTENT_TYPE)

    @routes.endpoint(
        "/openapi.json",
        get=Operation(
            "This document.",
            {"200": {"description": "OpenAPI 3.1.", "content": json_content({"type": "object"})}},
            operation_id="openapi",
            tags=("operations",),
        ),
    )
    async def openapi(self, request: Request) -> Response:
        return Response(self._openapi[not self.access().open], media_type="application/json")


# The read endpoints are declared after the ones above: the first declared route is the app's fast path.
from flowctl.runtime.api.reading import ReadHandlers  # noqa: E402 - declared after the records routes


class Api(HttpApi, ReadHandlers):
    """Every handler of the API: records, events, webhooks and operations, and the read endpoints."""


def openapi(*, secured: bool = False) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API, from the routes declared here and in ``api.reading``."""
    return document(routes.endpoints, secured=secured)
