"""Values ↔ table rows, and the plan of one ``commit_batch``: shared by every store.

A row is a plain ``dict`` keyed by column name (see ``tables.py``); JSON columns hold plain JSON
values. ``plan_batch`` folds a batch of ``Processed`` items, in order, into the net writes per
table, so the SQL store can issue one statement per table and the memory store applies the very
same result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flowctl.engine.state import ACTIVE, Effect, Record, Run, StageEntry, Timer, TraceEntry
from flowctl.ports import ConfigVersion, NewChange, Note, OutboxRow, Processed, StoredChange

Row = Mapping[Any, Any]  # a dict, or SQLAlchemy's RowMapping


class NaiveDatetime(ValueError):
    def __init__(self, value: datetime) -> None:
        super().__init__(f"datetime {value.isoformat()} has no timezone; the store only takes aware datetimes")


def utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive datetime is refused (its zone would be a guess)."""
    if value.tzinfo is None:
        raise NaiveDatetime(value)
    return value.astimezone(UTC)


# ------------------------------------------------------------------------------------ records


def record_row(record: Record, now: datetime) -> dict[str, Any]:
    return {
        "object": record.object,
        "id": record.id,
        "fields": dict(record.fields),
        "stage": record.stage,
        "pipeline": record.pipeline,
        "owner": record.owner,
        "version": record.version,
        "deleted": record.deleted,
        "updated_at": now,
    }


def record_from(row: Row) -> Record:
    return Record(
        object=row["object"],
        id=row["id"],
        fields=row["fields"],
        stage=row["stage"],
        pipeline=row["pipeline"],
        owner=row["owner"],
        version=row["version"],
        deleted=bool(row["deleted"]),
    )


def stage_entry_row(entry: StageEntry) -> dict[str, Any]:
    return {
        "object": entry.object,
        "record_id": entry.record_id,
        "pipeline": entry.pipeline,
        "stage": entry.stage,
        "at": utc(entry.at),
        "key": entry.key,
    }


def stage_entry_from(row: Row) -> StageEntry:
    return StageEntry(
        object=row["object"],
        record_id=row["record_id"],
        pipeline=row["pipeline"],
        stage=row["stage"],
        at=row["at"],
        key=row["key"],
    )


def note_row(effect: Effect, now: datetime) -> dict[str, Any]:
    return {
        "key": effect.key,
        "object": effect.object,
        "record_id": effect.record_id,
        "run_id": effect.run_id,
        "text": str(effect.params.get("text", "")),
        "at": utc(now),
    }


def note_from(row: Row) -> Note:
    return Note(
        key=row["key"],
        object=row["object"],
        record_id=row["record_id"],
        run_id=row["run_id"],
        text=row["text"],
        at=row["at"],
    )


# ------------------------------------------------------------------------------------ runs


def trace_from(entry: Mapping[str, Any]) -> TraceEntry:
    return TraceEntry(
        at=entry["at"],
        node=entry["node"],
        kind=entry["kind"],
        detail=entry.get("detail", ""),
        values=entry.get("values") or {},
        result=entry.get("result"),
    )


def run_row(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "automation": run.automation,
        "object": run.object,
        "record_id": run.record_id,
        "status": run.status,
        "node": run.node,
        "waiting_for": run.waiting_for,
        "entry": run.entry,
        "visits": dict(run.visits),
        "steps": run.steps,
        "started_at": run.started_at,
        "updated_at": run.updated_at,
        "config_version": run.config_version,
        "trace": [entry.to_json() for entry in run.trace],
        "seq": run.seq,
    }


def run_from(row: Row) -> Run:
    return Run(
        id=row["id"],
        automation=row["automation"],
        object=row["object"],
        record_id=row["record_id"],
        status=row["status"],
        node=row["node"],
        waiting_for=row["waiting_for"],
        entry=row["entry"],
        visits=row["visits"],
        steps=row["steps"],
        started_at=row["started_at"],
        updated_at=row["updated_at"],
        config_version=row["config_version"],
        trace=tuple(trace_from(entry) for entry in row["trace"]),
        seq=row["seq"],
    )


# ------------------------------------------------------------------------------------ timers


def timer_row(timer: Timer) -> dict[str, Any]:
    return {
        "id": timer.id,
        "run_id": timer.run_id,
        "due": timer.due,
        "kind": timer.kind,
        "node": timer.node,
        "object": timer.object,
        "record_id": timer.record_id,
        "lease_owner": None,
        "lease_until": None,
        "attempts": 0,
    }


def timer_from(row: Row) -> Timer:
    return Timer(
        id=row["id"],
        run_id=row["run_id"],
        due=row["due"],
        kind=row["kind"],
        node=row["node"],
        object=row["object"],
        record_id=row["record_id"],
    )


# ------------------------------------------------------------------------------------ changes


def change_row(change: NewChange) -> dict[str, Any]:
    return {
        "idempotency_key": change.idempotency_key,
        "object": change.object,
        "record_id": change.record_id,
        "op": change.op,
        "fields": dict(change.fields),
        "stage": change.stage,
        "pipeline": change.pipeline,
        "event": change.event,
        "data": dict(change.data),
        "source": change.source,
        "status": "pending",
        "attempts": 0,
        "error": "",
        "received_at": change.received_at,
        "processed_at": None,
        "lease_owner": None,
        "lease_until": None,
        "fingerprint": change.fingerprint or None,
    }


