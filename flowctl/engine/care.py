"""Care processes: when each (process, record) comes due, and what one occurrence does.

Pure date arithmetic in the configured zone. An occurrence is named by a stable key (the
anniversary's date for ``anniversary_of``, the date for ``date``, the local fire time for
``cron``), so the store can claim "(process, record, occurrence)" exactly once, ever.
Time policies are explicit: ``feb29`` (feb28 | mar1 in non-leap years), ``dst_gap`` (shift |
skip a wall time that does not exist), ``dst_overlap`` (once | twice for a wall time that
happens twice). A cron follows them as ``flowctl.spec.cron`` says (an interval cron fires by the
clock); ``cron_times`` is the one place a cron process's instants come from, for ``forecast``,
``flowctl test`` and the daemon alike.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from flowctl.engine.business import held_until, hold_detail
from flowctl.engine.state import CareDue, Record, Run, Step, Timer
from flowctl.engine.tx import Tx
from flowctl.spec import model as m
from flowctl.spec.cron import CronSpec, parse_cron
from flowctl.spec.templating import TemplateError

if TYPE_CHECKING:
    from flowctl.engine.core import Engine


@dataclass(frozen=True, slots=True, order=True)
class Firing:
    at: datetime
    occurrence: str
    process: str
    object: str
    record_id: str


def parse_date(value: Any) -> date | None:
    """A date from a record field: a ``date``, or text such as ``1990-02-28`` or ``28/02/1990``."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        pass
    for sep in ("/", "-", "."):
        parts = text.split(sep)
        if len(parts) == 3 and all(p.isdigit() for p in parts) and len(parts[2]) == 4:
            try:
                return date(int(parts[2]), int(parts[1]), int(parts[0]))
            except ValueError:
                return None
    return None


def anniversary_in(born: date, year: int, feb29: str) -> date:
    if born.month == 2 and born.day == 29 and not calendar.isleap(year):
        return date(year, 2, 28) if feb29 == "feb28" else date(year, 3, 1)
    return date(year, born.month, born.day)


def local_times(day: date, at: time, tz: tzinfo, *, dst_gap: str, dst_overlap: str) -> list[datetime]:
    """The instants a local wall time names on ``day``: none, one or two (DST)."""
    first = datetime.combine(day, at, tzinfo=tz)
    second = first.replace(fold=1)
    if first.utcoffset() != second.utcoffset():
        # The wall time happens twice (autumn) or never (spring). Round-tripping tells which.
        roundtrip = first.astimezone(ZoneInfo("UTC")).astimezone(tz)
        exists = roundtrip.replace(tzinfo=None) == first.replace(tzinfo=None)
        if exists:
            return [first, second] if dst_overlap == "twice" else [first]
        if dst_gap == "skip":
            return []
        # shift: the same absolute instant as the wall time with the offset before the gap
        shifted = first.astimezone(ZoneInfo("UTC")).astimezone(tz)
        return [shifted]
    return [first]


@lru_cache(maxsize=256)
def cron_of(text: str) -> CronSpec:
    """The parsed cron of a process (validated by ``flowctl validate``: E061)."""
    return parse_cron(text)


def cron_times(process: m.CareProcess, start: datetime, end: datetime, tz: tzinfo) -> list[datetime]:
    """Every instant a cron process fires at in ``start < at <= end``, in ``tz``, under its
    ``dst_gap`` and ``dst_overlap``: the occurrence key of each is its ``isoformat()``."""
    cron = cron_of(process.when.cron)
    return list(cron.fires_between(start.astimezone(tz), end, dst_gap=process.dst_gap, dst_overlap=process.dst_overlap))


def parse_at(text: str) -> time:
    hours, _, minutes = (text or "09:00").partition(":")
    return time(int(hours), int(minutes or 0))


def firings(process: m.CareProcess, record: Record, start: datetime, end: datetime, tz: tzinfo) -> Iterator[Firing]:
    """Every firing of ``process`` for ``record`` with ``start < at <= end``."""
    when = process.when
    offset = when.offset.value if when.offset else timedelta(0)
    if when.cron:
        for moment in cron_times(process, start, end, tz):
            yield Firing(moment, moment.isoformat(), process.name, record.object, record.id)
        return
    field = when.anniversary_of or when.date
    base = parse_date(record.fields.get(field))
    if base is None:
        return
    at = parse_at(when.at)
    first_year, last_year = (start + offset * -1).year - 1, (end - offset).year + 1
    days: list[date] = []
    if when.anniversary_of:
        days = [anniversary_in(base, y, process.feb29) for y in range(max(first_year, base.year), last_year + 1)]
    else:
        days = [base]
    for day in days:
        # the offset moves the wall time (-1d12h from 08:00 is 20:00 two days before), then the zone decides
        wall = datetime.combine(day, at) + offset
        instants = local_times(wall.date(), wall.time(), tz, dst_gap=process.dst_gap, dst_overlap=process.dst_overlap)
        for n, instant in enumerate(instants):
            if start < instant <= end:
                key = day.isoformat() + (f"#{n + 1}" if n else "")
                yield Firing(instant, key, process.name, record.object, record.id)


