"""The values the engine reads and returns: records, runs, timers, effects, inputs and steps.

All frozen. The engine never mutates what it is given; it returns a ``Step`` describing the new
versions of what changed, and the shell (the simulator, the daemon's store) applies it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Literal, Protocol

from flowctl.spec.model import empty_map

RunStatus = Literal["running", "waiting", "queued", "done", "cancelled", "failed"]
ACTIVE = ("running", "waiting", "queued")


@dataclass(frozen=True, kw_only=True, slots=True)
class Record:
    """A CRM record as the engine sees it. ``fields`` excludes the built-ins kept beside it."""

    object: str
    id: str
    fields: Mapping[str, Any] = field(default_factory=empty_map)
    stage: str = ""
    pipeline: str = ""
    owner: str = ""
    version: int = 0
    deleted: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.object, self.id)

    def view(self) -> dict[str, Any]:
        """What templates and conditions see as ``record``: fields plus built-ins."""
        out = dict(self.fields)
        out.update(id=self.id, object=self.object, stage=self.stage, pipeline=self.pipeline)
        out.setdefault("owner", self.owner)
        if self.owner:
            out["owner"] = self.owner
        return out


def stage_moved(before: Record, after: Record) -> bool:
    """Whether ``after`` is in another stage than ``before``: another stage id, or the same id in
    another pipeline of the object."""
    return after.stage != before.stage or (
        after.pipeline != before.pipeline and bool(before.pipeline) and bool(after.pipeline)
    )


# ------------------------------------------------------------------------------------ inputs


@dataclass(frozen=True, kw_only=True, slots=True)
class RecordChanged:
    """A record was created, updated, deleted or restored from the recycle bin; ``before``/``after``
    are its two versions."""

    key: str  # idempotency key of the change: run and effect ids derive from it
    op: Literal["created", "updated", "deleted", "restored"]
    before: Record | None
    after: Record | None

    @property
    def record(self) -> Record:
        rec = self.after or self.before
        assert rec is not None
        return rec


@dataclass(frozen=True, kw_only=True, slots=True)
class EventReceived:
    """A named event about a record (``invoice.paid`` about deal 7), with its data."""

    key: str
    event: str
    object: str
    id: str
    data: Mapping[str, Any] = field(default_factory=empty_map)


@dataclass(frozen=True, kw_only=True, slots=True)
class TimerFired:
    key: str
    timer: Timer


@dataclass(frozen=True, kw_only=True, slots=True)
class CareDue:
    """A care process is due for a record at one occurrence (``2026-03-01`` for a birthday)."""

    key: str
    process: str
    object: str
    id: str
    occurrence: str


Input = RecordChanged | EventReceived | TimerFired | CareDue


# ------------------------------------------------------------------------------------ runs


@dataclass(frozen=True, kw_only=True, slots=True)
class TraceEntry:
    """One line of a run's trace: a node passed, a condition evaluated, a decision, an effect."""

    at: str  # ISO time
    node: str
    kind: str  # enter | condition | decision | effect | wait | timer | event | end | error | skip
    detail: str = ""
    values: Mapping[str, Any] = field(default_factory=empty_map)
    result: Any = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"at": self.at, "node": self.node, "kind": self.kind}
        if self.detail:
            out["detail"] = self.detail
        if self.values:
            out["values"] = dict(self.values)
        if self.result is not None:
            out["result"] = self.result
        return out


@dataclass(frozen=True, kw_only=True, slots=True)
class Run:
    """One execution of a flow, a stage rule or a care process for one record.

    ``automation`` is ``flow:<name>``, ``rule:<pipeline>/<stage>/<rule>`` or ``care:<name>``;
    ``entry`` groups the rules started by one stage entry; ``config_version`` pins the run to
    the configuration it started on.
    """

    id: str
    automation: str
    object: str
    record_id: str
    status: RunStatus = "running"
    node: str = ""
    waiting_for: str = ""
    entry: str = ""
    visits: Mapping[str, int] = field(default_factory=empty_map)
    steps: int = 0
    started_at: str = ""
    updated_at: str = ""
    config_version: str = ""
    trace: tuple[TraceEntry, ...] = ()
    seq: int = 0  # creation order, for queued mode

    @property
    def kind(self) -> str:
        return self.automation.split(":", 1)[0]

    @property
    def name(self) -> str:
        return self.automation.split(":", 1)[1]

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


