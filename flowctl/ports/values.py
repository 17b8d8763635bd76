"""The values the store's ports pass: changes, outbox rows, versions, care occurrences, filters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from flowctl.engine.state import Effect, Record, Step, Timer
from flowctl.spec.model import empty_map

ChangeOp = Literal["put", "patch", "move", "delete", "restore", "event"]
OutboxStatus = Literal["pending", "sending", "sent", "retry", "dead", "held", "cancelled"]


class LeaseLost(Exception):
    """A commit refused because its worker no longer holds the leases of its work: it was frozen
    or cut off past its lease and another claimer took the rows (fencing). Nothing was written;
    the work is the new holder's. ``holders`` counts the lost rows by who holds them now
    (``"nobody"``: finished or given back)."""

    def __init__(self, kind: str, owner: str, total: int, holders: Mapping[str, int]) -> None:
        self.kind = kind
        self.owner = owner
        self.total = total
        self.holders = dict(holders)
        self.lost = sum(self.holders.values())
        now_held = ", ".join(
            f"{'nobody (done or given back)' if who == 'nobody' else who} x{n}"
            for who, n in sorted(self.holders.items())
        )
        super().__init__(
            f"batch of {total} {kind}(s) not committed: {owner} lost the lease of {self.lost} "
            f"(held now by: {now_held}); it was paused past its lease and another worker "
            f"took them over, so their work is left to it"
        )


class Clock(Protocol):
    """The time, for everything that stamps or schedules: an aware datetime (UTC in the daemon).
    The daemon passes ``SystemClock``, tests a frozen one (``flowctl.testing.FrozenClock``)."""

    def now(self) -> datetime: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class NewChange:
    """A write accepted by the API or a source, before the worker has processed it.

    ``op`` is put/patch/move/delete (``fields``/``stage`` as the request gave them) or event
    (``event`` and ``data``). ``idempotency_key`` is unique: appending the same key again
    returns the first change instead of storing a second one.
    """

    object: str
    record_id: str
    op: ChangeOp
    idempotency_key: str
    fields: Mapping[str, Any] = field(default_factory=empty_map)
    stage: str = ""
    pipeline: str = ""
    event: str = ""
    data: Mapping[str, Any] = field(default_factory=empty_map)
    source: str = "api"
    received_at: datetime | None = None
    fingerprint: str = ""  # what a keyed API write asked for ('' = not checked): a reuse that differs is a 409


@dataclass(frozen=True, kw_only=True, slots=True)
class StoredChange(NewChange):
    seq: int  # global order; per record, changes are processed in seq order
    status: Literal["pending", "claimed", "done", "failed"] = "pending"
    attempts: int = 0
    error: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class AppendResult:
    seq: int
    duplicate: bool  # True when the idempotency key was already stored
    fingerprint: str = ""  # the stored change's (for a duplicate: the first one's, not the one appended)
    processed: bool = False  # run by the engine in the commit that stored it (``InlineRun``)


@dataclass(frozen=True, kw_only=True, slots=True)
class OutboxRow:
    id: int
    key: str  # the effect's idempotency key (Message-ID / Idempotency-Key header)
    channel: str
    action: str
    object: str
    record_id: str
    run_id: str
    payload: Mapping[str, Any]  # the effect's rendered params
    status: OutboxStatus = "pending"
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str = ""
    created_at: datetime | None = None
    sent_at: datetime | None = None
    recipient: str = ""

    @classmethod
    def from_effect(cls, effect: Effect, id: int = 0) -> OutboxRow:
        return cls(
            id=id,
            key=effect.key,
            channel=effect.channel,
            action=effect.action,
            object=effect.object,
            record_id=effect.record_id,
            run_id=effect.run_id,
            payload=dict(effect.params),
            recipient=str(effect.params.get("to") or ""),
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class ConfigVersion:
    id: str  # the content hash
    applied_at: datetime
    documents: Mapping[str, Any]  # "<Kind>/<name>" -> raw document
    commit: str = ""
    author: str = ""
    message: str = ""
    #: every file of the configuration as text ("flows/a.yaml" -> text), so it can be rebuilt
    #: exactly (``flowctl rollback``); empty for versions recorded without them
    files: Mapping[str, str] = field(default_factory=empty_map)


@dataclass(frozen=True, kw_only=True, slots=True)
class Processed:
    """One handled input, ready to commit: exactly one of ``change``/``timer`` is set (or neither,
    for a care occurrence). ``record`` is the input record as the change left it (written before
    ``step.records``); ``error`` marks the change failed instead of done (the step is then empty).
    """

    change: StoredChange | None = None
    timer: Timer | None = None
    record: Record | None = None
    step: Step = field(default_factory=Step)
    error: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class CareOccurrence:
    """One (process, record, occurrence) in the care ledger. ``status`` is ``claimed`` while a
    scheduler holds it, then ``sent``, ``skipped`` or ``failed``; ``config_version`` is the
    version it runs on (the day's pinned version)."""

    process: str
    object: str
    record_id: str
    occurrence: str
    status: str = "claimed"
    config_version: str = ""

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.process, self.object, self.record_id, self.occurrence)


@dataclass(frozen=True, kw_only=True, slots=True)
class Note:
    """A note an ``add_note`` action wrote on a record's timeline; ``key`` is the effect's key
    (a retried step writes it once), ``run_id`` the run that wrote it."""

    key: str
    object: str
    record_id: str
    run_id: str
    text: str
    at: datetime


@dataclass(frozen=True, kw_only=True, slots=True)
class CareSummary:
    """What the ledger says about one care process: occurrences per status, the last one done."""

    counts: Mapping[str, int] = field(default_factory=empty_map)
    last_done_at: datetime | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class RunFilter:
    """Which runs ``runs_page`` lists ('' and None: any). ``since``/``until`` bound when the run
    started (its seq, the creation millisecond): ``[since, until)``."""

    status: str = ""
    automation: str = ""
    object: str = ""
    record_id: str = ""
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class OutboxFilter:
    """Which outbox rows ``outbox_page`` lists ('' : any)."""

    status: str = ""
    channel: str = ""
    object: str = ""
    record_id: str = ""