def run_care(engine: Engine, tx: Tx, due: CareDue) -> None:
    """Perform one occurrence: check ``if:``, then every action in order, as one run."""
    process = engine.bundle.care.get(due.process)
    record = tx.record(due.object, due.id)
    if process is None or record is None or record.deleted:
        return
    run = Run(
        id=run_id(due),
        automation=f"care:{process.name}",
        object=due.object,
        record_id=due.id,
        status="running",
        node="actions",
        started_at=tx.now_iso,
        config_version=tx.config_version,
        seq=int(tx.now.timestamp() * 1000),
    )
    run = tx.put_run(run)
    if not process.enabled:
        finish(tx, run, "done", "process disabled")
        return
    ctx: Mapping[str, Any] = {**engine.context(record, now=tx.now, tx=tx), "occurrence": due.occurrence}
    try:
        ok, seen = engine.condition(process.if_, ctx)
    except TemplateError as exc:
        tx.problem("condition_failed", f"care process {process.name}: {exc}", run=run)
        finish(tx, run, "failed", str(exc))
        return
    run = tx.trace(run, "if", "condition", process.if_ or "all records", values=seen, result=ok)
    if not ok:
        finish(tx, run, "done", "condition false: skipped")
        return
    perform_from(engine, tx, run, process, record, ctx, 0)


def perform_from(
    engine: Engine, tx: Tx, run: Run, process: m.CareProcess, record: Record, ctx: Mapping[str, Any], first: int
) -> None:
    """Perform the process's actions from index ``first`` on; an action with ``only_during:``
    outside working time parks the run on a ``hold`` timer, and ``resume_care`` goes on from it."""
    for i, action in enumerate(process.actions[first:], start=first):
        held = held_until(engine.bundle, action, tx.now)
        if held is not None:
            kept = {"occurrence": ctx["occurrence"]}  # resume_care reads it back
            run = tx.trace(tx.run(run.id) or run, run.node, "decision", "hold", values=kept)
            tx.wait(run, f"action {i + 1}", held, "hold", hold_detail(action, held), node=f"action {i + 1}")
            return
        current = tx.record(run.object, run.record_id) or record
        run, success = engine.perform(tx, tx.run(run.id) or run, action, f"action {i + 1}", current, ctx)
        if not success:
            finish(tx, run, "failed", f"action {i + 1} ({action.type}) failed")
            return
    finish(tx, run, "done", "all actions done")


def resume_care(engine: Engine, tx: Tx, run: Run, timer: Timer) -> None:
    """A held action's working minute has come: go on from it with the occurrence's context."""
    process = engine.bundle.care.get(run.name)
    record = tx.record(run.object, run.record_id)
    index = int(timer.node.removeprefix("action ")) - 1
    if process is None or record is None or record.deleted or not 0 <= index < len(process.actions):
        finish(tx, run, "cancelled", "the process, the record or the action is gone")
        return
    kept = (e.values["occurrence"] for e in reversed(run.trace) if e.detail == "hold" and "occurrence" in e.values)
    occurrence = next(kept, "")  # perform_from traced it when it held the action
    run = tx.trace(run, timer.node, "timer", f"held action due {timer.due.isoformat()}", status="running")
    ctx: Mapping[str, Any] = {**engine.context(record, now=tx.now), "occurrence": occurrence}
    perform_from(engine, tx, run, process, record, ctx, index)


def finish(tx: Tx, run: Run, status: str, why: str) -> None:
    tx.trace(tx.run(run.id) or run, run.node, "end", why, status=status)


# ------------------------------------------------------------------ what a scheduler needs


