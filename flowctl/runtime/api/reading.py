"""The read API (v1): runs, the outbox (with an operator's retry and cancel), care, deployments,
boards, a record's timeline, health and diagrams, each declared next to its handler.

Every handler reads its query, calls :class:`~flowctl.runtime.reads.Reads` in a thread (the
console calls the same methods) and answers its JSON. A bad query value is 400 naming the
parameter (a cursor not given by this API, a time without its offset, an unknown status); an
unknown run, row, pipeline, stage or record is 404. Lists are keyset pages: ``next`` is the
``cursor`` of the following page, null on the last.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from flowctl.runtime.api.core import ApiCore
from flowctl.runtime.api.openapi import STRING, Operation, errors, json_content, ref
from flowctl.runtime.api.requests import MAX_ID, MAX_LIST
from flowctl.runtime.api.routes import routes
from flowctl.runtime.reads import Reads
from flowctl.runtime.reads.outbox import OUTBOX_STATUSES
from flowctl.runtime.reads.runs import RUN_STATUSES
from flowctl.sources.errors import BadRequest, NotFound

MAX_TEXT = 200
MAX_ROW_ID = 2**63 - 1
READ_ERRORS = (400, 401, 403, 404, 500, 503)


def _query(name: str, description: str, schema: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": dict(schema or STRING),
        "description": description,
    }


def _path(name: str, description: str, schema: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": dict(schema or STRING), "description": description}


def _limit(name: str = "limit", default: int = 50) -> dict[str, Any]:
    return _query(
        name, "How many items, at most.", {"type": "integer", "minimum": 1, "maximum": MAX_LIST, "default": default}
    )


CURSOR = _query("cursor", "The previous page's `next`, as given.")
OBJECT = _query("object", "Only those of records of this object type.")
RECORD = _query("record", "Only those of this record (with `object`).", {"type": "string", "maxLength": MAX_ID})
OWNER = _query("owner", "Only the cards of records this user owns.")
SEARCH = _query("q", "Only records whose id or field values contain this text (any case).")


def _read_op(summary: str, schema: str, operation_id: str, tag: str, *params: Mapping[str, Any]) -> Operation:
    return Operation(
        summary,
        {"200": {"description": "The answer.", "content": json_content(ref(schema))}, **errors(*READ_ERRORS)},
        parameters=tuple(params),
        role="viewer",
        operation_id=operation_id,
        tags=(tag,),
    )


def _operate(summary: str, operation_id: str) -> Operation:
    return Operation(
        summary,
        {
            "200": {"description": "The row after.", "content": json_content(ref("OutboxRow"))},
            **errors(400, 401, 403, 404, 409, 500, 503),
        },
        parameters=(_path("id", "The outbox row's id.", {"type": "integer", "minimum": 1}),),
        role="operator",
        operation_id=operation_id,
        tags=("outbox",),
    )


class Query:
    """A request's query values, each checked as it is read (400 naming the parameter)."""

    def __init__(self, request: Request) -> None:
        self.values = request.query_params

    def text(self, name: str, limit: int = MAX_TEXT) -> str:
        value = self.values.get(name, "")
        if len(value) > limit or "\x00" in value:
            raise BadRequest(f"{name} must be at most {limit} characters, without NUL")
        return value

    def number(self, name: str, default: int) -> int:
        text = self.values.get(name)
        if text is None:
            return default
        if not text.strip().isdigit() or not 1 <= int(text) <= MAX_LIST:
            raise BadRequest(f"{name} must be a whole number from 1 to {MAX_LIST}, not {text[:40]!r}")
        return int(text)

    def choice(self, name: str, allowed: tuple[str, ...]) -> str:
        """One of ``allowed``, or '' when the parameter is not given (given empty: 400)."""
        value = self.values.get(name)
        if value is None:
            return ""
        if value not in allowed:
            raise BadRequest(f"{name} must be one of {', '.join(allowed)}, not {value[:80]!r}")
        return value

    def moment(self, name: str) -> datetime | None:
        if name not in self.values:
            return None
        text = self.text(name, 64)
        try:
            at = datetime.fromisoformat(text)
        except ValueError:
            at = None
        if at is None or at.tzinfo is None:
            raise BadRequest(f"{name} must be ISO 8601 with its UTC offset (2026-03-01T09:00:00+07:00), not {text!r}")
        return at


