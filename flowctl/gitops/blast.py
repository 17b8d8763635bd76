"""Blast radius: what care processes that change would do over the next day and week.

For every changed, added or removed care process, the records of its object are read once (one
pass per object type, every process of that object evaluated on the way): each firing in the
window whose ``if:`` holds counts its record and one effect per action, by action and channel.
The same is counted for the deployed version, so the plan can say "sends 1,243 SMS tomorrow
(+1,100)".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flowctl.engine.actions import STORE_ONLY
from flowctl.engine.care import firings
from flowctl.engine.core import Engine
from flowctl.gitops.impact import records_of
from flowctl.ports import Store
from flowctl.spec import model as m

WINDOWS = {"day": timedelta(days=1), "week": timedelta(days=7)}


@dataclass(kw_only=True, slots=True)
class Tally:
    records: int = 0
    effects: dict[str, int] = field(default_factory=dict)  # "send_sms via sms" -> n
    errors: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"records": self.records, "effects": dict(sorted(self.effects.items())), "errors": self.errors}


@dataclass(kw_only=True, slots=True)
class Reach:
    process: str
    object: str
    status: str  # added | changed | removed
    new: dict[str, Tally] = field(default_factory=lambda: {w: Tally() for w in WINDOWS})
    old: dict[str, Tally] = field(default_factory=lambda: {w: Tally() for w in WINDOWS})

    def to_json(self) -> dict[str, Any]:
        return {
            "process": self.process,
            "object": self.object,
            "status": self.status,
            "new": {w: t.to_json() for w, t in self.new.items()},
            "old": {w: t.to_json() for w, t in self.old.items()},
        }


def blast_radius(
    store: Store, old: m.Bundle | None, new: m.Bundle, names: list[tuple[str, str]], now: datetime
) -> list[Reach]:
    """``names``: (process, status) of the care processes that change."""
    if not names:
        return []
    new_engine = Engine(new, "plan")
    old_engine = Engine(old, "deployed") if old is not None else None
    reaches: dict[str, Reach] = {}
    by_object: dict[str, list[tuple[Reach, m.CareProcess | None, m.CareProcess | None]]] = {}
    for name, status in names:
        before = old.care.get(name) if old is not None else None
        after = new.care.get(name)
        process = after or before
        if process is None:
            continue
        reach = Reach(process=name, object=process.object, status=status)
        reaches[name] = reach
        by_object.setdefault(process.object, []).append((reach, before, after))
    end = now + max(WINDOWS.values())
    for object_, entries in by_object.items():
        for record in records_of(store, object_):
            for reach, before, after in entries:
                if after is not None and after.enabled:
                    _count(new_engine, after, record, now, end, reach.new)
                if before is not None and before.enabled and old_engine is not None:
                    _count(old_engine, before, record, now, end, reach.old)
    return [reaches[name] for name, _ in names if name in reaches]


def _count(
    engine: Engine, process: m.CareProcess, record: Any, now: datetime, end: datetime, tallies: dict[str, Tally]
) -> None:
    counted: set[str] = set()
    for firing in firings(process, record, now, end, engine.tz):
        try:
            ok, _ = engine.condition(process.if_, engine.context(record, now=firing.at))
        except Exception:  # noqa: BLE001 - a condition that fails at run time fails that run only
            ok = False
            for window, span in WINDOWS.items():
                if firing.at <= now + span:
                    tallies[window].errors += 1
        if not ok:
            continue
        for window, span in WINDOWS.items():
            if firing.at > now + span:
                continue
            tally = tallies[window]
            if window not in counted:
                counted.add(window)
                tally.records += 1
            for action in process.actions:
                label = action.type if action.type in STORE_ONLY else f"{action.type} via {_channel(engine, action)}"
                tally.effects[label] = tally.effects.get(label, 0) + 1


def _channel(engine: Engine, action: m.Action) -> str:
    template = engine.bundle.templates.get(action.template) if action.template else None
    return engine.actions.channel_for(action, template)
