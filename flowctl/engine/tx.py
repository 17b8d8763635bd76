"""A unit of work over a ``StateView``: reads see what this step already wrote.

The engine handles one input inside one ``Tx``; everything it decides lands in ``tx.step`` and
nothing touches the state view, so handling is pure and the shell commits the step atomically.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from flowctl.engine.allocation import shift
from flowctl.engine.state import (
    ACTIVE,
    Effect,
    Problem,
    Record,
    Run,
    StateView,
    Step,
    Timer,
    TimerKind,
    TraceEntry,
    copier,
)
from flowctl.spec.model import EMPTY


class Tx:
    def __init__(self, state: StateView, now: datetime, key: str, config_version: str, now_iso: str = "") -> None:
        self.state = state
        self.now = now
        self.now_iso = now_iso or now.isoformat()
        self.now_ms = int(now.timestamp() * 1000)
        self.key = key
        self.config_version = config_version
        self.step = Step()
        self._runs_loaded: dict[tuple[str, str], list[Run]] = {}
        self._counter = 0
        self.depth = 0
        #: (scope, node) of the action being performed: create_record derives its record's id from it
        self.acting: tuple[str, str] = ("", "")

    # ------------------------------------------------------------------ ids

    def new_id(self, prefix: str) -> str:
        """Deterministic ids: the input's key and a counter, so a replay gives the same ids."""
        self._counter += 1
        return f"{self.key}/{prefix}{self._counter}"

    # ------------------------------------------------------------------ records

    def record(self, object: str, id: str) -> Record | None:
        rec = self.step.records.get((object, id))
        return rec if rec is not None else self.state.record(object, id)

    def put_record(self, record: Record) -> None:
        self.step.records[record.key] = record

    # ------------------------------------------------------------------ runs

    def active_runs(self, object: str, id: str) -> list[Run]:
        """The record's active runs as this step left them, in creation order."""
        key = (object, id)
        loaded = self._runs_loaded.get(key)
        if loaded is None:
            loaded = self._runs_loaded[key] = list(self.state.active_runs(object, id))
        candidates: Any = loaded
        if self.step.runs:
            merged = {r.id: r for r in loaded}
            for run in self.step.runs.values():
                if run.record_id == id and run.object == object:
                    merged[run.id] = run
            candidates = merged.values()
        out = [r for r in candidates if r.status in ACTIVE]
        if len(out) > 1:
            out.sort(key=_creation)
        return out

    def run(self, run_id: str) -> Run | None:
        return self.step.runs.get(run_id) or self.state.run(run_id)

    def put_run(self, run: Run) -> Run:
        if run.updated_at != self.now_iso:
            run = evolve(run, updated_at=self.now_iso)
        self.step.runs[run.id] = run
        return run

    def entry(
        self, node: str, kind: str, detail: str = "", values: Mapping[str, Any] | None = None, result: Any = None
    ) -> TraceEntry:
        """A trace line stamped with this step's time."""
        return _entry(self.now_iso, node, kind, detail, _owned(values), result)

    def trace(
        self,
        run: Run,
        node: str,
        kind: str,
        /,
        detail: str = "",
        values: Mapping[str, Any] | None = None,
        result: Any = None,
        **changes: Any,
    ) -> Run:
        """Append a trace line to ``run`` (and apply ``changes`` to it) and store it in the step."""
        entry = _entry(self.now_iso, node, kind, detail, _owned(values), result)
        run = evolve(run, trace=(*run.trace, entry), updated_at=self.now_iso, **changes)
        self.step.runs[run.id] = run
        return run

    # ------------------------------------------------------------------ timers, effects, problems

    def add_timer(self, timer: Timer) -> None:
        self.step.timers.append(timer)

    def wait(self, run: Run, node: str, due: datetime | None, kind: TimerKind, detail: str, /, **changes: Any) -> Run:
        """Park ``run`` (status ``waiting`` and ``changes``) with a timer at ``due`` named ``node``.

        Flow delays, event timeouts and delayed pipeline rules all wait this one way, so that a
        timer always carries its run's object and record and the wait is always traced. Without
        ``due`` (an event waited for without a timeout) the run waits with no timer. The timer's
        id is drawn after the run is stored and before the trace, as replays expect.
        """
        run = self.put_run(evolve(run, status="waiting", **changes))
        if due is not None:
            self.add_timer(
                Timer(
                    id=self.new_id("timer"),
                    run_id=run.id,
                    due=due,
                    kind=kind,
                    node=node,
                    object=run.object,
                    record_id=run.record_id,
                )
            )
        return self.trace(run, node, "wait", detail)

    def cancel_timers(self, run_id: str) -> None:
        for timer in self.state.timers_of(run_id):
            self.step.cancelled_timers.append(timer.id)
        self.step.timers = [t for t in self.step.timers if t.run_id != run_id]

    def add_effect(self, effect: Effect) -> None:
        self.step.effects.append(effect)

    def problem(self, code: str, message: str, run: Run | None = None, record: Record | None = None) -> None:
        self.step.problems.append(
            Problem(
                code=code,
                message=message,
                run_id=run.id if run else "",
                object=record.object if record else (run.object if run else ""),
                record_id=record.id if record else (run.record_id if run else ""),
            )
        )

    # ------------------------------------------------------------------ allocation state

    def allocation(self, rule: str) -> Mapping[str, Any]:
        return self.step.allocations.get(rule) or self.state.allocation(rule)

    def put_allocation(self, rule: str, value: Mapping[str, Any]) -> None:
        self.step.allocations[rule] = dict(value)

    def open_owned(self, object: str, users: Sequence[str], final: Collection[tuple[str, str]]) -> dict[str, int]:
        """The state's counts of open records owned, with this step's record writes applied."""
        counts = dict(self.state.open_owned(object, users, final))
        for key, record in self.step.records.items():
            if key[0] == object:
                shift(counts, self.state.record(*key), record, final)
        return counts


def _creation(run: Run) -> tuple[int, str]:
    return (run.seq, run.id)


#: ``evolve(run, status="done", ...)``: a copy of ``run`` with those fields changed. A run
#: changes several times per input (each trace line, each node); ``dataclasses.replace`` was
#: the largest single cost of handling an update.
evolve: Callable[..., Run] = copier(Run)


def _owned(values: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """A trace line's values: a plain dict is kept as given (callers pass one they built for
    it and never change), anything else is copied."""
    if not values:
        return EMPTY
    return values if type(values) is dict else dict(values)


def _entry(at: str, node: str, kind: str, detail: str, values: Mapping[str, Any], result: Any) -> TraceEntry:
    """``TraceEntry(...)`` without the keyword handling of a frozen dataclass' ``__init__``."""
    entry = object.__new__(TraceEntry)
    _set = object.__setattr__
    _set(entry, "at", at)
    _set(entry, "node", node)
    _set(entry, "kind", kind)
    _set(entry, "detail", detail)
    _set(entry, "values", values)
    _set(entry, "result", result)
    return entry
