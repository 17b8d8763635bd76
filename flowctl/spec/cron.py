"""Five-field cron expressions (Vixie cron syntax) and their firing times in a time zone.

A cron names wall times in a time zone. Around a daylight-saving change (docs/care.md, "Cron and
daylight saving time") the expression is one of two kinds, as in Vixie cron and cronie:

* an *interval* cron, whose minute or hour field starts with ``*`` (``*/30 * * * *``, ``0 * * * *``,
  ``@hourly``), fires whenever the clock on the wall shows a time it names: never at a wall time
  that does not exist (the clock jumps over it), and in the repeated hour as in any other, so it
  keeps its rhythm in real time;
* a *fixed-time* cron (``30 2 * * *``, ``0 9 * * 1-5``) follows the same policies as care
  anniversaries: a wall time in a gap runs as much later as the gap is long (``dst_gap: shift``,
  02:30 → 03:30 when 02:00 becomes 03:00) or not at all (``skip``); a wall time that happens twice
  runs the first time (``dst_overlap: once``) or both times (``twice``).

Two wall times that land on one instant (02:30 shifted to 03:30, and 03:30 itself) fire once.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from calendar import monthrange
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo

__all__ = ["CronError", "CronSpec", "parse_cron"]

_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTHS = {name: number for number, name in enumerate(_MONTH_NAMES, 1)}
_WEEKDAYS = {name: number for number, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# (name, lowest, highest, names): day-of-week accepts 7 for Sunday as well as 0.
_FIELDS: tuple[tuple[str, int, int, Mapping[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 7, _WEEKDAYS),
)
_LONGEST_MONTH = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31, 11: 30, 12: 31}
_SEARCH_YEARS = 400  # the Gregorian calendar repeats every 400 years: no match by then means never
_MINUTE = timedelta(minutes=1)
_HOUR = timedelta(hours=1)
_DAY = timedelta(days=1)
# Offsets lie within -12h..+14h: a wall time a day or more after W fires no earlier than W + 10h.
_LEAST_HIGH = timedelta(hours=-10)
DST_GAP = ("shift", "skip")
DST_OVERLAP = ("once", "twice")


class CronError(ValueError):
    """A cron expression that cannot be parsed or never fires; the message names the field."""

    def __init__(self, message: str, *, text: str, field: str | None = None) -> None:
        super().__init__(f"cron {text!r}: {message}")
        self.text = text
        self.field = field


@dataclass(frozen=True, kw_only=True, slots=True)
class CronSpec:
    text: str
    minutes: tuple[int, ...]  # each field: the sorted values it allows
    hours: tuple[int, ...]
    days: tuple[int, ...]
    months: tuple[int, ...]
    weekdays: tuple[int, ...]  # 0 = Sunday
    day_or_weekday: bool  # both day fields restricted: a day matches if EITHER matches (Vixie rule)
    interval: bool = False  # the minute or hour field starts with '*': fires by the clock through DST changes

    def matches(self, wall: datetime) -> bool:
        """Whether the wall time (seconds ignored) is one the expression names."""
        return (
            wall.minute in self.minutes
            and wall.hour in self.hours
            and wall.month in self.months
            and self._day_matches(wall.year, wall.month, wall.day)
        )

    def next_after(self, moment: datetime, *, dst_gap: str = "shift", dst_overlap: str = "once") -> datetime:
        """The first firing strictly after ``moment`` (aware), in ``moment``'s time zone."""
        return next(self._fires_after(moment, dst_gap, dst_overlap))

    def fires_between(
        self, start: datetime, end: datetime, *, dst_gap: str = "shift", dst_overlap: str = "once"
    ) -> Iterator[datetime]:
        """Every firing ``t`` with ``start < t <= end``, in order, in ``start``'s time zone."""
        _zone_of(end)
        until = end.astimezone(UTC)
        for fire in self._fires_after(start, dst_gap, dst_overlap):
            if fire.astimezone(UTC) > until:
                return
            yield fire

    def instants(
        self, wall: datetime, zone: tzinfo, *, dst_gap: str = "shift", dst_overlap: str = "once"
    ) -> tuple[datetime, ...]:
        """The instants one naive wall time fires at: none (a gap, skipped), one, or two (a repeated
        hour, twice); in the zone, with ``fold=1`` for the second pass of a repeated hour."""
        first = wall.replace(tzinfo=zone)
        second = wall.replace(tzinfo=zone, fold=1)
        if first.utcoffset() == second.utcoffset():
            return (first,)
        # PEP 495: in a repeated hour fold=0 is the first pass; in a gap fold=0 reads the wall
        # time with the offset from before the change, which is the wall time shifted by the gap.
        moved = first.astimezone(UTC).astimezone(zone)
        if moved.replace(tzinfo=None) == wall:  # it exists: a repeated hour
            return (first, second) if self.interval or dst_overlap == "twice" else (first,)
        if self.interval or dst_gap == "skip":
            return ()
        return (moved,)

    def _fires_after(self, moment: datetime, dst_gap: str, dst_overlap: str) -> Iterator[datetime]:
        """Every firing strictly after ``moment``, in order, without end.

        Wall times are visited in order, but their instants are not quite in order: a shifted gap
        time lands among the wall times after the gap, and the second pass of a repeated hour comes
        after the first pass of its later minutes. So each instant waits in a heap until no later
        wall time can fire before it. A wall time V fires at V minus an offset the zone has near V:
        a later V within a day of the wall time W just visited fires after W minus the highest
        offset near W, and any later V after W + 10h (offsets lie within -12h..+14h). This assumes
        at most one change of offset in two days, as every zone has had since 2012."""
        if dst_gap not in DST_GAP or dst_overlap not in DST_OVERLAP:
            raise ValueError(
                f"dst_gap must be one of {DST_GAP} and dst_overlap one of {DST_OVERLAP}, "
                f"got {dst_gap!r} and {dst_overlap!r}"
            )
        zone = _zone_of(moment)
        after = moment.astimezone(UTC)
        lowest, _ = _offsets_near(after.astimezone(zone).replace(tzinfo=None, fold=0), zone)
        # the first wall time that can fire after ``after``: W fires at W - offset(W), offset(W) >= lowest
        wall = (after + lowest).replace(tzinfo=None, second=0, microsecond=0)
        waiting: list[tuple[datetime, datetime]] = []  # (UTC instant, the firing in the zone)
        last: datetime | None = None
        hour, highest = None, timedelta(0)
        while True:
            wall = self._next_wall(wall)
            for fire in self.instants(wall, zone, dst_gap=dst_gap, dst_overlap=dst_overlap):
                instant = fire.astimezone(UTC)
                if instant > after:
                    heapq.heappush(waiting, (instant, fire))
            if hour != (hour := wall.replace(minute=0)):  # once an hour: near the hour is near its minutes
                _, highest = _offsets_near(hour, zone, extra=_HOUR)
            settled = (wall - max(highest, _LEAST_HIGH)).replace(tzinfo=UTC)
            while waiting and waiting[0][0] <= settled:
                instant, fire = heapq.heappop(waiting)
                if instant != last:  # two wall times on one instant fire once
                    last = instant
                    yield fire
            wall += _MINUTE

    def _day_matches(self, year: int, month: int, day: int) -> bool:
        in_month = day in self.days
        in_week = date(year, month, day).isoweekday() % 7 in self.weekdays
        return (in_month or in_week) if self.day_or_weekday else (in_month and in_week)

    def _next_wall(self, wall: datetime) -> datetime:
        """The first matching naive wall time at or after ``wall``; skips whole months/days/hours."""
        year, month, day, hour, minute = wall.year, wall.month, wall.day, wall.hour, wall.minute
        while year <= wall.year + _SEARCH_YEARS:
            if month not in self.months or day > monthrange(year, month)[1]:
                following = _at_least(self.months, month + (month in self.months))
                year, month = (year, following) if following is not None else (year + 1, self.months[0])
                day, hour, minute = 1, 0, 0
                continue
            next_hour = _at_least(self.hours, hour) if self._day_matches(year, month, day) else None
            if next_hour is None:
                day, hour, minute = day + 1, 0, 0
            elif next_hour != hour:
                hour, minute = next_hour, 0
            elif (next_minute := _at_least(self.minutes, minute)) is None:
                if hour == 23:
                    day, hour, minute = day + 1, 0, 0
                else:
                    hour, minute = hour + 1, 0
            else:
                return datetime(year, month, day, hour, next_minute)  # noqa: DTZ001 (wall time)
        raise CronError("never fires", text=self.text)


