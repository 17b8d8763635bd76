"""Drive the engine in memory with a fake clock: the heart of ``flowctl test`` and ``dry-run``.

``advance`` fires, in time order, every timer and care occurrence that comes due on the way,
exactly as the daemon would over the same span of real time. ``use`` loads a new config version
as the daemon's reload does; as there, a care process's local day runs on the version of its
first occurrence that day (an edit after today's run takes effect tomorrow).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flowctl.engine import changes
from flowctl.engine.care import Firing, firings
from flowctl.engine.core import Engine
from flowctl.engine.memory import MemoryState
from flowctl.engine.state import CareDue, Effect, EventReceived, Input, Problem, Record, Run, Step, TimerFired
from flowctl.spec import model as m


class SimulationError(Exception):
    """A request the daemon would refuse: a move into a stage with empty required fields or of a
    missing record, a delete of a missing record (``scenario`` also checks fields and stages
    as the API does before it writes)."""


@dataclass
class Outcome:
    """What one simulated request or span of time produced."""

    effects: list[Effect]
    problems: list[Problem]
    runs: list[Run]


class Simulator:
    def __init__(self, bundle: m.Bundle, now: datetime, version: str = "sim") -> None:
        self.engine = Engine(bundle, version)
        self.bundle = bundle
        self.engines: dict[str, Engine] = {version: self.engine}  # every version loaded, as the daemon's
        self.care_days: dict[tuple[str, str], str] = {}  # (process, local day) -> version, as ``care_days``
        self.state = MemoryState()
        self.now = now
        self._keys = 0
        self.touched_runs: list[str] = []

    def _key(self, prefix: str) -> str:
        self._keys += 1
        return f"{prefix}{self._keys}"

    def use(self, bundle: m.Bundle, version: str) -> None:
        """Run on a new config version from now on, as ``flowctl run`` does after a reload."""
        self.engine = self.engines[version] = Engine(bundle, version)
        self.bundle = bundle

    def _handle(self, event: Input, engine: Engine | None = None) -> Step:
        step = (engine or self.engine).handle(self.state, event, self.now)
        self.state.apply(step)
        self.touched_runs.extend(step.runs)  # a log, with repeats: callers slice and dedupe
        return step

    def runs_touched(self, since: int = 0) -> list[Run]:
        """Runs handled since position ``since`` of the log, each once, in first-touch order."""
        ids = dict.fromkeys(self.touched_runs[since:])
        return [self.state.runs[r] for r in ids if r in self.state.runs]

    # ---------------------------------------------------------------- requests

    def seed(self, record: Record) -> None:
        """Put a record in place without triggering anything (a scenario's starting state)."""
        pipeline = self.engine.pipelines.pipeline_of(record)
        if pipeline is not None and pipeline.stages:
            record = Record(
                object=record.object,
                id=record.id,
                fields=record.fields,
                stage=record.stage or pipeline.stages[0].id,
                pipeline=pipeline.name,
                owner=record.owner,
                version=1,
            )
        self.state.records[record.key] = record

    def write(
        self,
        change_kind: str,
        object: str,
        id: str,
        fields: Mapping[str, Any] | None = None,
        stage: str = "",
        pipeline: str = "",
    ) -> Step:
        current = self.state.record(object, id)
        key = self._key("c")
        if change_kind == "create":
            change = changes.put(key, current, object, id, fields or {}, stage, pipeline)
        elif change_kind == "update":
            change = changes.patch(key, current, object, id, fields or {})
        elif change_kind == "delete":
            if current is None:
                raise SimulationError(f"{object} {id} does not exist")
            change = changes.delete(key, current)
        elif change_kind == "restore":
            if current is None or not current.deleted:
                raise SimulationError(f"{object} {id} is not in the recycle bin: only a deleted record is restored")
            change = changes.restore(key, current)
        else:  # move
            if current is None:
                raise SimulationError(f"{object} {id} does not exist")
            refusal = self.engine.pipelines.refuse_move(current, stage, pipeline)
            if refusal:
                raise SimulationError(refusal)
            change = changes.move(key, current, stage, pipeline)
        assert change.after is not None
        self.state.records[change.after.key] = change.after
        return self._handle(change)

    def event(self, event: str, object: str, id: str, data: Mapping[str, Any] | None = None) -> Step:
        return self._handle(EventReceived(key=self._key("e"), event=event, object=object, id=id, data=dict(data or {})))

    # ---------------------------------------------------------------- time

    def advance(self, until: datetime) -> list[Step]:
        """Move the clock to ``until``, firing what comes due on the way, in order."""
        steps = []
        care = self._care_firings(self.now, until)
        care_index = 0
        while True:
            timer = self.state.next_timer()
            firing = care[care_index] if care_index < len(care) else None
            timer_due = timer.due if timer is not None and timer.due <= until else None
            if timer_due is None and firing is None:
                break
            if firing is not None and (timer_due is None or firing.at < timer_due):
                care_index += 1
                claim = (firing.process, firing.object, firing.record_id, firing.occurrence)
                if claim in self.state.occurrences:
                    continue
                self.state.occurrences.add(claim)
                self.now = max(self.now, firing.at)
                day = (firing.process, firing.at.astimezone(self.engine.tz).date().isoformat())
                pinned = self.engines[self.care_days.setdefault(day, self.engine.version)]
                steps.append(
                    self._handle(
                        CareDue(
                            key=self._key("o"),
                            process=firing.process,
                            object=firing.object,
                            id=firing.record_id,
                            occurrence=firing.occurrence,
                        ),
                        pinned,
                    )
                )
                continue
            assert timer is not None and timer_due is not None
            self.state.pop_timer(timer.id)
            self.now = max(self.now, timer_due)
            steps.append(self._handle(TimerFired(key=self._key("t"), timer=timer)))
        self.now = max(self.now, until)
        return steps

    def advance_by(self, delta: timedelta) -> list[Step]:
        return self.advance(self.now + delta)

    def _care_firings(self, start: datetime, end: datetime) -> list[Firing]:
        found: list[tuple[datetime, int, str, Firing]] = []
        processes = [p for p in self.bundle.care.values() if p.enabled]
        if not processes:
            return []
        for record in list(self.state.records.values()):
            if record.deleted:
                continue
            for process in processes:
                if process.object != record.object:
                    continue
                for firing in firings(process, record, start, end, self.engine.tz):
                    found.append((firing.at, process.priority, process.name, firing))
        found.sort(key=lambda item: (item[0], item[1], item[2], item[3].record_id))
        return [item[3] for item in found]
