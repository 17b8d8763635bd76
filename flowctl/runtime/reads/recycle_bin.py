"""The recycle bin of one object type: its deleted records by id, each with when it was deleted
and the moment the daemon forgets it (Config ``retention.deleted_records`` after that); what
``GET /v1/records/{object}?deleted=true`` and the console's recycle bin page show."""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo
from typing import Any, Protocol

from flowctl.engine.state import Record
from flowctl.runtime.api.readback import record_summary
from flowctl.runtime.reads.board import title_field
from flowctl.runtime.reads.common import check_limit, decode_cursor, iso, page
from flowctl.sources.errors import NotFound
from flowctl.spec import model as m


class BinStore(Protocol):
    def deleted_records(
        self, object: str, after: str = "", limit: int = 100, stage: str = ""
    ) -> list[tuple[Record, datetime | None]]: ...


def deleted_item(record: Record, deleted_at: datetime | None, retention: timedelta, zone: tzinfo) -> dict[str, Any]:
    return {
        **record_summary(record),
        "deleted_at": iso(deleted_at, zone),
        "purge_after": iso(deleted_at + retention, zone) if deleted_at is not None else None,
    }


def recycle_bin(
    store: BinStore, bundle: m.Bundle, zone: tzinfo, object: str, *, limit: int = 50, cursor: str = ""
) -> dict[str, Any]:
    """Items: the record as a list shows it (object, id, fields, stage, pipeline, owner, version),
    ``title`` (its title field, else its id), ``deleted_at`` and ``purge_after``."""
    object_type = bundle.objects.get(object)
    if object_type is None:
        raise NotFound(f"unknown object type {object[:80]!r} (known: {', '.join(sorted(bundle.objects))})")
    check_limit(limit)
    after = decode_cursor(cursor, (str,))
    found = store.deleted_records(object, after[0] if after else "", limit)
    retention = bundle.config.retention.deleted_records
    title = title_field(object_type)
    items = []
    for record, deleted_at in found:
        item = deleted_item(record, deleted_at, retention, zone)
        shown = record.fields.get(title) if title else None
        item["title"] = str(shown) if shown not in (None, "") else record.id
        items.append(item)
    return page(items, len(found), limit, (found[-1][0].id,) if found else None)