#: What a timer waits for: a flow's delay, a wait_event's timeout, a stage rule's ``after``.
TimerKind = Literal["delay", "timeout", "rule", "hold"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Timer:
    """A wake-up stored as a row: a flow delay, a wait timeout, a delayed stage rule or an action
    held until working time (``hold``)."""

    id: str
    run_id: str
    due: datetime
    kind: TimerKind
    node: str = ""
    object: str = ""
    record_id: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class Effect:
    """A side effect to deliver, with everything rendered. ``key`` is its idempotency key."""

    key: str
    action: str
    run_id: str
    object: str
    record_id: str
    channel: str = ""  # "" for effects applied to the store only (update_fields, move_stage)
    params: Mapping[str, Any] = field(default_factory=empty_map)

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            **dict(self.params),
            "channel": self.channel,
            "object": self.object,
            "id": self.record_id,
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class Problem:
    """Something an automation could not do (a refused move, a render error, a runaway chain)."""

    code: str
    message: str
    run_id: str = ""
    object: str = ""
    record_id: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class StageEntry:
    """A record entered a stage at ``at``, because of the input ``key`` (a change, an event, a
    timer, a care occurrence): one line of its stage history, kept because a record's writes
    alone do not say when triggers, rules and actions moved it."""

    object: str
    record_id: str
    pipeline: str
    stage: str
    at: datetime
    key: str


def entered(before: Record | None, after: Record | None) -> bool:
    """Whether going from ``before`` to ``after`` enters a stage: a live record that had none
    (new, undeleted, or stageless) now has one, or moved (``stage_moved``)."""
    if after is None or after.deleted or not after.stage:
        return False
    return before is None or before.deleted or not before.stage or stage_moved(before, after)


@dataclass(kw_only=True, slots=True)
class Step:
    """What handling one input decided: the shell applies all of it in one transaction."""

    records: dict[tuple[str, str], Record] = field(default_factory=dict)
    runs: dict[str, Run] = field(default_factory=dict)
    timers: list[Timer] = field(default_factory=list)
    cancelled_timers: list[str] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)
    allocations: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    changes: list[RecordChanged] = field(default_factory=list)  # derived changes, applied inline
    stage_entries: list[StageEntry] = field(default_factory=list)  # in the order they happened

    def runs_in_order(self) -> list[Run]:
        return sorted(self.runs.values(), key=lambda r: r.seq)


class StateView(Protocol):
    """What the engine may read. The simulator keeps it in memory; the daemon reads the store."""

    def record(self, object: str, id: str) -> Record | None: ...

    def active_runs(self, object: str, id: str) -> list[Run]: ...

    def run(self, run_id: str) -> Run | None: ...

    def timers_of(self, run_id: str) -> list[Timer]: ...

    def allocation(self, rule: str) -> Mapping[str, Any]: ...

    def open_owned(self, object: str, users: Sequence[str], final: Collection[tuple[str, str]]) -> Mapping[str, int]:
        """How many live records of ``object`` each of ``users`` owns outside the ``final``
        (pipeline, stage) pairs: what ``least_loaded`` balances."""
        ...


def copier(cls: type) -> Callable[..., Any]:
    """A fast ``dataclasses.replace`` for a frozen, slotted dataclass: ``copy(obj, **changes)``.

    Generated from the class's own field names; it skips ``replace``'s per-call checks, which
    cost more than the copy on the engine's hot path (runs, records and effects are copied for
    every input).
    """
    names = [f.name for f in fields(cls)]
    source = (
        "def copy(obj, /, *, " + ", ".join(f"{n}=_KEEP" for n in names) + "):\n"
        "    new = _new(cls)\n"
        + "".join(f"    _set_{n}(new, obj.{n} if {n} is _KEEP else {n})\n" for n in names)
        + "    return new\n"
    )
    namespace: dict[str, Any] = {"_new": object.__new__, "cls": cls, "_KEEP": object()}
    # each field's slot set through its own descriptor: a third less than object.__setattr__,
    # which looks the name up on the class first
    namespace.update((f"_set_{n}", cls.__dict__[n].__set__) for n in names)
    exec(source, namespace)  # generated from the class's own field names, nothing from outside
    return namespace["copy"]  # type: ignore[no-any-return]
