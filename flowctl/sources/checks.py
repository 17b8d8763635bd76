"""Checks of a requested change against the configuration, and the fingerprint of what it asks.

:func:`check_change` lists every problem of a ``NewChange`` (unknown object or field, a wrong
type, a required field emptied, a stage that does not exist, NUL characters) before it is stored,
the same way for a write to the records API and for a mapped webhook delivery.
:func:`fingerprint` is what an idempotency key is judged by: the same request under the same key
is a repeat, another request under it a conflict.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from flowctl.engine.records import check_fields, check_stage
from flowctl.ports import NewChange
from flowctl.sources.payloads import NUL_PROBLEM, has_nul
from flowctl.spec import model as m


def _emptied_required(bundle: m.Bundle, object: str, fields: Mapping[str, Any]) -> list[str]:
    obj = bundle.objects.get(object)
    if obj is None:
        return []
    return [
        f"field '{name}' is required on {object} and cannot be emptied"
        for name, value in fields.items()
        if value in (None, "") and (spec := obj.fields.get(name)) is not None and spec.required
    ]


def check_change(bundle: m.Bundle, change: NewChange) -> list[str]:
    """Every problem of a requested change against the configuration ('' list when it is fine).

    Moves are checked against the stored record separately (that needs the store).
    """
    if has_nul(
        [change.object, change.record_id, change.stage, change.pipeline, change.event, change.fields, change.data]
    ):
        return [NUL_PROBLEM]  # the same answer on every store, not a 503 from PostgreSQL alone
    if change.object not in bundle.objects:
        return check_fields(bundle, change.object, {}, complete=False)
    if change.op == "put":
        return [
            *check_fields(bundle, change.object, change.fields, complete=True),
            *check_stage(bundle, change.object, change.stage, change.pipeline),
        ]
    if change.op == "patch":
        return [
            *check_fields(bundle, change.object, change.fields, complete=False),
            *_emptied_required(bundle, change.object, change.fields),
        ]
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
    text = json.dumps(
        [
            change.op,
            change.object,
            change.record_id,
            change.stage,
            change.pipeline,
            change.event,
            change.fields,
            change.data,
        ],
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()