def _at_least(values: tuple[int, ...], lowest: int) -> int | None:
    index = bisect_left(values, lowest)
    return values[index] if index < len(values) else None


def _offsets_near(wall: datetime, zone: tzinfo, extra: timedelta = timedelta(0)) -> tuple[timedelta, timedelta]:
    """The lowest and highest UTC offsets of ``zone`` from a day before the naive ``wall`` to a day
    (and ``extra``) after it."""
    offsets = [
        w.replace(tzinfo=zone, fold=fold).utcoffset()
        for w in (wall - _DAY, wall, wall + _DAY + extra)
        for fold in (0, 1)
    ]
    known = [o for o in offsets if o is not None]
    return min(known), max(known)


def _zone_of(moment: datetime) -> tzinfo:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"cron times need an aware datetime with a time zone, got {moment.isoformat()}")
    return moment.tzinfo


def parse_cron(text: str) -> CronSpec:
    """Parse ``minute hour day-of-month month day-of-week`` (or ``@daily`` etc.)."""
    fields = _MACROS.get(text.strip().lower(), text).split()
    if len(fields) != len(_FIELDS):
        names = " ".join(name for name, *_ in _FIELDS)
        raise CronError(f"expected 5 fields ({names}), got {len(fields)}", text=text)
    values = [_parse_field(raw, spec, text) for raw, spec in zip(fields, _FIELDS, strict=True)]
    minutes, hours, days, months, weekdays = (tuple(sorted(v)) for v in values)
    # Vixie cron: a day field counts as restricted unless it starts with '*'.
    either = not fields[2].startswith("*") and not fields[4].startswith("*")
    if not either and not any(days[0] <= _LONGEST_MONTH[m] for m in months):
        reason = f"never fires: no month in {fields[3]!r} has day {days[0]}"
        raise CronError(reason, text=text, field="day-of-month")
    return CronSpec(
        text=text,
        interval=fields[0].startswith("*") or fields[1].startswith("*"),
        minutes=minutes,
        hours=hours,
        days=days,
        months=months,
        weekdays=weekdays,
        day_or_weekday=either,
    )


