"""The OpenAPI 3.1 document of the API, assembled from what each route declares.

Every handler declares its route next to itself (``@endpoint(path, get=Operation(...), ...)``, in
``api.handlers``): the summary, parameters, request body and responses of each method. The app
serves those routes, and :func:`document` assembles the same declarations into the document at
``/openapi.json``, so a route cannot be served undocumented or documented differently from how it
is routed. What several operations share lives here as components: the schemas of the bodies,
the common parameters, one response per error class, and the helpers :func:`write` and
:func:`waitable` that give a write its Idempotency-Key, its ``202`` and its errors.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from flowctl.runtime.api.idempotency import MAX_KEY
from flowctl.runtime.api.read_schemas import READ_SCHEMAS
from flowctl.runtime.api.readback import MAX_WAIT
from flowctl.runtime.api.requests import MAX_ID

F = TypeVar("F", bound=Callable[..., Any])

#: Who may call an operation, from least to most trusted: each role may do what the ones before it may.
Role = Literal["viewer", "writer", "operator", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "writer", "operator", "admin")


@dataclass(frozen=True, slots=True)
class Operation:
    """One method of one route, as the document describes it. ``role``: the least role that may call
    it when Config sets tokens (``None``: open to anyone, like ``/healthz`` or a webhook with its own
    authentication). ``operation_id`` and ``tags`` name it for generated clients and the docs."""

    summary: str
    responses: Mapping[str, Any]
    description: str = ""
    parameters: tuple[Mapping[str, Any], ...] = ()
    request_body: Mapping[str, Any] | None = None
    role: Role | None = None
    operation_id: str = ""
    tags: tuple[str, ...] = ()

    def document(self, *, secured: bool) -> dict[str, Any]:
        op: dict[str, Any] = {"summary": self.summary}
        if self.operation_id:
            op["operationId"] = self.operation_id
        if self.tags:
            op["tags"] = list(self.tags)
        if self.description:
            op["description"] = self.description
        if self.role is not None:
            op["x-required-role"] = self.role
            if secured:
                op["security"] = [{"bearerAuth": []}]
        if self.parameters:
            op["parameters"] = list(self.parameters)
        if self.request_body is not None:
            op["requestBody"] = self.request_body
        op["responses"] = dict(self.responses)
        return op


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A route: the path Starlette matches, the handler's name, and its operations by method
    (lower case, in the order they are documented); ``parameters`` apply to every method."""

    path: str
    handler: str
    operations: Mapping[str, Operation]
    parameters: tuple[Mapping[str, Any], ...] = field(default=())

    @property
    def methods(self) -> list[str]:
        return [method.upper() for method in self.operations]

    @property
    def documented_path(self) -> str:
        """The path as OpenAPI writes it: ``{path:path}`` becomes ``{path}``."""
        return re.sub(r"\{(\w+):\w+\}", r"{\1}", self.path)


class Routes:
    """The endpoints of a handler class, in the order they are declared."""

    def __init__(self) -> None:
        self.endpoints: list[Endpoint] = []

    def endpoint(
        self, path: str, *, parameters: Iterable[Mapping[str, Any]] = (), **operations: Operation
    ) -> Callable[[F], F]:
        """Declare the decorated handler as the route ``path`` with ``operations`` by method."""

        def declare(handler: F) -> F:
            self.endpoints.append(Endpoint(path, handler.__name__, operations, tuple(parameters)))
            return handler

        return declare


# --------------------------------------------------------------------------------------------
# components: what several operations refer to


def ref(name: str, kind: str = "schemas") -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def errors(*statuses: int) -> dict[str, Any]:
    """The error responses for ``statuses``, by reference."""
    return {str(status): ref(ERROR_RESPONSES[status][0], "responses") for status in statuses}


ERROR_RESPONSES: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "The request is malformed: not JSON, not a JSON object, a bad header or query value."),
    401: ("Unauthorized", "Missing or wrong credentials (a token of Config, or the webhook's signature or token)."),
    403: ("Forbidden", "The token is known but its role (or its objects) does not allow this operation."),
    404: ("NotFound", "No such object type, record or webhook path."),
    409: ("Conflict", "The Idempotency-Key was already used for a different request."),
    413: ("PayloadTooLarge", "The body is larger than limits.request_bytes (or the source's max_bytes)."),
    415: ("UnsupportedMediaType", "The body is not sent as application/json."),
    422: (
        "Invalid",
        "The request does not fit the configuration (a field of the wrong type, a stage with empty required "
        "fields, a ref field naming a record that does not exist or is deleted); every problem is listed in details.",
    ),
    500: ("Misconfigured", "The daemon's configuration is incomplete (an ${ENV} secret is unset)."),
    503: (
        "Unavailable",
        "The store could not be reached or did not take the write in time: nothing was "
        "stored. Retry later (a write with the same Idempotency-Key).",
    ),
}

