"""Five-field cron expressions (Vixie cron syntax) and their next firing time in a time zone.

Times are computed in local wall time. Around DST changes a wall time that does not exist fires at
the first instant after the gap, and a wall time that occurs twice fires once, the first time.
"""

from __future__ import annotations

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

    def matches(self, wall: datetime) -> bool:
        """Whether the wall time (seconds ignored) is one the expression names."""
        return (
            wall.minute in self.minutes
            and wall.hour in self.hours
            and wall.month in self.months
            and self._day_matches(wall.year, wall.month, wall.day)
        )

    def next_after(self, moment: datetime) -> datetime:
        """The first firing strictly after ``moment`` (aware), in ``moment``'s time zone."""
        zone = _zone_of(moment)
        after = moment.astimezone(UTC)
        local = after.astimezone(zone)  # normalises a non-existent or folded input
        wall = local.replace(tzinfo=None, second=0, microsecond=0) + _MINUTE
        while True:
            wall = self._next_wall(wall)
            fire = _resolve(wall, zone)
            # Compare in UTC: aware datetimes sharing a tzinfo compare by wall time, ignoring fold.
            if fire.astimezone(UTC) > after:
                return fire
            wall += _MINUTE

    def fires_between(self, start: datetime, end: datetime) -> Iterator[datetime]:
        """Every firing ``t`` with ``start < t <= end``, in ``start``'s time zone."""
        _zone_of(end)
        fire = self.next_after(start)
        while fire.astimezone(UTC) <= end.astimezone(UTC):
            yield fire
            fire = self.next_after(fire)

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


def _zone_of(moment: datetime) -> tzinfo:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"cron times need an aware datetime with a time zone, got {moment.isoformat()}")
    return moment.tzinfo


def _resolve(wall: datetime, zone: tzinfo) -> datetime:
    """The instant a wall time fires at: fold=0 in an overlap, the end of the gap in a gap."""
    first = wall.replace(tzinfo=zone)
    second = wall.replace(tzinfo=zone, fold=1)
    if first.utcoffset() == second.utcoffset():
        return first
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall:
        return first  # an overlap: both exist, fold=0 is the earlier
    # A gap: fold=1 maps to an instant before the transition, fold=0 to one after it (PEP 495).
    low, high = second.astimezone(UTC), first.astimezone(UTC)
    offset_after = high.astimezone(zone).utcoffset()
    while high - low > timedelta(seconds=1):
        middle = low + timedelta(seconds=(high - low) // timedelta(seconds=2))
        low, high = (low, middle) if middle.astimezone(zone).utcoffset() == offset_after else (middle, high)
    return high.astimezone(zone)


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
