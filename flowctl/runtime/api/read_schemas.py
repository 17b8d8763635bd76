"""The schemas of the read API's answers (``api.reading``), as OpenAPI components: the shapes
``runtime.reads`` gives, so the document and the fuzzing check every answer against them."""

from __future__ import annotations

from typing import Any

STRING: dict[str, Any] = {"type": "string"}
TEXT_OR_NULL: dict[str, Any] = {"type": ["string", "null"]}
TIME: dict[str, Any] = {
    "type": ["string", "null"],
    "description": "ISO 8601 with its offset, in the Config's timezone.",
}
INTEGER: dict[str, Any] = {"type": "integer"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(properties: dict[str, Any], *, closed: bool = True) -> dict[str, Any]:
    return {
        "type": "object",
        "required": list(properties),
        "additionalProperties": not closed,
        "properties": properties,
    }


def _list(item: str) -> dict[str, Any]:
    return _object(
        {
            "items": {"type": "array", "items": _ref(item)},
            "next": {"type": ["string", "null"], "description": "Pass as `cursor` for the next page (null: the last)."},
        }
    )


_RUN = {
    "id": STRING,
    "automation": STRING,
    "kind": {"enum": ["flow", "rule", "care"], "type": "string"},
    "name": STRING,
    "object": STRING,
    "record_id": STRING,
    "status": STRING,
    "node": STRING,
    "waiting_for": STRING,
    "steps": INTEGER,
    "started_at": TIME,
    "updated_at": TIME,
    "config_version": STRING,
}
_TRACE_ENTRY = {
    "type": "object",
    "required": ["at", "node", "kind", "text"],
    "additionalProperties": False,
    "properties": {
        "at": TIME,
        "node": STRING,
        "kind": STRING,
        "detail": STRING,
        "values": {"type": "object"},
        "result": {},
        "text": {"type": "string", "description": "The line `flowctl runs show` prints for the entry."},
    },
}
_OUTBOX_ROW = {
    "id": INTEGER,
    "channel": STRING,
    "action": STRING,
    "object": STRING,
    "record_id": STRING,
    "run_id": STRING,
    "status": STRING,
    "attempts": INTEGER,
    "next_attempt_at": TIME,
    "last_error": STRING,
    "created_at": TIME,
    "sent_at": TIME,
    "recipient": STRING,
    "summary": {"type": "string", "description": "The subject, or the first 80 characters of the text."},
}
_CARD = {
    "id": STRING,
    "title": STRING,
    "owner": STRING,
    "amount": {"type": ["number", "null"]},
    "stage": STRING,
    "updated_at": TIME,
    "pending_rules": {"type": "array", "items": STRING},
}
_NUMBER = {"type": "number"}

READ_SCHEMAS: dict[str, Any] = {
    "Run": _object(_RUN),
    "RunDetail": _object({**_RUN, "trace": {"type": "array", "items": _TRACE_ENTRY}}),
    "RunList": _list("Run"),
    "OutboxRow": _object(_OUTBOX_ROW),
    "OutboxList": _list("OutboxRow"),
    "Card": _object(_CARD),
    "CardList": _list("Card"),
    "Board": _object(
        {
            "pipeline": STRING,
            "object": STRING,
            "label": STRING,
            "sum_field": TEXT_OR_NULL,
            "totals_at": TIME,
            "stages": {
                "type": "array",
                "items": _object(
                    {
                        "id": STRING,
                        "label": STRING,
                        "count": INTEGER,
                        "sum": {"type": ["number", "null"]},
                        "final": STRING,
                        "cards": {"type": "array", "items": _ref("Card")},
                        "next": {"type": ["string", "null"], "description": "The `cursor` of the column's next cards."},
                    }
                ),
            },
        }
    ),
    "Timeline": _object(
        {
            "record": _ref("Record"),
            "stages": {
                "type": "array",
                "items": _object(
                    {
                        "stage": STRING,
                        "pipeline": STRING,
                        "at": TIME,
                        "key": {
                            "type": ["string", "null"],
                            "description": "The input that moved the record: `c<seq>` a change, `t:<id>` a timer.",
                        },
                        "seq": {"type": ["integer", "null"], "description": "The change's seq, if a change moved it."},
                    }
                ),
            },
            "notes": {
                "type": "array",
                "description": "What add_note actions wrote on the record, newest first.",
                "items": _object({"at": TIME, "text": STRING, "run_id": STRING, "automation": STRING}),
            },
            "runs": {"type": "array", "items": _ref("Run")},
            "messages": {"type": "array", "items": _ref("OutboxRow")},
            "timers": {
                "type": "array",
                "items": _object({"id": STRING, "kind": STRING, "node": STRING, "due": TIME, "run_id": STRING}),
            },
        }
    ),
    "CareList": _object(
        {
            "items": {
                "type": "array",
                "items": _object(
                    {
                        "name": STRING,
                        "object": STRING,
                        "enabled": {"type": "boolean"},
                        "next_firing": TIME,
                        "next_7_days": {"type": "array", "items": _object({"day": STRING, "count": INTEGER})},
                        "last_ticks": {"type": "array", "items": _object({"at": TIME, "claimed": INTEGER})},
                        "counts": {"type": "object", "additionalProperties": INTEGER},
                    }
                ),
            },
            "next": {"type": "null"},
        }
    ),
    "Deployment": _object(
        {
            "id": STRING,
            "applied_at": TIME,
            "commit": STRING,
            "author": STRING,
            "message": STRING,
            "current": {"type": "boolean"},
        }
    ),
    "DeploymentList": _list("Deployment"),
    "DeploymentDiff": _object(
        {
            "from": STRING,
            "to": STRING,
            "documents": {
                "type": "array",
                "items": _object(
                    {
                        "kind": STRING,
                        "name": STRING,
                        "change": {"enum": ["added", "removed", "changed"], "type": "string"},
                        "diff": {"type": "array", "items": STRING},
                    }
                ),
            },
        }
    ),
    "Health": _object(
        {
            "status": {"enum": ["ok", "degraded", "unready"], "type": "string"},
            "problems": {"type": "array", "items": STRING},
            "lag_seconds": _NUMBER,
            "open_changes": INTEGER,
            "outbox": {"type": "object", "additionalProperties": INTEGER},
            "timers": INTEGER,
            "engine": {"type": "object"},
            "last_reload": {"type": ["object", "null"]},
            "recent_errors": {
                "type": "array",
                "items": _object({"at": TIME, "level": STRING, "logger": STRING, "message": STRING}),
            },
        }
    ),
    "Graph": _object(
        {
            "kind": {"enum": ["flow", "pipeline"], "type": "string"},
            "name": STRING,
            "nodes": {
                "type": "array",
                "items": _object({"id": STRING, "label": STRING, "type": STRING, "waiting": INTEGER}),
            },
            "edges": {"type": "array", "items": _object({"from": STRING, "to": STRING, "label": STRING})},
        }
    ),
}
