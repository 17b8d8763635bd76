"""Deployed versions for the console: newest first, and the difference between two of them as
``flowctl plan`` reads it (``gitops.diff``): per document added, removed or changed, field by field.
"""

from __future__ import annotations

import json
from datetime import datetime, tzinfo
from typing import Any, Protocol

from flowctl.gitops.diff import FieldChange, diff_documents
from flowctl.ports import ConfigVersion, Deployments, Inspection
from flowctl.runtime.reads.common import check_limit, decode_cursor, iso, page
from flowctl.sources.errors import BadRequest, NotFound

_MARK = {"added": "+", "removed": "-", "changed": "~"}


class DeploymentStore(Inspection, Deployments, Protocol):
    """The roles read here."""


def version_item(version: ConfigVersion, current: str, zone: tzinfo) -> dict[str, Any]:
    return {
        "id": version.id,
        "applied_at": iso(version.applied_at, zone),
        "commit": version.commit,
        "author": version.author,
        "message": version.message,
        "current": version.id == current,
    }


def deployments(store: DeploymentStore, zone: tzinfo, *, limit: int = 50, cursor: str = "") -> dict[str, Any]:
    check_limit(limit)
    before = decode_cursor(cursor, (str, str))
    key: tuple[datetime, str] | None = None
    if before is not None:
        try:
            key = (datetime.fromisoformat(before[0]), before[1])
        except ValueError:
            raise BadRequest(f"cursor is not one this API gave: {cursor[:80]!r}") from None
    found: list[ConfigVersion] = store.versions_page(key, limit)
    now = store.current_version()
    current = now.id if now is not None else ""
    last = (found[-1].applied_at.isoformat(), found[-1].id) if found else None
    return page([version_item(v, current, zone) for v in found], len(found), limit, last)


def _line(change: FieldChange) -> str:
    def show(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, default=str)

    if change.op == "added":
        return f"+ {change.path}: {show(change.new)}"
    if change.op == "removed":
        return f"- {change.path}: {show(change.old)}"
    return f"~ {change.path}: {show(change.old)} → {show(change.new)}"


def diff(store: DeploymentStore, from_id: str, to_id: str) -> dict[str, Any]:
    versions = []
    for which in (from_id, to_id):
        version = store.version(which)
        if version is None:
            raise NotFound(f"no deployed version {which[:80]!r}")
        versions.append(version)
    old, new = versions
    documents = [
        {
            "kind": change.kind,
            "name": change.name,
            "change": change.op,
            "diff": [_line(f) for f in change.fields]
            if change.op == "changed"
            else [f"{_MARK[change.op]} {change.key}"],
        }
        for change in diff_documents(old.documents, new.documents)
    ]
    return {"from": old.id, "to": new.id, "documents": documents}
