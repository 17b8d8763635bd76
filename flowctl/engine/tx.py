"""A unit of work over a ``StateView``: reads see what this step already wrote.

The engine handles one input inside one ``Tx``; everything it decides lands in ``tx.step`` and
nothing touches the state view, so handling is pure and the shell commits the step atomically.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from flowctl.engine.state import Effect, Problem, Record, Run, StateView, Step, Timer, TraceEntry


class Tx:
    def __init__(self, state: StateView, now: datetime, key: str, config_version: str) -> None:
        self.state = state
        self.now = now
        self.now_iso = now.isoformat()
        self.key = key
        self.config_version = config_version
        self.step = Step()
        self._runs_loaded: dict[tuple[str, str], list[Run]] = {}
        self._counter = 0
        self.depth = 0

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
        key = (object, id)
        if key not in self._runs_loaded:
            self._runs_loaded[key] = list(self.state.active_runs(object, id))
        by_id = {r.id: r for r in self._runs_loaded[key]}
        for run in self.step.runs.values():
            if run.object == object and run.record_id == id:
                by_id[run.id] = run
        return sorted((r for r in by_id.values() if r.active), key=lambda r: (r.seq, r.id))

    def run(self, run_id: str) -> Run | None:
        return self.step.runs.get(run_id) or self.state.run(run_id)

    def put_run(self, run: Run) -> Run:
        run = _replace(run, updated_at=self.now_iso)
        self.step.runs[run.id] = run
        return run

    def trace(self, run: Run, node: str, kind: str, detail: str = "", values: Mapping[str, Any] | None = None,
              result: Any = None) -> Run:  # fmt: skip
        entry = TraceEntry(at=self.now_iso, node=node, kind=kind, detail=detail,
                           values=dict(values or {}), result=result)  # fmt: skip
        return self.put_run(_replace(run, trace=(*run.trace, entry)))

    # ------------------------------------------------------------------ timers, effects, problems

    def add_timer(self, timer: Timer) -> None:
        self.step.timers.append(timer)

    def cancel_timers(self, run_id: str) -> None:
        for timer in self.state.timers_of(run_id):
            self.step.cancelled_timers.append(timer.id)
        self.step.timers = [t for t in self.step.timers if t.run_id != run_id]

    def add_effect(self, effect: Effect) -> None:
        self.step.effects.append(effect)

    def problem(self, code: str, message: str, run: Run | None = None, record: Record | None = None) -> None:
        self.step.problems.append(Problem(
            code=code, message=message, run_id=run.id if run else "",
            object=record.object if record else (run.object if run else ""),
            record_id=record.id if record else (run.record_id if run else ""),
        ))  # fmt: skip

    # ------------------------------------------------------------------ allocation state

    def allocation(self, rule: str) -> Mapping[str, Any]:
        return self.step.allocations.get(rule) or self.state.allocation(rule)

    def put_allocation(self, rule: str, value: Mapping[str, Any]) -> None:
        self.step.allocations[rule] = dict(value)


def _replace(run: Run, **changes: Any) -> Run:
    from dataclasses import replace

    return replace(run, **changes)