def change_from(row: Row) -> StoredChange:
    return StoredChange(
        seq=row["seq"],
        idempotency_key=row["idempotency_key"],
        object=row["object"],
        record_id=row["record_id"],
        op=row["op"],
        fields=row["fields"],
        stage=row["stage"],
        pipeline=row["pipeline"],
        event=row["event"],
        data=row["data"],
        source=row["source"],
        received_at=row["received_at"],
        status=row["status"],
        attempts=row["attempts"],
        error=row["error"],
        fingerprint=row.get("fingerprint") or "",
    )


# ------------------------------------------------------------------------------------ outbox


def outbox_row(effect: Effect, now: datetime) -> dict[str, Any]:
    """A new outbox row (without ``id``), due at once."""
    row = OutboxRow.from_effect(effect)
    return {
        "key": row.key,
        "channel": row.channel,
        "action": row.action,
        "object": row.object,
        "record_id": row.record_id,
        "run_id": row.run_id,
        "payload": dict(row.payload),
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "last_error": "",
        "created_at": now,
        "sent_at": None,
        "recipient": row.recipient,
        "lease_owner": None,
        "lease_until": None,
    }


def outbox_from(row: Row) -> OutboxRow:
    return OutboxRow(
        id=row["id"],
        key=row["key"],
        channel=row["channel"],
        action=row["action"],
        object=row["object"],
        record_id=row["record_id"],
        run_id=row["run_id"],
        payload=row["payload"],
        status=row["status"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        last_error=row["last_error"],
        created_at=row["created_at"],
        sent_at=row["sent_at"],
        recipient=row["recipient"],
    )


# ------------------------------------------------------------------------------------ config versions


def version_row(version: ConfigVersion) -> dict[str, Any]:
    return {
        "id": version.id,
        "applied_at": version.applied_at,
        "commit": version.commit,
        "author": version.author,
        "message": version.message,
        "documents": dict(version.documents),
        "current": True,
        "files": dict(version.files),
    }


def version_from(row: Row) -> ConfigVersion:
    return ConfigVersion(
        id=row["id"],
        applied_at=row["applied_at"],
        documents=row["documents"],
        commit=row["commit"],
        author=row["author"],
        message=row["message"],
        files=row.get("files") or {},
    )


# ------------------------------------------------------------------------------------ a batch


@dataclass(kw_only=True, slots=True)
class BatchPlan:
    """The net writes of a batch: later items win over earlier ones, as if applied one by one."""

    records: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    timers: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # None: delete
    outbox: dict[str, dict[str, Any]] = field(default_factory=dict)  # by key: the first one wins
    allocations: dict[str, dict[str, Any]] = field(default_factory=dict)
    changes: list[dict[str, Any]] = field(default_factory=list)  # seq, status, error
    stage_entries: list[dict[str, Any]] = field(default_factory=list)  # appended, never replaced
    notes: dict[str, dict[str, Any]] = field(default_factory=dict)  # by the effect's key: once

    @property
    def timer_upserts(self) -> list[dict[str, Any]]:
        return [row for row in self.timers.values() if row is not None]

    @property
    def timer_deletes(self) -> list[str]:
        return [timer_id for timer_id, row in self.timers.items() if row is None]


def plan_batch(items: Sequence[Processed], now: datetime) -> BatchPlan:
    """Fold ``items`` in order. Per item: the fired timer goes, then the input record, the step's
    records, runs, cancelled timers, new timers, effects, allocations and stage entries, as ``MemoryState.apply``
    does. Effects without a channel (``update_fields``, ``move_stage``) were already applied to
    ``step.records``; only effects that leave through a channel become outbox rows, and
    ``add_note`` effects become notes.
    """
    plan = BatchPlan()
    for item in items:
        step = item.step
        if item.timer is not None:
            plan.timers[item.timer.id] = None
        if item.record is not None:
            plan.records[item.record.key] = record_row(item.record, now)
        for record in step.records.values():
            plan.records[record.key] = record_row(record, now)
        for run in step.runs.values():
            plan.runs[run.id] = run_row(run)
        for timer_id in step.cancelled_timers:
            plan.timers[timer_id] = None
        for timer in step.timers:
            plan.timers[timer.id] = timer_row(timer)
        for effect in step.effects:
            if effect.channel and effect.key not in plan.outbox:
                plan.outbox[effect.key] = outbox_row(effect, now)
            elif effect.action == "add_note" and effect.key not in plan.notes:
                plan.notes[effect.key] = note_row(effect, now)
        for rule, state in step.allocations.items():
            plan.allocations[rule] = {"rule": rule, "state": dict(state)}
        plan.stage_entries.extend(stage_entry_row(entry) for entry in step.stage_entries)
        if item.change is not None:
            status = "failed" if item.error else "done"
            plan.changes.append({"b_seq": item.change.seq, "b_status": status, "b_error": item.error})
    return plan


# ------------------------------------------------------------------------------------ gauges

CHANGE_GAUGES = ("pending", "claimed", "failed")
OUTBOX_GAUGES = ("pending", "sending", "retry", "dead", "held")
#: Outbox rows an operator may send again now (``retry_outbox``), or cancel (``cancel_outbox``):
#: none a sender holds (``sending``), none already sent.
RETRYABLE = ("dead", "retry", "held")
CANCELLABLE = ("pending", "retry", "held", "dead")
#: The keys of ``Store.counts()``, every one always present.
COUNTS = (
    "records",
    "timers",
    *(f"changes_{s}" for s in CHANGE_GAUGES),
    *(f"runs_{s}" for s in ACTIVE),
    *(f"outbox_{s}" for s in OUTBOX_GAUGES),
)