WRITE_ERRORS = (400, 401, 403, 404, 409, 413, 415, 422, 500, 503)

STRING = {"type": "string"}
ACCEPTED: dict[str, Any] = {
    "description": "Stored; the worker will process it. A repeat of an Idempotency-Key gets the first answer with "
    "duplicate true.",
    "content": {"application/json": {"schema": ref("Accepted")}},
}
PROCESSED: dict[str, Any] = {
    "description": "Prefer: wait=N, and the change was processed within N seconds.",
    "headers": {"Preference-Applied": {"schema": STRING}},
    "content": {"application/json": {"schema": ref("Processed")}},
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "additionalProperties": False,
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "details"],
                "additionalProperties": False,
                "properties": {"code": STRING, "message": STRING, "details": {"type": "array", "items": STRING}},
            }
        },
    },
    "Accepted": {
        "type": "object",
        "required": ["accepted", "seq", "duplicate"],
        "additionalProperties": False,
        "properties": {"accepted": {"const": True}, "seq": {"type": "integer"}, "duplicate": {"type": "boolean"}},
    },
    "HookAccepted": {
        "type": "object",
        "required": ["accepted", "changes", "duplicate"],
        "additionalProperties": False,
        "properties": {
            "accepted": {"const": True},
            "changes": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["seq", "duplicate"],
                    "additionalProperties": False,
                    "properties": {"seq": {"type": "integer"}, "duplicate": {"type": "boolean"}},
                },
            },
            "fetches": {
                "type": "array",
                "description": "A Source with fetch: its pending fetches (outbox rows); changes is empty.",
                "items": {
                    "type": "object",
                    "required": ["key", "duplicate"],
                    "additionalProperties": False,
                    "properties": {"key": {"type": "string"}, "duplicate": {"type": "boolean"}},
                },
            },
            "duplicate": {"type": "boolean", "description": "true when every change was a repeat"},
        },
    },
    "Fields": {
        "type": "object",
        "description": "Field name → value, as the object type declares them.",
        "additionalProperties": True,
    },
    "Record": {
        "type": "object",
        "additionalProperties": False,
        "required": ["object", "id", "fields", "stage", "pipeline", "owner", "version"],
        "properties": {
            "object": STRING,
            "id": STRING,
            "fields": ref("Fields"),
            "stage": STRING,
            "pipeline": STRING,
            "owner": STRING,
            "version": {"type": "integer"},
            "pending": {
                "type": "boolean",
                "description": "true while written changes of the "
                "record are not processed yet: it reads as they will leave it",
            },
            "deleted": {"type": "boolean", "description": "On a timeline: the record is in the recycle bin."},
            "deleted_at": {
                "type": ["string", "null"],
                "format": "date-time",
                "description": "In the recycle bin (`deleted=true`): when the record was deleted.",
            },
            "purge_after": {
                "type": ["string", "null"],
                "format": "date-time",
                "description": "In the recycle bin: when it is forgotten (Config retention.deleted_records).",
            },
        },
    },
    "Processed": {
        "type": "object",
        "additionalProperties": False,
        "required": ["accepted", "seq", "duplicate", "status", "error", "record", "runs"],
        "properties": {
            "accepted": {"const": True},
            "seq": {"type": "integer"},
            "duplicate": {"type": "boolean"},
            "status": {"enum": ["done", "failed"]},
            "error": STRING,
            "record": {"oneOf": [ref("Record"), {"type": "null"}]},
            "runs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "automation", "status", "node"],
                    "additionalProperties": False,
                    "properties": {"id": STRING, "automation": STRING, "status": STRING, "node": STRING},
                },
            },
        },
    },
    "RecordList": {
        "type": "object",
        "required": ["items", "next"],
        "additionalProperties": False,
        "properties": {
            "items": {"type": "array", "items": ref("Record")},
            "next": {"type": ["string", "null"], "description": "Pass as `after` for the next page."},
        },
    },
    "PutRecord": {
        "type": "object",
        "required": ["fields"],
        "additionalProperties": False,
        "properties": {
            "fields": ref("Fields"),
            "stage": {"type": "string", "description": "Stage to place the record in."},
            "pipeline": {"type": "string", "description": "Pipeline, when the object has several."},
        },
    },
    "PatchRecord": {
        "type": "object",
        "required": ["fields"],
        "additionalProperties": False,
        "properties": {"fields": ref("Fields")},
    },
    "Move": {
        "type": "object",
        "required": ["stage"],
        "additionalProperties": False,
        "properties": {
            "stage": {"type": "string", "minLength": 1, "pattern": r"\S"},
            "pipeline": {
                "type": "string",
                "description": "Another pipeline of the record's object to move into (default: the record's own).",
            },
        },
    },
    "Event": {
        "type": "object",
        "required": ["event", "object", "id"],
        "additionalProperties": False,
        "properties": {
            "event": {"type": "string", "minLength": 1, "pattern": r"\S", "examples": ["invoice.paid"]},
            "object": {"type": "string", "minLength": 1, "pattern": r"\S", "examples": ["deal"]},
            "id": {
                "oneOf": [
                    {"type": "string", "minLength": 1, "maxLength": MAX_ID, "pattern": r"\S"},
                    {"type": "integer"},
                ]
            },
            "data": {"type": "object", "additionalProperties": True},
        },
    },
    "Status": {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": STRING,
            "problems": {
                "type": "array",
                "items": STRING,
                "description": "With status degraded: what works only in part, e.g. a channel whose "
                "${ENV} variable is not set (its messages are held).",
            },
        },
    },
}
PARAMETERS: dict[str, Any] = {
    "Object": {
        "name": "object",
        "in": "path",
        "required": True,
        "description": "An object type (ObjectType).",
        "schema": {"type": "string", "minLength": 1},
    },
    "Id": {
        "name": "id",
        "in": "path",
        "required": True,
        "description": "The record's id.",
        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_ID},
    },
    "IdempotencyKey": {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "Makes the write repeatable: a repeat stores nothing and gets the first "
        "answer; the same key with a different request is refused (409), after a restart too. "
        "Without it each request is a new write.",
        "schema": {"type": "string", "maxLength": MAX_KEY},
    },
    "Prefer": {
        "name": "Prefer",
        "in": "header",
        "required": False,
        "description": f"wait=N: answer once the change is processed (200, with the record and the runs "
        f"it started) or after N seconds (at most {MAX_WAIT:g}) with the usual 202; both say "
        "Preference-Applied.",
        "schema": {"type": "string", "examples": ["wait=5"]},
    },
}


