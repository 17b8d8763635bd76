"""Replay: run the changes recorded in a period through a configuration and compare the effects
with what really went out (the outbox rows created in that period).

The engine is deterministic, so the only inputs are the starting state and the changes with
their recorded times. The starting state is rebuilt from the change log before ``since``: every
put/patch/move/delete processed before it, applied as the worker applies them. Field updates and
stage moves made by automations before ``since``, and runs or timers in flight at ``since``, are
not in the log; differences they cause show up with the deployed version too, so when that can
be rebuilt the same replay runs on it and such differences are marked ``baseline`` (they are not
caused by the proposed change).

Effects are compared per record as (action, channel, rendered payload) multisets: an effect
only one side has is added or removed; an added and a removed effect of the same action and
template on the same record pair up as changed, with the fields that differ.

Times in payloads are compared at the precision the configuration can give them. A time counted
from the moment an effect is produced (``due: 1d``, a delay) depends on when the daemon handled
the change or timer, which is a little (or, after an outage, a lot) later than the recorded time
the replay uses; the live row's ``created_at`` bounds that delay. So two times that differ by no
more than the time between the replay's moment and the live row's creation are the same time; a
configuration change (``1d`` to ``2d``) still shows, as do times written as dates.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flowctl.engine import changes as change_ops
from flowctl.engine.core import Engine
from flowctl.engine.simulator import SimulationError, Simulator
from flowctl.engine.state import Input, Record, Step
from flowctl.gitops.diff import FieldChange, diff_values
from flowctl.ports import Store, StoredChange
from flowctl.spec import model as m

PAGE = 1000


@dataclass(frozen=True, slots=True)
class Sig:
    """An effect as compared: who, what, and the rendered payload as canonical JSON; ``at`` (when
    it was produced, not compared) bounds how far a time counted from "now" may have moved."""

    object: str
    record_id: str
    action: str
    channel: str
    payload: str
    at: datetime | None = field(default=None, compare=False)

    @property
    def params(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.payload)
        return loaded

    @property
    def template(self) -> str:
        return str(self.params.get("template", ""))

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, "channel": self.channel, **self.params}


def changed_fields(real: Sig, replayed: Sig) -> list[FieldChange]:
    """The payload fields that differ, leaving out times that differ only by the handling delay."""
    lag = abs(real.at - replayed.at) if real.at is not None and replayed.at is not None else timedelta(0)
    return [
        c
        for c in diff_values(real.params, replayed.params)
        if not (c.op == "changed" and same_moment(c.old, c.new, lag))
    ]


def same_moment(a: Any, b: Any, lag: timedelta) -> bool:
    """Both are ISO times with an offset, no more than ``lag`` apart."""
    first, second = as_time(a), as_time(b)
    return first is not None and second is not None and abs(first - second) <= lag


def as_time(value: Any) -> datetime | None:
    """``value`` as an aware datetime when it is an ISO date-time string with an offset."""
    if not isinstance(value, str) or "T" not in value or len(value) > 40:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


@dataclass(kw_only=True, slots=True)
class RecordDiff:
    object: str
    record_id: str
    added: list[Sig] = field(default_factory=list)
    removed: list[Sig] = field(default_factory=list)
    changed: list[tuple[Sig, Sig]] = field(default_factory=list)
    baseline: bool = False  # the deployed version's replay differs from reality the same way

    def to_json(self) -> dict[str, Any]:
        return {
            "object": self.object,
            "id": self.record_id,
            "baseline": self.baseline,
            "added": [s.to_json() for s in self.added],
            "removed": [s.to_json() for s in self.removed],
            "changed": [
                {
                    "action": a.action,
                    "channel": a.channel,
                    **({"template": a.template} if a.template else {}),
                    "fields": [c.to_json() for c in changed_fields(a, b)],
                }
                for a, b in self.changed
            ],
        }


@dataclass(kw_only=True, slots=True)
class Replay:
    since: datetime
    until: datetime
    seeded: int  # records rebuilt from the log before since
    changes: int  # changes replayed
    refused: int  # changes the proposed version refused (moves into a stage with empty fields…)
    real: int  # outbox rows in the period
    replayed: int  # effects the replay produced
    records: list[RecordDiff] = field(default_factory=list)
    baseline: str = ""  # "" when the deployed version was replayed too, else why not
    seed: str = "change log before --since (automations' own field updates and in-flight runs not included)"

    @property
    def differences(self) -> list[RecordDiff]:
        return [r for r in self.records if not r.baseline]

    def to_json(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "seed": self.seed,
            "seeded_records": self.seeded,
            "changes": self.changes,
            "refused": self.refused,
            "real_effects": self.real,
            "replayed_effects": self.replayed,
            "baseline": self.baseline or "deployed",
            "records": [r.to_json() for r in self.records],
        }


def recorded(store: Store) -> Iterator[StoredChange]:
    """Every change in the log, in seq order, a page at a time."""
    after = 0
    while True:
        page = store.changes_after(after, PAGE)
        yield from page
        if len(page) < PAGE:
            return
        after = page[-1].seq


def _split(store: Store, since: datetime, until: datetime) -> tuple[dict[tuple[str, str], Record], list[StoredChange]]:
    """The records as the log leaves them before ``since``, and the processed changes of the period."""
    state: dict[tuple[str, str], Record] = {}
    period: list[StoredChange] = []
    for change in recorded(store):
        if change.status not in ("done", "failed"):
            continue  # not processed yet: it produced nothing real to compare with
        at = change.received_at
        if at is not None and at >= until:
            break
        if at is not None and at >= since:
            period.append(change)
            continue
        if change.status == "failed" or change.op == "event":
            continue
        current = state.get((change.object, change.record_id))
        if change.op == "put":
            rc = change_ops.put(
                "seed", current, change.object, change.record_id, change.fields, change.stage, change.pipeline
            )
        elif change.op == "patch":
            rc = change_ops.patch("seed", current, change.object, change.record_id, change.fields)
        elif current is None:
            continue
        elif change.op == "move":
            rc = change_ops.move("seed", current, change.stage, change.pipeline)
        elif change.op == "restore":
            if not current.deleted:
                continue
            rc = change_ops.restore("seed", current)
        else:
            rc = change_ops.delete("seed", current)
        if rc.after is not None:
            state[rc.after.key] = rc.after
    return state, period


class _Timed(Simulator):
    """The simulator, noting when each effect was produced (``Sig.at``)."""

    def __init__(self, bundle: m.Bundle, now: datetime, version: str) -> None:
        super().__init__(bundle, now, version)
        self.effect_times: list[datetime] = []

    def _handle(self, event: Input, engine: Engine | None = None) -> Step:
        step = super()._handle(event, engine)
        self.effect_times.extend(self.now for _ in step.effects)
        return step


def run_period(
    bundle: m.Bundle,
    seed: dict[tuple[str, str], Record],
    period: list[StoredChange],
    since: datetime,
    until: datetime,
    tick: Callable[[], None] | None = None,
) -> tuple[list[Sig], int]:
    """The channel effects ``bundle`` produces for the period, and how many changes it refused;
    ``tick`` is called after each change (the CLI's progress on a terminal)."""
    sim = _Timed(bundle, since, version="replay")
    sim.state.records.update(seed)
    refused = 0
    for change in period:
        at = change.received_at or sim.now
        sim.advance(max(at, sim.now))
        try:
            if change.op == "event":
                sim.event(change.event, change.object, change.record_id, change.data)
            else:
                kind = {"put": "create", "patch": "update"}.get(change.op, change.op)
                sim.write(kind, change.object, change.record_id, change.fields, change.stage, change.pipeline)
        except SimulationError:
            refused += 1
        if tick is not None:
            tick()
    sim.advance(until)
    sigs = [
        Sig(e.object, e.record_id, e.action, e.channel, _canonical(e.params), at)
        for e, at in zip(sim.state.effects, sim.effect_times, strict=True)
        if e.channel
    ]
    return sigs, refused


def replay(
    store: Store,
    proposed: m.Bundle,
    since: datetime,
    until: datetime,
    deployed: m.Bundle | None = None,
    why_no_baseline: str = "",
    tick: Callable[[], None] | None = None,
) -> Replay:
    """``tick`` is called after each change replayed, through ``proposed`` then ``deployed``."""
    seed, period = _split(store, since, until)
    mine, refused = run_period(proposed, seed, period, since, until, tick)
    real = [
        Sig(r.object, r.record_id, r.action, r.channel, _canonical(r.payload), r.created_at)
        for r in store.outbox_between(since, until)
    ]
    result = Replay(
        since=since,
        until=until,
        seeded=len(seed),
        changes=len(period),
        refused=refused,
        real=len(real),
        replayed=len(mine),
        baseline=why_no_baseline,
    )
    result.records = compare(real, mine)
    if deployed is not None:
        base, _ = run_period(deployed, seed, period, since, until, tick)
        noise = {(d.object, d.record_id): d for d in compare(real, base)}
        for diff in result.records:
            other = noise.get((diff.object, diff.record_id))
            diff.baseline = other is not None and _same(diff, other)
    elif not why_no_baseline:
        result.baseline = "no deployed version to compare with"
    return result


def compare(real: list[Sig], replayed: list[Sig]) -> list[RecordDiff]:
    """Per record, what the replay adds, removes or changes relative to ``real``."""
    extra: dict[tuple[str, str], list[Sig]] = {}
    missing: dict[tuple[str, str], list[Sig]] = {}
    before, after = Counter(real), Counter(replayed)
    for sig in _each(replayed, after - before):
        extra.setdefault((sig.object, sig.record_id), []).append(sig)
    for sig in _each(real, before - after):
        missing.setdefault((sig.object, sig.record_id), []).append(sig)
    out = []
    for key in sorted(set(extra) | set(missing)):
        theirs = missing.get(key, [])
        mine = []
        for sig in extra.get(key, []):  # the same effect but for a time the handling delay moved
            twin = next(
                (
                    t
                    for t in theirs
                    if (t.action, t.channel) == (sig.action, sig.channel) and not changed_fields(t, sig)
                ),
                None,
            )
            if twin is not None:
                theirs.remove(twin)
            else:
                mine.append(sig)
        if not mine and not theirs:
            continue
        diff = RecordDiff(object=key[0], record_id=key[1])
        for sig in mine:
            twin = next(
                (t for t in theirs if (t.action, t.channel, t.template) == (sig.action, sig.channel, sig.template)),
                None,
            )
            if twin is not None:
                theirs.remove(twin)
                diff.changed.append((twin, sig))
            else:
                diff.added.append(sig)
        diff.removed = theirs
        out.append(diff)
    return out


def _each(sigs: list[Sig], wanted: Counter[Sig]) -> list[Sig]:
    """The members of ``sigs`` that ``wanted`` counts, as many times as it counts them, keeping each
    one's own ``at`` (``Counter.elements`` would give one instance for all equal ones)."""
    left = Counter(wanted)
    out = []
    for sig in sigs:
        if left[sig] > 0:
            left[sig] -= 1
            out.append(sig)
    return out


def _same(a: RecordDiff, b: RecordDiff) -> bool:
    return (
        Counter(a.added) == Counter(b.added)
        and Counter(a.removed) == Counter(b.removed)
        and Counter(a.changed) == Counter(b.changed)
    )


def _canonical(payload: Any) -> str:
    return json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
