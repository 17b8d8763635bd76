"""Business calendars: working days, hours with breaks, holidays and a time zone.

A calendar turns wall-clock windows (``08:00-12:00`` on a working day) into real instants, so
``add_working`` counts elapsed working time exactly, also on the days a clock jumps: a window
that spans a spring-forward gap is an hour shorter, one across a fall-back overlap an hour longer,
as a person at the office would live it. Wall times inside a gap are taken as the moment of the
jump; wall times in an overlap as their first occurrence. Everything here is pure: the caller
passes the instants in.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")
_DAY = timedelta(days=1)
#: How many days in a row without working time a search passes before it gives up (a calendar
#: whose every working day is a holiday for years is a mistake, not a reason to loop forever).
_HORIZON_DAYS = 3700


class CalendarError(ValueError):
    """A calendar field that cannot be read: ``field`` (and ``index`` in a list) says which."""

    def __init__(self, code: str, field: str, message: str, hint: str, index: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.field = field
        self.message = message
        self.hint = hint
        self.index = index


class NoWorkingTime(ValueError):
    """The calendar has no working minute for ``_HORIZON_DAYS`` days in a row."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Window:
    """Working hours of a day, as wall-clock minutes since midnight (``end`` may be 24:00)."""

    start: int
    end: int

    @property
    def text(self) -> str:
        return f"{_clock(self.start)}-{_clock(self.end)}"


@dataclass(frozen=True, kw_only=True, slots=True)
class Calendar:
    """A named business calendar, ready to count with."""

    name: str
    days: frozenset[int]  # weekday numbers, Monday 0
    hours: tuple[Window, ...]  # sorted, not overlapping
    holidays: frozenset[date]
    timezone: str

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def works_on(self, day: date) -> bool:
        return day.weekday() in self.days and day not in self.holidays


# ------------------------------------------------------------------ reading


def parse_calendar(name: str, raw: Mapping[str, Any], default_timezone: str) -> Calendar:
    """Read one Config ``calendars:`` entry; raise CalendarError naming the first bad field."""
    return Calendar(
        name=name,
        days=_days(raw.get("days", list(DAY_NAMES[:5]))),
        hours=_hours(raw.get("hours", ["08:00-17:00"])),
        holidays=_holidays(raw.get("holidays", [])),
        timezone=_timezone(raw.get("timezone") or default_timezone),
    )


def calendar_errors(name: str, raw: Mapping[str, Any], default_timezone: str) -> list[CalendarError]:
    """Every problem of one calendar entry (``parse_calendar`` stops at the first)."""
    found: list[CalendarError] = []
    for key, read in (("days", _days), ("hours", _hours), ("holidays", _holidays)):
        if key in raw:
            try:
                read(raw[key])
            except CalendarError as exc:
                found.append(exc)
    try:
        _timezone(raw.get("timezone") or default_timezone)
    except CalendarError as exc:
        found.append(exc)
    return found


def _days(raw: Any) -> frozenset[int]:
    values = raw if isinstance(raw, list) else [raw]
    out = set()
    for i, value in enumerate(values):
        text = value.strip().lower() if isinstance(value, str) else ""
        if text not in DAY_NAMES and text not in _LONG_DAYS:
            raise CalendarError(
                "E115", "days", f"'{value}' is not a day of the week", f"write one of {', '.join(DAY_NAMES)}", i
            )
        out.add(DAY_NAMES.index(text[:3]))
    if not out:
        raise CalendarError("E115", "days", "a calendar needs at least one working day", "e.g. days: [mon, tue, wed]")
    return frozenset(out)


_LONG_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def _hours(raw: Any) -> tuple[Window, ...]:
    values = raw if isinstance(raw, list) else [raw]
    windows: list[tuple[Window, int]] = []
    for i, value in enumerate(values):
        match = _HOURS.match(str(value).strip()) if isinstance(value, str) else None
        start = _minutes(match.group(1), match.group(2)) if match else -1
        end = _minutes(match.group(3), match.group(4)) if match else -1
        if not match or start < 0 or end < 0 or start >= end:
            raise CalendarError(
                "E116",
                "hours",
                f"'{value}' is not a span of working hours",
                "write HH:MM-HH:MM with the start before the end, e.g. 08:00-12:00 (24:00 ends at midnight)",
                i,
            )
        windows.append((Window(start=start, end=end), i))
    if not windows:
        raise CalendarError("E116", "hours", "a calendar needs working hours", 'e.g. hours: ["08:00-12:00"]')
    windows.sort(key=lambda pair: pair[0].start)
    for (before, _), (after, i) in pairwise(windows):
        if after.start < before.end:
            raise CalendarError(
                "E116",
                "hours",
                f"working hours {after.text} overlap {before.text}",
                "list each span once; a break is the gap between two spans",
                i,
            )
    return tuple(w for w, _ in windows)