def _row_id(request: Request) -> int:
    text = request.path_params["id"]
    if not text.isdigit():
        raise BadRequest(f"id must be an outbox row's number, not {text[:40]!r}")
    row_id = int(text)
    if not 1 <= row_id <= MAX_ROW_ID:
        raise NotFound(f"no outbox row {text[:40]}")
    return row_id


class ReadHandlers(ApiCore):
    """The read endpoints; ``handlers.Api`` combines them with the others."""

    @functools.cached_property
    def reads(self) -> Reads:
        return Reads(self.svc)

    async def _answer(self, call: Callable[[], dict[str, Any]]) -> Response:
        return JSONResponse(await self._read(call))

    @routes.endpoint(
        "/v1/runs",
        get=_read_op(
            "List runs, newest first, with filters.",
            "RunList",
            "listRuns",
            "runs",
            _query("status", "Only runs in this status.", {"type": "string", "enum": list(RUN_STATUSES)}),
            _query(
                "automation", "Only runs of this automation (flow:<name>, rule:<pipeline>/<stage>/<rule>, care:<name>)."
            ),
            OBJECT,
            RECORD,
            _query(
                "since",
                "Only runs started at or after this time (ISO 8601 with offset).",
                {"type": "string", "format": "date-time"},
            ),
            _query(
                "until",
                "Only runs started before this time (ISO 8601 with offset).",
                {"type": "string", "format": "date-time"},
            ),
            _limit(),
            CURSOR,
        ),
    )
    async def list_runs(self, request: Request) -> Response:
        q = Query(request)
        call = functools.partial(
            self.reads.runs,
            status=q.choice("status", RUN_STATUSES),
            automation=q.text("automation"),
            object=q.text("object"),
            record_id=q.text("record", MAX_ID),
            since=q.moment("since"),
            until=q.moment("until"),
            limit=q.number("limit", 50),
            cursor=q.text("cursor"),
        )
        return await self._answer(call)

    @routes.endpoint(
        "/v1/runs/{id:path}",
        get=_read_op(
            "A run with its trace, each entry with the line `flowctl runs show` prints.",
            "RunDetail",
            "getRun",
            "runs",
            _path("id", "The run's id (it may hold slashes)."),
        ),
    )
    async def get_run(self, request: Request) -> Response:
        run_id = request.path_params["id"]
        if len(run_id) > MAX_TEXT or "\x00" in run_id:
            raise NotFound(f"no run {run_id[:40]!r}")
        return await self._answer(functools.partial(self.reads.run, run_id))

    @routes.endpoint(
        "/v1/outbox",
        get=_read_op(
            "List outbox rows, newest first, with filters.",
            "OutboxList",
            "listOutbox",
            "outbox",
            _query("status", "Only rows in this status.", {"type": "string", "enum": list(OUTBOX_STATUSES)}),
            _query("channel", "Only rows of this channel."),
            OBJECT,
            RECORD,
            _limit(),
            CURSOR,
        ),
    )
    async def list_outbox(self, request: Request) -> Response:
        q = Query(request)
        call = functools.partial(
            self.reads.outbox,
            status=q.choice("status", OUTBOX_STATUSES),
            channel=q.text("channel"),
            object=q.text("object"),
            record_id=q.text("record", MAX_ID),
            limit=q.number("limit", 50),
            cursor=q.text("cursor"),
        )
        return await self._answer(call)

    @routes.endpoint(
        "/v1/outbox/{id}/retry",
        post=_operate("Send a dead, retry or held row again now, with a fresh attempt budget.", "retryOutboxRow"),
    )
    async def retry_outbox(self, request: Request) -> Response:
        return await self._answer(functools.partial(self.reads.retry, _row_id(request)))

    @routes.endpoint(
        "/v1/outbox/{id}/cancel",
        post=_operate("Cancel a row not sent and not being sent: it is never sent.", "cancelOutboxRow"),
    )
    async def cancel_outbox(self, request: Request) -> Response:
        return await self._answer(functools.partial(self.reads.cancel, _row_id(request)))

    @routes.endpoint(
        "/v1/care",
        get=_read_op(
            "Each care process: its next firing, firings per day for 7 days, its last ticks.",
            "CareList",
            "listCare",
            "care",
        ),
    )
    async def care(self, request: Request) -> Response:
        return await self._answer(self.reads.care)

    @routes.endpoint(
        "/v1/deployments",
        get=_read_op(
            "Deployed configuration versions, newest first.",
            "DeploymentList",
            "listDeployments",
            "deployments",
            _limit(),
            CURSOR,
        ),
    )
    async def deployments(self, request: Request) -> Response:
        q = Query(request)
        return await self._answer(
            functools.partial(self.reads.deployments, limit=q.number("limit", 50), cursor=q.text("cursor"))
        )

    @routes.endpoint(
        "/v1/deployments/{from}/diff/{to}",
        get=_read_op(
            "What changes from one deployed version to another, per document and field.",
            "DeploymentDiff",
            "diffDeployments",
            "deployments",
            _path("from", "The version diffed from."),
            _path("to", "The version diffed to."),
        ),
    )
    async def deployment_diff(self, request: Request) -> Response:
        params = request.path_params
        return await self._answer(functools.partial(self.reads.deployment_diff, params["from"], params["to"]))

    @routes.endpoint(
        "/v1/pipelines/{name}/board",
        get=_read_op(
            "A pipeline as a board: per stage its count, the sum of the money field and the first cards.",
            "Board",
            "getBoard",
            "pipelines",
            _path("name", "The pipeline."),
            _limit("cards", 20),
            OWNER,
            SEARCH,
        ),
    )
    async def board(self, request: Request) -> Response:
        q = Query(request)
        call = functools.partial(
            self.reads.board,
            request.path_params["name"],
            cards=q.number("cards", 20),
            owner=q.text("owner"),
            q=q.text("q"),
        )
        return await self._answer(call)

    @routes.endpoint(
        "/v1/pipelines/{name}/stages/{stage}/cards",
        get=_read_op(
            "The cards of one column of a board, by record id.",
            "CardList",
            "listStageCards",
            "pipelines",
            _path("name", "The pipeline."),
            _path("stage", "The stage."),
            _limit(),
            CURSOR,
            OWNER,
            SEARCH,
        ),
    )
    async def stage_cards(self, request: Request) -> Response:
        q = Query(request)
        params = request.path_params
        call = functools.partial(
            self.reads.stage_cards,
            params["name"],
            params["stage"],
            limit=q.number("limit", 50),
            cursor=q.text("cursor"),
            owner=q.text("owner"),
            q=q.text("q"),
        )
        return await self._answer(call)

    @routes.endpoint(
        "/v1/records/{object}/{id}/timeline",
        parameters=(ref("Object", "parameters"), ref("Id", "parameters")),
        get=_read_op(
            "A record's timeline: the record, its stages, runs, messages and pending timers.",
            "Timeline",
            "getRecordTimeline",
            "records",
        ),
    )
    async def timeline(self, request: Request) -> Response:
        params = request.path_params
        record_id = params["id"]
        if len(record_id) > MAX_ID or "\x00" in record_id:
            raise BadRequest(f"a record id is at most {MAX_ID} characters, without NUL")
        return await self._answer(functools.partial(self.reads.timeline, params["object"], record_id))

    @routes.endpoint(
        "/v1/health",
        get=_read_op(
            "Lag, open changes, the engine, the last reload and recent errors.", "Health", "getHealth", "operations"
        ),
    )
    async def health(self, request: Request) -> Response:
        return await self._answer(self.reads.health)

    @routes.endpoint(
        "/v1/graph/{name}",
        get=_read_op(
            "A flow or pipeline as nodes and edges, with what waits at each.",
            "Graph",
            "getGraph",
            "pipelines",
            _path("name", "The flow or pipeline."),
        ),
    )
    async def graph(self, request: Request) -> Response:
        return await self._answer(functools.partial(self.reads.graph, request.path_params["name"]))