def _parse_field(raw: str, spec: tuple[str, int, int, Mapping[str, int]], text: str) -> set[int]:
    name, lowest, highest, names = spec

    def fail(reason: str) -> CronError:
        return CronError(f"{name} field {raw!r}: {reason}", text=text, field=name)

    def number(token: str) -> int:
        if token.isdecimal() and token.isascii():
            value = int(token)
        elif token.lower() in names:
            value = names[token.lower()]
        else:
            example = f" or a name like {next(iter(names))}" if names else ""
            raise fail(f"{token!r} is not a number{example}")
        if not lowest <= value <= highest:
            raise fail(f"{value} is outside {lowest}-{highest}")
        return value

    values: set[int] = set()
    top = 6 if name == "day-of-week" else highest  # '*' is 0-6: 7 would repeat Sunday
    for item in raw.split(","):
        body, slash, step_text = item.partition("/")
        if not body:
            raise fail("empty list item" if not slash else "a step needs '*' or a range before '/'")
        step = 1
        if slash:
            if not (step_text.isdecimal() and step_text.isascii()) or int(step_text) == 0:
                raise fail(f"step {step_text!r} must be a positive number")
            step = int(step_text)
        if body == "*":
            start, end = lowest, top
        else:
            first, dash, last = body.partition("-")
            start = number(first)
            end = number(last) if dash else start
            if slash and not dash:
                raise fail(f"'{item}' needs a range: write {start}-{highest}/{step} or */{step}")
            if name == "day-of-week" and dash and end == 0 < start:
                end = 7  # fri-sun
            if end < start:
                raise fail(f"range {first}-{last} goes backwards")
        values.update(range(start, end + 1, step))
    if name == "day-of-week" and 7 in values:
        values = (values - {7}) | {0}
    return values