def candidate_days(process: m.CareProcess, start: datetime, end: datetime, tz: tzinfo) -> list[date]:
    """The anniversary (or ``date``) days whose firing could fall in ``start < at <= end``: a
    superset (a day either side for the offset's time part and DST), which ``firings`` narrows."""
    when = process.when
    offset = when.offset.value if when.offset else timedelta(0)
    first = (datetime.combine(start.astimezone(tz).date(), time()) - offset).date() - timedelta(days=2)
    last = (datetime.combine(end.astimezone(tz).date(), time()) - offset).date() + timedelta(days=2)
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def due_days(process: m.CareProcess, start: datetime, end: datetime, tz: tzinfo, *, dst_gap: str = "") -> list[date]:
    """The anniversary (or ``date``) days that fire in ``start < at <= end``, exactly.

    When a day fires does not depend on the record, so a tick reads only the records of these
    days (``candidate_days`` is wider by two days each side, five times the rows at a million
    contacts). ``dst_gap`` overrides the process's policy: with ``shift`` it also names the days
    that ``skip`` drops, so they can be counted."""
    when = process.when
    offset = when.offset.value if when.offset else timedelta(0)
    at = parse_at(when.at)
    out = []
    for day in candidate_days(process, start, end, tz):
        wall = datetime.combine(day, at) + offset
        instants = local_times(
            wall.date(), wall.time(), tz, dst_gap=dst_gap or process.dst_gap, dst_overlap=process.dst_overlap
        )
        if any(start < instant <= end for instant in instants):
            out.append(day)
    return out


def day_instants(
    process: m.CareProcess, days: list[date], start: datetime, end: datetime, tz: tzinfo
) -> dict[date, list[tuple[datetime, str]]]:
    """Per anniversary (or ``date``) day: the instants in ``start < at <= end`` and their occurrence
    keys. The same for every record due that day, so a tick computes them once (``firings_on``)."""
    when = process.when
    offset = when.offset.value if when.offset else timedelta(0)
    at = parse_at(when.at)
    out: dict[date, list[tuple[datetime, str]]] = {}
    for day in days:
        wall = datetime.combine(day, at) + offset
        instants = local_times(wall.date(), wall.time(), tz, dst_gap=process.dst_gap, dst_overlap=process.dst_overlap)
        found = [
            (instant, day.isoformat() + (f"#{n + 1}" if n else ""))
            for n, instant in enumerate(instants)
            if start < instant <= end
        ]
        if found:
            out[day] = found
    return out


def firings_on(
    process: m.CareProcess, record: Record, instants: Mapping[date, list[tuple[datetime, str]]]
) -> list[Firing]:
    """``firings`` of a date-based process for ``record``, given ``day_instants`` of the span."""
    when = process.when
    base = parse_date(record.fields.get(when.anniversary_of or when.date))
    if base is None:
        return []
    out: list[Firing] = []
    for day, found in instants.items():
        if when.anniversary_of:
            if base.year > day.year or anniversary_in(base, day.year, process.feb29) != day:
                continue
        elif base != day:
            continue
        out.extend(Firing(instant, key, process.name, record.object, record.id) for instant, key in found)
    return out


def month_days(process: m.CareProcess, days: list[date]) -> list[int]:
    """The month-day keys (MMDD) of records due on ``days``; 229 where a 29 February falls there."""
    keys = {day.month * 100 + day.day for day in days}
    for day in days:
        if (
            not calendar.isleap(day.year)
            and process.when.anniversary_of
            and (
                (process.feb29 == "feb28" and (day.month, day.day) == (2, 28))
                or (process.feb29 == "mar1" and (day.month, day.day) == (3, 1))
            )
        ):
            keys.add(229)
    return sorted(keys)


def run_id(due: CareDue) -> str:
    return f"care:{due.process}:{due.object}:{due.id}:{due.occurrence}"


def outcome(step: Step, due: CareDue) -> str:
    """``sent``, ``skipped`` (condition false, disabled, record gone) or ``failed``."""
    run = step.runs.get(run_id(due))
    if run is None:
        return "skipped"
    if run.status == "failed":
        return "failed"
    last = run.trace[-1].detail if run.trace else ""
    return "skipped" if last.startswith(("condition false", "process disabled")) else "sent"


def scan(
    process: m.CareProcess, records: Iterable[Record], start: datetime, end: datetime, tz: tzinfo
) -> tuple[list[Firing], list[str]]:
    """Every firing of ``process`` over ``records`` in the span, in run order, and the ids of the
    records skipped because their date field is empty or not a date (cron needs no date)."""
    found: list[Firing] = []
    undated: list[str] = []
    field = process.when.anniversary_of or process.when.date
    for record in records:
        if record.object != process.object or record.deleted:
            continue
        if field and parse_date(record.fields.get(field)) is None:
            undated.append(record.id)
            continue
        found.extend(firings(process, record, start, end, tz))
    found.sort(key=lambda f: (f.at, f.record_id))
    return found, undated
