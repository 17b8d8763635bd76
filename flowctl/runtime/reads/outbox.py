"""The outbox for the read API and the console: a page of rows, newest first, and an operator's
retry or cancel of one row (the same store path as ``flowctl outbox retry``).

A row is shown without its rendered payload: ``summary`` is its subject or title, or the start of
its text, else its action (``create_task``), so no row reads as blank.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any, Protocol, get_args

from flowctl.ports import Inspection, OutboxFilter, OutboxRow, OutboxStatus
from flowctl.runtime.reads.common import check_choice, check_limit, decode_cursor, iso, page
from flowctl.sources.errors import BadRequest, Conflict, NotFound
from flowctl.spec import model as m

OUTBOX_STATUSES: tuple[str, ...] = get_args(OutboxStatus)
RETRYABLE = ("dead", "retry", "held")  # as the store's retry_outbox takes them
CANCELLABLE = ("pending", "retry", "held", "dead")  # as the store's cancel_outbox takes them
SUMMARY_CHARS = 80


class OutboxStore(Inspection, Protocol):
    def retry_outbox(self, row_id: int, now: datetime) -> bool: ...
    def cancel_outbox(self, row_id: int, now: datetime) -> bool: ...


def summary(row: OutboxRow) -> str:
    payload = row.payload
    for name in ("subject", "title", "text", "body", "message", "content"):
        value = payload.get(name)
        if isinstance(value, str) and value.strip():
            return " ".join(value.split())[:SUMMARY_CHARS]
    return row.action


def row_item(row: OutboxRow, zone: tzinfo) -> dict[str, Any]:
    return {
        "id": row.id,
        "channel": row.channel,
        "action": row.action,
        "object": row.object,
        "record_id": row.record_id,
        "run_id": row.run_id,
        "status": row.status,
        "attempts": row.attempts,
        "next_attempt_at": iso(row.next_attempt_at, zone),
        "last_error": row.last_error,
        "created_at": iso(row.created_at, zone),
        "sent_at": iso(row.sent_at, zone),
        "recipient": row.recipient,
        "summary": summary(row),
    }


def list_outbox(
    store: Inspection,
    bundle: m.Bundle,
    zone: tzinfo,
    *,
    status: str = "",
    channel: str = "",
    object: str = "",
    record_id: str = "",
    limit: int = 50,
    cursor: str = "",
) -> dict[str, Any]:
    check_choice(status, "status", OUTBOX_STATUSES)
    check_limit(limit)
    if record_id and not object:
        raise BadRequest("record needs object: a record id names a record of one object type")
    if object and object not in bundle.objects:
        raise BadRequest(f"object: unknown object type {object[:80]!r} (known: {', '.join(sorted(bundle.objects))})")
    before = decode_cursor(cursor, (int,))
    filter = OutboxFilter(status=status, channel=channel, object=object, record_id=record_id)
    found = store.outbox_page(filter, None if before is None else before[0], limit)
    return page([row_item(r, zone) for r in found], len(found), limit, (found[-1].id,) if found else None)


def _row(store: Inspection, row_id: int) -> OutboxRow:
    row = store.outbox_row(row_id)
    if row is None:
        raise NotFound(f"no outbox row {row_id}")
    return row


def _change(store: OutboxStore, zone: tzinfo, row_id: int, now: datetime, *, retry: bool) -> dict[str, Any]:
    row = _row(store, row_id)
    allowed, verb = (RETRYABLE, "retried") if retry else (CANCELLABLE, "cancelled")
    if row.status in allowed:
        done = store.retry_outbox(row_id, now) if retry else store.cancel_outbox(row_id, now)
        row = _row(store, row_id)
        if done:
            return row_item(row, zone)
    raise Conflict(
        f"outbox row {row_id} is {row.status}: only a {', '.join(allowed[:-1])} or {allowed[-1]} row can be {verb}"
    )


def retry(store: OutboxStore, zone: tzinfo, row_id: int, now: datetime) -> dict[str, Any]:
    """A dead, retry or held row goes out again now (a fresh attempt budget); 409 for any other."""
    return _change(store, zone, row_id, now, retry=True)


def cancel(store: OutboxStore, zone: tzinfo, row_id: int, now: datetime) -> dict[str, Any]:
    """A row no sender holds and not sent is never sent; 409 for a sent, sending or cancelled one."""
    return _change(store, zone, row_id, now, retry=False)
