"""Read your own write: a record as its last acknowledged write left it, and waiting for a change.

Writes are processed after they are acknowledged (``202``), so a read right after a write could
miss it. :func:`read_record` answers the stored record with the record's open changes (pending
or claimed, read from the store's change queue, so any replica or process answers the same)
applied on top, the way the engine applies them (``engine.changes``), and ``pending: true``
until they are processed. An event changes no field but still marks its record pending.

A writer that would rather have the outcome sends ``Prefer: wait=N`` (RFC 7240):
:func:`wait_processed` polls the change until it is processed or ``N`` seconds (at most
``MAX_WAIT``) have passed. The answer is then ``200`` with the record and the runs the change
started, or the usual ``202``; both carry ``Preference-Applied: wait=N``.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from flowctl.engine import changes as change_ops
from flowctl.engine.state import Record, Run
from flowctl.ports import StoredChange
from flowctl.sources.errors import Conflict, NotFound

MAX_WAIT = 30.0  # seconds: longer than that, a client is better off reading again later
_POLL_FIRST, _POLL_MAX = 0.01, 0.25
_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*\"?([0-9]+(?:\.[0-9]+)?)\"?", re.IGNORECASE)


def with_open_changes(record: Record | None, open_changes: Sequence[StoredChange]) -> Record | None:
    """``record`` as its not yet processed changes will leave it, as far as the request says:
    the fields written, the stage asked for. Rules that run when the change is processed may
    change it further; a move the engine will refuse shows the stage asked for until then."""
    for change in open_changes:
        key = f"c{change.seq}"
        if change.op == "put":
            record = change_ops.put(
                key, record, change.object, change.record_id, change.fields, change.stage, change.pipeline
            ).after
        elif change.op == "patch":
            record = change_ops.patch(key, record, change.object, change.record_id, change.fields).after
        elif change.op == "restore":
            if record is not None and record.deleted:  # else the engine refuses it
                record = change_ops.restore(key, record).after
        elif record is None or record.deleted:
            continue  # a move or delete of a missing record: the engine refuses it
        elif change.op == "move":
            record = change_ops.move(key, record, change.stage, change.pipeline).after
        elif change.op == "delete":
            record = change_ops.delete(key, record).after
    return record


def record_summary(record: Record) -> dict[str, Any]:
    """A record as the API shows it in a list."""
    return {
        "object": record.object,
        "id": record.id,
        "fields": dict(record.fields),
        "stage": record.stage,
        "pipeline": record.pipeline,
        "owner": record.owner,
        "version": record.version,
    }


def record_json(record: Record, *, pending: bool) -> dict[str, Any]:
    """A record as the API answers for it alone: ``pending`` while changes to it are not processed."""
    return {**record_summary(record), "pending": pending}


def read_record(store: Any, object: str, id: str) -> tuple[Record | None, bool]:
    """The record as the last acknowledged write left it (None: missing or deleted) and whether
    changes of it are still to be processed. Two indexed reads; a blocking call (a thread)."""
    record, pending = read_written(store, object, id)
    return (None if record is None or record.deleted else record), pending


def read_written(store: Any, object: str, id: str) -> tuple[Record | None, bool]:
    """As :func:`read_record`, with a deleted record too (it is in the recycle bin until purged).

    The open changes are read first: a change processed between the two reads is then either
    still listed (and applied again on top of the record it already changed, which leaves the
    same values) or already in the record. Read the other way round, a change committed in
    between is in neither, and an acknowledged write would answer 404."""
    open_changes = store.open_changes(object, id)
    record = store.record(object, id)
    if open_changes:
        record = with_open_changes(record, open_changes)
    return record, bool(open_changes)


def last_written(store: Any, object: str, id: str) -> Record | None:
    """The record as the last acknowledged write left it, deleted or not (None: never written,
    or purged): whether a restore has anything to restore."""
    return read_written(store, object, id)[0]


def restorable(store: Any, object: str, id: str) -> Record:
    """The deleted record a restore would bring back: NotFound (purged or never written),
    Conflict (not deleted). What the API's restore and the console's Restore both check."""
    record = last_written(store, object, id)
    if record is None:
        raise NotFound(f"{object} {id} does not exist (purged from the recycle bin, or never written)")
    if not record.deleted:
        raise Conflict(f"{object} {id} is not deleted: only a record in the recycle bin is restored")
    return record


def requested_wait(prefer: str) -> float | None:
    """The seconds a ``Prefer`` header asks to wait (``wait=5``), at most ``MAX_WAIT``; None when it
    does not ask (a preference the server does not know is ignored, as RFC 7240 says)."""
    found = _WAIT.search(prefer) if prefer else None
    if found is None:
        return None
    return min(float(found.group(1)), MAX_WAIT)


async def wait_processed(
    read: Callable[[int], Awaitable[StoredChange | None]], seq: int, seconds: float
) -> StoredChange | None:
    """Poll change ``seq`` until it is done or failed (returned) or ``seconds`` pass (None). The
    polls come quickly at first (a change is usually processed within milliseconds), then every
    quarter second."""
    deadline = time.monotonic() + seconds
    pause = _POLL_FIRST
    while True:
        change = await read(seq)
        if change is not None and change.status in ("done", "failed"):
            return change
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        await asyncio.sleep(min(pause, left))
        pause = min(pause * 2, _POLL_MAX)


def started_by(change: StoredChange, runs: Sequence[Run]) -> list[dict[str, Any]]:
    """The runs ``change`` started (their ids begin with the change's key ``c<seq>/``)."""
    prefix = f"c{change.seq}/"
    return [
        {"id": run.id, "automation": run.automation, "status": run.status, "node": run.node}
        for run in sorted(runs, key=lambda r: (r.seq, r.id))
        if run.id.startswith(prefix)
    ]


def processed_json(
    change: StoredChange, duplicate: bool, record: Record | None, pending: bool, runs: Sequence[Run]
) -> dict[str, Any]:
    """The ``200`` answer of a write whose change was processed while the writer waited: its
    status (done, or failed with the error), the record as it is now, the runs it started."""
    return {
        "accepted": True,
        "seq": change.seq,
        "duplicate": duplicate,
        "status": change.status,
        "error": change.error,
        "record": record_json(record, pending=pending) if record else None,
        "runs": started_by(change, runs),
    }
