"""Turn a requested write (put, patch, move, delete, restore) into a ``RecordChanged`` input.

Shared by the simulator and the daemon so that "create or replace", "change some fields",
"move to a stage" and "delete" mean the same everywhere. Validation of the request against the
object type lives in ``engine.records``; these functions assume it passed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from flowctl.engine.state import Record, RecordChanged, copier

_copy = copier(Record)  # replace() without its checks: a patch is the commonest change


def put(
    key: str,
    current: Record | None,
    object: str,
    id: str,
    fields: Mapping[str, Any],
    stage: str = "",
    pipeline: str = "",
) -> RecordChanged:
    """Create or replace: the record's fields become exactly ``fields``."""
    owner = str(fields.get("owner") or "")
    if current is None or current.deleted:
        after = Record(
            object=object,
            id=id,
            fields=dict(fields),
            stage=stage,
            pipeline=pipeline,
            owner=owner,
            version=(current.version + 1) if current else 1,
        )
        return RecordChanged(key=key, op="created", before=None, after=after)
    after = replace(
        current,
        fields=dict(fields),
        stage=stage or current.stage,
        pipeline=pipeline or current.pipeline,
        owner=owner or current.owner,
        version=current.version + 1,
    )
    return RecordChanged(key=key, op="updated", before=current, after=after)


def patch(key: str, current: Record | None, object: str, id: str, fields: Mapping[str, Any]) -> RecordChanged:
    """Change some fields; a missing record is created with them."""
    if current is None or current.deleted:
        return put(key, current, object, id, fields)
    merged = {**current.fields, **fields}
    owner = str(fields["owner"] or "") if "owner" in fields else current.owner
    after = _copy(current, fields=merged, owner=owner, version=current.version + 1)
    return RecordChanged(key=key, op="updated", before=current, after=after)


def move(key: str, current: Record, stage: str, pipeline: str = "") -> RecordChanged:
    after = replace(current, stage=stage, pipeline=pipeline or current.pipeline, version=current.version + 1)
    return RecordChanged(key=key, op="updated", before=current, after=after)


def delete(key: str, current: Record) -> RecordChanged:
    """Soft delete (a recycle bin): the record keeps its fields and can be put back."""
    after = replace(current, deleted=True, version=current.version + 1)
    return RecordChanged(key=key, op="deleted", before=current, after=after)


def restore(key: str, current: Record) -> RecordChanged:
    """Take a record out of the recycle bin as it was deleted: its fields, stage, pipeline and
    owner. It is ``restored``, not ``created``: it does not enter its stage again."""
    after = replace(current, deleted=False, version=current.version + 1)
    return RecordChanged(key=key, op="restored", before=current, after=after)
