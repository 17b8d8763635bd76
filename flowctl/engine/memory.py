"""State kept in memory: what ``flowctl test`` and ``dry-run`` drive the engine with.

It implements the engine's ``StateView`` and applies ``Step``s exactly as the store does, so a
scenario in CI exercises the same decisions the daemon makes.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flowctl.engine.allocation import count_open
from flowctl.engine.state import ACTIVE, Effect, Problem, Record, Run, Step, Timer


@dataclass
class MemoryState:
    records: dict[tuple[str, str], Record] = field(default_factory=dict)
    runs: dict[str, Run] = field(default_factory=dict)
    active: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    timers: dict[str, Timer] = field(default_factory=dict)
    timers_by_run: dict[str, set[str]] = field(default_factory=dict)
    allocations: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    effects: list[Effect] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    occurrences: set[tuple[str, str, str, str]] = field(default_factory=set)
    _heap: list[tuple[Any, str]] = field(default_factory=list)

    # ---------------------------------------------------------------- StateView

    def record(self, object: str, id: str) -> Record | None:
        return self.records.get((object, id))

    def active_runs(self, object: str, id: str) -> list[Run]:
        return [self.runs[r] for r in self.active.get((object, id), ())]

    def run(self, run_id: str) -> Run | None:
        return self.runs.get(run_id)

    def timers_of(self, run_id: str) -> list[Timer]:
        return [self.timers[t] for t in self.timers_by_run.get(run_id, ()) if t in self.timers]

    def allocation(self, rule: str) -> Mapping[str, Any]:
        return self.allocations.get(rule, {})

    def open_owned(self, object: str, users: Sequence[str], final: Collection[tuple[str, str]]) -> Mapping[str, int]:
        return count_open(self.records.values(), object, users, final)

    # ---------------------------------------------------------------- applying

    def apply(self, step: Step) -> None:
        for key, record in step.records.items():
            self.records[key] = record
        for run in step.runs.values():
            self.runs[run.id] = run
            key = (run.object, run.record_id)
            if run.status in ACTIVE:
                self.active.setdefault(key, set()).add(run.id)
            elif (ids := self.active.get(key)) is not None:
                ids.discard(run.id)
        for timer_id in step.cancelled_timers:
            timer = self.timers.pop(timer_id, None)
            if timer is not None:
                self.timers_by_run.get(timer.run_id, set()).discard(timer_id)
        for timer in step.timers:
            self.timers[timer.id] = timer
            self.timers_by_run.setdefault(timer.run_id, set()).add(timer.id)
            heapq.heappush(self._heap, (timer.due, timer.id))
        self.allocations.update(step.allocations)
        self.effects.extend(step.effects)
        self.problems.extend(step.problems)

    def next_timer(self) -> Timer | None:
        """The earliest pending timer (cancelled ones are dropped lazily)."""
        while self._heap:
            _, timer_id = self._heap[0]
            timer = self.timers.get(timer_id)
            if timer is not None:
                return timer
            heapq.heappop(self._heap)
        return None

    def pop_timer(self, timer_id: str) -> Timer | None:
        timer = self.timers.pop(timer_id, None)
        if timer is not None:
            self.timers_by_run.get(timer.run_id, set()).discard(timer_id)
        return timer
