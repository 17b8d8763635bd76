"""Business calendars count working time exactly: breaks, weekends, holidays and DST days."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowctl.spec.calendars import (
    Calendar,
    CalendarError,
    NoWorkingTime,
    add_working,
    calendar_errors,
    is_working,
    next_working,
    parse_calendar,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
SAIGON = ZoneInfo("Asia/Ho_Chi_Minh")
EVERY_DAY = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

OFFICE = parse_calendar(
    "office",
    {
        "days": ["mon", "tue", "wed", "thu", "fri", "sat"],
        "hours": ["08:00-12:00", "13:30-17:30"],
        "holidays": ["2027-01-01", "2027-02-05"],
    },
    "Asia/Ho_Chi_Minh",
)


def night(zone: str) -> Calendar:
    """Every day 01:00-04:00: the hours in which clocks jump."""
    return parse_calendar("night", {"days": EVERY_DAY, "hours": ["01:00-04:00"]}, zone)


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


# ------------------------------------------------------------------ hand-checked cases


def test_lunch_break_is_not_counted() -> None:
    # Friday 10:00 + 4h: two hours to noon, the break, two hours from 13:30.
    start = datetime(2027, 3, 12, 10, 0, tzinfo=SAIGON)
    assert add_working(OFFICE, start, hours(4)) == datetime(2027, 3, 12, 15, 30, tzinfo=SAIGON)


def test_a_count_ending_at_closing_time_lands_on_the_next_opening() -> None:
    start = datetime(2027, 3, 12, 10, 0, tzinfo=SAIGON)
    assert add_working(OFFICE, start, hours(2)) == datetime(2027, 3, 12, 13, 30, tzinfo=SAIGON)


def test_sunday_is_skipped() -> None:
    # Saturday 16:30 + 2h: one hour on Saturday, Sunday is off, one hour from Monday 08:00.
    start = datetime(2027, 3, 13, 16, 30, tzinfo=SAIGON)
    assert add_working(OFFICE, start, hours(2)) == datetime(2027, 3, 15, 9, 0, tzinfo=SAIGON)


def test_holidays_are_skipped() -> None:
    # Thursday 31 Dec 2026 17:00 + 1h: half an hour that day; New Year's Day is a holiday.
    start = datetime(2026, 12, 31, 17, 0, tzinfo=SAIGON)
    assert add_working(OFFICE, start, hours(1)) == datetime(2027, 1, 2, 8, 30, tzinfo=SAIGON)
    # Tết: Friday 5 Feb 2027 is a holiday, Saturday works.
    assert next_working(OFFICE, datetime(2027, 2, 4, 18, 0, tzinfo=SAIGON)) == datetime(2027, 2, 6, 8, 0, tzinfo=SAIGON)


def test_next_working_is_the_moment_itself_in_working_hours() -> None:
    inside = datetime(2027, 3, 12, 9, 15, tzinfo=SAIGON)
    assert next_working(OFFICE, inside) == inside
    assert is_working(OFFICE, inside)
    assert not is_working(OFFICE, datetime(2027, 3, 12, 12, 0, tzinfo=SAIGON))
    assert next_working(OFFICE, datetime(2027, 3, 12, 12, 0, tzinfo=SAIGON)) == datetime(
        2027, 3, 12, 13, 30, tzinfo=SAIGON
    )


def test_saigon_has_no_dst() -> None:
    cal = night("Asia/Ho_Chi_Minh")
    start = datetime(2027, 3, 28, 1, 0, tzinfo=SAIGON)
    assert add_working(cal, start, hours(3)) == datetime(2027, 3, 29, 1, 0, tzinfo=SAIGON)


def test_berlin_spring_forward_window_is_an_hour_shorter() -> None:
    # 28 Mar 2027: 02:00 CET jumps to 03:00 CEST, so 01:00-04:00 holds two real hours.
    cal = night("Europe/Berlin")
    start = datetime(2027, 3, 28, 1, 0, tzinfo=BERLIN)
    assert add_working(cal, start, hours(1.5)) == datetime(2027, 3, 28, 3, 30, tzinfo=BERLIN)
    assert add_working(cal, start, hours(2)) == datetime(2027, 3, 29, 1, 0, tzinfo=BERLIN)
    assert add_working(cal, start, hours(2.5)) == datetime(2027, 3, 29, 1, 30, tzinfo=BERLIN)


def test_berlin_fall_back_window_is_an_hour_longer() -> None:
    # 31 Oct 2027: 03:00 CEST falls back to 02:00 CET, so 01:00-04:00 holds four real hours.
    cal = night("Europe/Berlin")
    start = datetime(2027, 10, 31, 1, 0, tzinfo=BERLIN)
    end = add_working(cal, start, hours(3.5))
    assert end == datetime(2027, 10, 31, 2, 30, 0, tzinfo=UTC)  # 03:30 CET
    assert end.astimezone(BERLIN).strftime("%H:%M %Z") == "03:30 CET"
    assert add_working(cal, start, hours(4)) == datetime(2027, 11, 1, 1, 0, tzinfo=BERLIN)


def test_new_york_spring_forward_and_fall_back() -> None:
    cal = night("America/New_York")
    spring = datetime(2027, 3, 14, 1, 0, tzinfo=NEW_YORK)  # 02:00 EST -> 03:00 EDT
    assert add_working(cal, spring, hours(1)) == datetime(2027, 3, 14, 3, 0, tzinfo=NEW_YORK)
    assert add_working(cal, spring, hours(2)) == datetime(2027, 3, 15, 1, 0, tzinfo=NEW_YORK)
    fall = datetime(2027, 11, 7, 1, 0, tzinfo=NEW_YORK)  # 02:00 EDT -> 01:00 EST
    assert add_working(cal, fall, hours(3)) == datetime(2027, 11, 7, 8, 0, tzinfo=UTC)  # 03:00 EST
    assert add_working(cal, fall, hours(4)) == datetime(2027, 11, 8, 1, 0, tzinfo=NEW_YORK)


def test_a_window_inside_the_gap_is_empty() -> None:
    cal = parse_calendar("gap", {"days": EVERY_DAY, "hours": ["02:15-02:45", "05:00-06:00"]}, "Europe/Berlin")
    before = datetime(2027, 3, 28, 0, 0, tzinfo=BERLIN)
    assert next_working(cal, before) == datetime(2027, 3, 28, 5, 0, tzinfo=BERLIN)


def test_office_days_across_dst_count_wall_hours() -> None:
    # Friday 26 Mar 2027 16:00 Berlin + 3h: 1.5h Friday, 1.5h Monday (Sunday's jump is outside hours).
    cal = parse_calendar("office", {"days": EVERY_DAY[:5], "hours": ["08:00-12:00", "13:30-17:30"]}, "Europe/Berlin")
    start = datetime(2027, 3, 26, 16, 0, tzinfo=BERLIN)
    assert add_working(cal, start, hours(3)) == datetime(2027, 3, 29, 9, 30, tzinfo=BERLIN)


# ------------------------------------------------------------------ reading, with the field and a hint


@pytest.mark.parametrize(
    ("raw", "code", "field", "index"),
    [
        ({"days": ["mon", "funday"]}, "E115", "days", 1),
        ({"hours": ["8-12"]}, "E116", "hours", 0),
        ({"hours": ["12:00-08:00"]}, "E116", "hours", 0),
        ({"hours": ["08:00-12:00", "11:00-13:00"]}, "E116", "hours", 1),
        ({"hours": ["08:00-24:30"]}, "E116", "hours", 0),
        ({"holidays": ["2027-02-30"]}, "E117", "holidays", 0),
        ({"timezone": "Mars/Olympus"}, "E118", "timezone", None),
    ],
)
def test_bad_fields_are_named(raw: dict[str, object], code: str, field: str, index: int | None) -> None:
    with pytest.raises(CalendarError) as caught:
        parse_calendar("office", raw, "UTC")
    assert (caught.value.code, caught.value.field, caught.value.index) == (code, field, index)
    assert caught.value.hint
    assert [(e.code, e.field) for e in calendar_errors("office", raw, "UTC")] == [(code, field)]


def test_defaults_and_long_day_names() -> None:
    cal = parse_calendar("x", {"days": ["Monday", "sat"], "hours": ["00:00-24:00"]}, "Asia/Ho_Chi_Minh")
    assert cal.days == frozenset({0, 5}) and cal.timezone == "Asia/Ho_Chi_Minh"
    assert add_working(cal, datetime(2027, 3, 15, 23, 0, tzinfo=SAIGON), hours(2)) == datetime(
        2027, 3, 20, 1, 0, tzinfo=SAIGON
    )


# ------------------------------------------------------------------ properties

ZONES = ["Europe/Berlin", "America/New_York", "Asia/Ho_Chi_Minh"]
CALENDARS = [
    parse_calendar(
        f"c{i}",
        {"days": days, "hours": spans, "holidays": ["2027-03-29", "2027-11-01", "2027-01-01"]},
        zone,
    )
    for i, (days, spans, zone) in enumerate(
        (days, spans, zone)
        for zone in ZONES
        for days, spans in (
            (EVERY_DAY[:6], ["08:00-12:00", "13:30-17:30"]),
            (EVERY_DAY, ["01:00-02:30", "02:45-03:15", "22:00-24:00"]),
        )
    )
]
moments = st.datetimes(min_value=datetime(2026, 12, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC))
spans = st.integers(min_value=0, max_value=60 * 60).map(lambda minutes: timedelta(minutes=minutes))


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(CALENDARS), moments, spans, spans)
def test_counting_is_additive(cal: Calendar, start: datetime, x: timedelta, y: timedelta) -> None:
    assert add_working(cal, add_working(cal, start, x), y) == add_working(cal, start, x + y)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(CALENDARS), moments, moments, spans, spans)
def test_counting_is_monotone(cal: Calendar, a: datetime, b: datetime, x: timedelta, y: timedelta) -> None:
    a, b = min(a, b), max(a, b)
    x, y = min(x, y), max(x, y)
    assert add_working(cal, a, x) <= add_working(cal, b, x)
    assert add_working(cal, a, x) <= add_working(cal, a, y)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(CALENDARS), moments, spans)
def test_the_result_is_working_time(cal: Calendar, start: datetime, x: timedelta) -> None:
    end = add_working(cal, start, x)
    assert end >= start + min(x, timedelta(0)) and end >= start
    local = end.astimezone(cal.zone)
    assert cal.works_on(local.date()) or local.time() == datetime.min.time()
    assert is_working(cal, end)
    assert end - start >= x  # working time never runs faster than real time


def test_a_long_count_goes_on_past_years_of_days() -> None:
    # 52 weeks of 48 office hours: a year of working time, a little over a year of days.
    start = datetime(2027, 3, 15, 8, 0, tzinfo=SAIGON)  # a Monday
    end = add_working(OFFICE, start, hours(48 * 52 * 12))
    assert end.astimezone(SAIGON).year == 2039


def test_a_calendar_with_no_working_time_says_so() -> None:
    never = parse_calendar("never", {"days": ["sun"], "hours": ["02:15-02:45"]}, "UTC")
    holidays = frozenset(date(2027, 1, 3) + timedelta(weeks=n) for n in range(600))
    blocked = Calendar(name="never", days=never.days, hours=never.hours, holidays=holidays, timezone="UTC")
    with pytest.raises(NoWorkingTime):
        next_working(blocked, datetime(2027, 1, 1, tzinfo=UTC))