def _minutes(hours: str, minutes: str) -> int:
    h, mm = int(hours), int(minutes)
    if mm > 59 or h > 24 or (h == 24 and mm):
        return -1
    return h * 60 + mm


def _holidays(raw: Any) -> frozenset[date]:
    values = raw if isinstance(raw, list) else [raw]
    out = set()
    for i, value in enumerate(values):
        if isinstance(value, datetime):
            value = value.date()
        if isinstance(value, date):
            out.add(value)
            continue
        try:
            out.add(date.fromisoformat(str(value).strip()))
        except ValueError:
            raise CalendarError(
                "E117", "holidays", f"'{value}' is not a date", "write the day as YYYY-MM-DD, e.g. 2027-01-01", i
            ) from None
    return frozenset(out)


def _timezone(name: Any) -> str:
    text = str(name).strip()
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise CalendarError(
            "E118",
            "timezone",
            f"unknown time zone '{name}'",
            "write an IANA zone name, e.g. Asia/Ho_Chi_Minh, Europe/Berlin or UTC",
        ) from None
    return text


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


# ------------------------------------------------------------------ counting


def next_working(calendar: Calendar, moment: datetime) -> datetime:
    """The first working instant at or after ``moment`` (UTC): ``moment`` itself when it is one."""
    return add_working(calendar, moment, timedelta(0))


def is_working(calendar: Calendar, moment: datetime) -> bool:
    return next_working(calendar, moment) == moment


def add_working(calendar: Calendar, start: datetime, duration: timedelta) -> datetime:
    """The instant (UTC) when ``duration`` of working time has passed since ``start``.

    Only time inside the calendar's windows counts. The result is always a working instant: a
    count that ends as the office closes lands on the next opening, which also makes the sum
    exact: ``add_working(add_working(a, x), y) == add_working(a, x + y)``.
    """
    if start.tzinfo is None:
        raise ValueError("add_working needs an aware datetime")
    if duration < timedelta(0):
        raise ValueError("add_working counts forward only")
    now = start.astimezone(UTC)
    remaining = duration
    for opens, closes in windows_from(calendar, now):
        opens = max(opens, now)
        if remaining < closes - opens:
            return opens + remaining
        remaining -= closes - opens
    raise NoWorkingTime(f"calendar '{calendar.name}' has no working time for {_HORIZON_DAYS} days in a row")


def windows_from(calendar: Calendar, moment: datetime) -> Iterator[tuple[datetime, datetime]]:
    """The working windows (UTC instants) that end after ``moment``, in order."""
    zone = calendar.zone
    day = moment.astimezone(zone).date() - _DAY  # a window of yesterday may still be open
    idle = 0  # days in a row without working time
    while idle < _HORIZON_DAYS:
        idle += 1
        if calendar.works_on(day):
            for window in calendar.hours:
                opens = _instant(day, window.start, zone)
                closes = _instant(day, window.end, zone)
                if closes > moment and closes > opens:
                    idle = 0
                    yield opens, closes
        day += _DAY


def _instant(day: date, minutes: int, zone: tzinfo) -> datetime:
    """The UTC instant of a wall time: the first one in an overlap, the jump in a gap."""
    wall = datetime.combine(day, time()) + timedelta(minutes=minutes)  # 24:00 is the next midnight
    first = wall.replace(tzinfo=zone).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    # In a gap: fold=0 reads it with the offset before the jump, fold=1 with the one after; the
    # jump lies between the two readings. Find it to the second.
    low = int(min(first, wall.replace(tzinfo=zone, fold=1).astimezone(UTC)).timestamp())
    high = int(max(first, wall.replace(tzinfo=zone, fold=1).astimezone(UTC)).timestamp())
    after = datetime.fromtimestamp(high, UTC).astimezone(zone).utcoffset()
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, UTC).astimezone(zone).utcoffset() == after:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)
