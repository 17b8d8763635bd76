"""What a care process would do over a span, without running it: ``flowctl care forecast``,
``flowctl care preview`` and ``flowctl care list`` ask here.

A forecast takes the records as given (a file, or the database at one moment) and, for each
firing in the span, evaluates the process's ``if:`` on the record as it is, at the firing's time;
a run in the daemon sees the record as earlier actions left it. Nothing is sent or stored. What
does not run is kept, with its reason: ``if:`` false or failing, a wall time that does not exist
under ``dst_gap: skip`` (with the instant ``shift`` would have run it at), a date field that is
empty or not a date (with its value).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from flowctl.engine.care import Firing, cron_of, local_times, parse_at, parse_date, scan
from flowctl.engine.core import Engine
from flowctl.engine.state import Record
from flowctl.spec import model as m
from flowctl.spec.templating import TemplateError


@dataclass(frozen=True, slots=True)
class Undated:
    object: str
    id: str
    value: Any  # what the date field holds: empty, not a date, or a date that does not exist


@dataclass(frozen=True, slots=True)
class Forecast:
    """The firings of a process over a span, each in one list: run, or not run and why."""

    runs: list[Firing] = field(default_factory=list)  # ``if:`` holds (or there is none)
    unless: list[Firing] = field(default_factory=list)  # ``if:`` is false
    failing: list[tuple[Firing, str]] = field(default_factory=list)  # ``if:`` raised: the error
    dst_skipped: list[Firing] = field(default_factory=list)  # ``dst_gap: skip``; ``at``: where shift runs it
    undated: list[Undated] = field(default_factory=list)


def undated(process: m.CareProcess, records: Sequence[Record]) -> list[Undated]:
    """The records of the process's object whose date field is empty or not a date."""
    field_ = process.when.anniversary_of or process.when.date
    if not field_:  # a cron needs no date
        return []
    return [
        Undated(r.object, r.id, r.fields.get(field_))
        for r in records
        if r.object == process.object and not r.deleted and parse_date(r.fields.get(field_)) is None
    ]


def forecast(
    engine: Engine,
    process: m.CareProcess,
    records: Sequence[Record],
    start: datetime,
    end: datetime,
    tz: tzinfo,
    tick: Callable[[], None] | None = None,
) -> Forecast:
    """Every firing of ``process`` over ``records`` in ``start < at <= end``, sorted into ``Forecast``;
    ``tick`` is called after each firing's condition is evaluated (the CLI's progress on a terminal)."""
    found, _ = scan(process, records, start, end, tz)
    by_key = {(r.object, r.id): r for r in records}
    out = Forecast(undated=undated(process, records))
    for firing in found:
        record = by_key[(firing.object, firing.record_id)]
        ctx = {**engine.context(record, now=firing.at), "occurrence": firing.occurrence}
        try:
            holds, _ = engine.condition(process.if_, ctx)
        except TemplateError as exc:
            out.failing.append((firing, str(exc)))
            continue
        (out.runs if holds else out.unless).append(firing)
        if tick is not None:
            tick()
    if process.dst_gap == "skip":
        kept = {(f.object, f.record_id, f.at.astimezone(UTC)) for f in found}
        shifted, _ = scan(replace(process, dst_gap="shift"), records, start, end, tz)
        out.dst_skipped.extend(f for f in shifted if (f.object, f.record_id, f.at.astimezone(UTC)) not in kept)
    return out


def next_look(process: m.CareProcess, now: datetime, tz: tzinfo) -> datetime | None:
    """When the process next has a firing time after ``now`` (any record's): daily at its wall time
    (with the offset's time of day), or the cron's next firing; None when it is disabled."""
    if not process.enabled:
        return None
    if process.when.cron:
        return cron_of(process.when.cron).next_after(
            now.astimezone(tz), dst_gap=process.dst_gap, dst_overlap=process.dst_overlap
        )
    offset = process.when.offset.value if process.when.offset else timedelta(0)
    time_of_day = timedelta(seconds=offset.seconds)  # -1d12h from 08:00 is 20:00: +12h, on some other day
    local = now.astimezone(tz).date()
    for n in range(3):  # a wall time that does not exist today (dst_gap: skip) exists tomorrow
        wall = datetime.combine(local + timedelta(days=n), parse_at(process.when.at)) + time_of_day
        for at in local_times(wall.date(), wall.time(), tz, dst_gap=process.dst_gap, dst_overlap=process.dst_overlap):
            if at > now:
                return at
    return None