def json_content(schema: Mapping[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def body(schema: str) -> dict[str, Any]:
    """A required JSON request body of the component schema ``schema``."""
    return {"required": True, "content": {"application/json": {"schema": ref(schema)}}}


def write(
    summary: str,
    schema: str | None = None,
    *,
    operation_id: str,
    tags: tuple[str, ...],
    statuses: tuple[int, ...] = WRITE_ERRORS,
) -> Operation:
    """A write by a writer: it takes an Idempotency-Key, answers 202 once stored, or one of ``statuses``."""
    return Operation(
        summary,
        {"202": ACCEPTED, **errors(*statuses)},
        parameters=(ref("IdempotencyKey", "parameters"),),
        request_body=body(schema) if schema else None,
        role="writer",
        operation_id=operation_id,
        tags=tags,
    )


def waitable(op: Operation) -> Operation:
    """``op`` accepting ``Prefer: wait=N``, and answering 200 with the outcome when it comes in time."""
    return Operation(
        op.summary,
        {"200": PROCESSED, **op.responses},
        op.description,
        (*op.parameters, ref("Prefer", "parameters")),
        op.request_body,
        op.role,
        op.operation_id,
        op.tags,
    )


def components() -> dict[str, Any]:
    """The document's components: schemas, common parameters, error responses, the bearer scheme."""
    json_body = {"application/json": {"schema": ref("Error")}}
    responses: dict[str, Any] = {
        name: {"description": text, "content": json_body} for name, text in ERROR_RESPONSES.values()
    }
    responses["Unavailable"]["headers"] = {
        "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "string"}}
    }
    responses["Unauthorized"]["headers"] = {
        "WWW-Authenticate": {"description": "The scheme to use: Bearer.", "schema": {"type": "string"}}
    }
    return {
        "schemas": {**SCHEMAS, **READ_SCHEMAS},
        "parameters": PARAMETERS,
        "responses": responses,
        "securitySchemes": {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": "A token of Config (api_token, or an entry of access:), required when one is "
                "set; the operation's x-required-role names the least role its token must have.",
            }
        },
    }


def document(endpoints: Iterable[Endpoint], *, secured: bool = False) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``endpoints`` (served at /openapi.json). ``secured``: Config sets
    tokens, so every operation with a role requires the bearer scheme; without one they require
    nothing. ``x-required-role`` names each operation's least role either way."""
    paths: dict[str, Any] = {}
    for endpoint in endpoints:
        item: dict[str, Any] = {"parameters": list(endpoint.parameters)} if endpoint.parameters else {}
        for method, operation in endpoint.operations.items():
            item[method] = operation.document(secured=secured)
        paths[endpoint.documented_path] = item
    return copy.deepcopy(
        {
            "openapi": "3.1.0",
            "info": {
                "title": "flowctl daemon API",
                "version": "1",
                "description": "Records, events and webhooks for flowctl. Writes answer 202 once stored. When "
                "Config sets a token (api_token or access:), every operation with an x-required-role needs "
                "`Authorization: Bearer <token>` of that role or above (viewer < writer < operator < admin): "
                "401 without a known token, 403 with a lesser role or, for a writer, an object it does not list.",
            },
            "paths": paths,
            "components": components(),
        }
    )
