from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from flowctl.spec.cron import CronError, CronSpec, parse_cron

BERLIN = ZoneInfo("Europe/Berlin")
SAIGON = ZoneInfo("Asia/Ho_Chi_Minh")
ZONES = [UTC, BERLIN, SAIGON, ZoneInfo("America/New_York"), ZoneInfo("Australia/Lord_Howe")]


def at(*args: int, zone: ZoneInfo = BERLIN, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=zone, fold=fold)  # type: ignore[misc]


# --- parsing ------------------------------------------------------------------------------------


def test_parse_fields() -> None:
    spec = parse_cron("*/15 9-17/4 1,15 jan-mar mon-fri")
    assert spec.minutes == (0, 15, 30, 45)
    assert spec.hours == (9, 13, 17)
    assert spec.days == (1, 15)
    assert spec.months == (1, 2, 3)
    assert spec.weekdays == (1, 2, 3, 4, 5)
    assert spec.day_or_weekday


def test_sunday_is_0_and_7() -> None:
    assert parse_cron("0 0 * * 0").weekdays == parse_cron("0 0 * * 7").weekdays == (0,)
    assert parse_cron("0 0 * * SUN").weekdays == (0,)
    assert parse_cron("0 0 * * 5-7").weekdays == (0, 5, 6)
    assert parse_cron("0 0 * * fri-sun").weekdays == (0, 5, 6)
    assert parse_cron("0 0 * * *").weekdays == (0, 1, 2, 3, 4, 5, 6)


def test_macros() -> None:
    assert parse_cron("@daily").next_after(at(2026, 5, 1, 10)) == at(2026, 5, 2, 0, 0)
    assert parse_cron("@hourly").next_after(at(2026, 5, 1, 10, 5)) == at(2026, 5, 1, 11, 0)


@pytest.mark.parametrize(
    ("text", "field", "why"),
    [
        ("* * * *", None, "expected 5 fields"),
        ("60 * * * *", "minute", "60 is outside 0-59"),
        ("* 24 * * *", "hour", "24 is outside 0-23"),
        ("* * 0 * *", "day-of-month", "0 is outside 1-31"),
        ("* * 32 * *", "day-of-month", "32 is outside 1-31"),
        ("* * * 13 *", "month", "13 is outside 1-12"),
        ("* * * foo *", "month", "'foo' is not a number or a name like jan"),
        ("* * * * 8", "day-of-week", "8 is outside 0-7"),
        ("* * * * monday", "day-of-week", "'monday' is not a number"),
        ("*/0 * * * *", "minute", "step '0' must be a positive number"),
        ("5/15 * * * *", "minute", "write 5-59/15 or \\*/15"),
        ("30-10 * * * *", "minute", "range 30-10 goes backwards"),
        ("1,,2 * * * *", "minute", "empty list item"),
        ("0 0 30 2 *", "day-of-month", "never fires"),
        ("0 0 31 4,6,9,11 *", "day-of-month", "never fires"),
    ],
)
def test_errors_name_the_field(text: str, field: str | None, why: str) -> None:
    with pytest.raises(CronError, match=why) as caught:
        parse_cron(text)
    assert caught.value.field == field
    assert text in str(caught.value)


# --- next times ---------------------------------------------------------------------------------


def test_every_15_minutes() -> None:
    spec = parse_cron("*/15 * * * *")
    assert spec.next_after(at(2026, 5, 1, 10, 0)) == at(2026, 5, 1, 10, 15)
    assert spec.next_after(at(2026, 5, 1, 10, 14, 59)) == at(2026, 5, 1, 10, 15)
    assert spec.next_after(at(2026, 5, 1, 23, 50)) == at(2026, 5, 2, 0, 0)


def test_weekdays_skip_the_weekend() -> None:
    spec = parse_cron("0 9 * * 1-5")
    assert spec.next_after(at(2026, 5, 1, 9, 0, zone=SAIGON)) == at(2026, 5, 4, 9, 0, zone=SAIGON)  # Fri→Mon


def test_result_keeps_the_zone() -> None:
    fire = parse_cron("0 8 * * *").next_after(at(2026, 5, 1, 12, zone=SAIGON))
    assert fire.tzinfo is SAIGON
    assert fire.utcoffset() == timedelta(hours=7)


def test_day_of_month_or_day_of_week_when_both_restricted() -> None:
    spec = parse_cron("0 9 13 * fri")
    assert spec.next_after(at(2026, 1, 1)) == at(2026, 1, 2, 9)  # a Friday
    assert spec.next_after(at(2026, 1, 10)) == at(2026, 1, 13, 9)  # a Tuesday, the 13th


def test_day_of_month_and_day_of_week_when_one_is_a_star() -> None:
    spec = parse_cron("0 9 */2 * mon")  # starts with '*': both must match (odd day AND Monday)
    assert not spec.day_or_weekday
    assert spec.next_after(at(2026, 1, 1)) == at(2026, 1, 5, 9)
    assert spec.next_after(at(2026, 1, 6)) == at(2026, 1, 19, 9)


def test_feb_29_waits_for_a_leap_year() -> None:
    spec = parse_cron("0 9 29 2 *")
    assert spec.next_after(at(2026, 3, 1)) == at(2028, 2, 29, 9)
    assert spec.next_after(at(2028, 2, 29, 9)) == at(2032, 2, 29, 9)
    assert spec.next_after(at(2096, 3, 1, zone=SAIGON)) == at(2104, 2, 29, 9, zone=SAIGON)  # 2100 is not leap


def test_last_minute_of_the_year() -> None:
    assert parse_cron("59 23 31 12 *").next_after(at(2026, 1, 1)) == at(2026, 12, 31, 23, 59)


def test_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        parse_cron("* * * * *").next_after(datetime(2026, 1, 1))


def test_fires_between_counts_working_days_of_a_year() -> None:
    fires = list(parse_cron("0 9 * * mon-fri").fires_between(at(2026, 1, 1), at(2027, 1, 1)))
    assert len(fires) == 261
    assert fires[0] == at(2026, 1, 1, 9)


def test_fires_between_excludes_start_includes_end() -> None:
    spec = parse_cron("0 * * * *")
    assert list(spec.fires_between(at(2026, 5, 1, 9), at(2026, 5, 1, 11))) == [
        at(2026, 5, 1, 10),
        at(2026, 5, 1, 11),
    ]


# --- daylight saving time (Berlin: 2026-03-29 02:00→03:00, 2026-10-25 03:00→02:00) ---------------


def test_spring_gap_fires_at_the_end_of_the_gap() -> None:
    spec = parse_cron("30 2 * * *")
    fire = spec.next_after(at(2026, 3, 28, 12))
    assert fire == at(2026, 3, 29, 3, 0)
    assert fire.utcoffset() == timedelta(hours=2)
    assert fire.astimezone(UTC) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert spec.next_after(fire) == at(2026, 3, 30, 2, 30)


def test_spring_gap_fires_once_for_several_gap_times() -> None:
    fires = list(parse_cron("*/30 * * * *").fires_between(at(2026, 3, 29, 1, 0), at(2026, 3, 29, 4, 0)))
    assert [f.astimezone(UTC).strftime("%H:%M") for f in fires] == ["00:30", "01:00", "01:30", "02:00"]
    assert [f.strftime("%H:%M%z") for f in fires] == ["01:30+0100", "03:00+0200", "03:30+0200", "04:00+0200"]


def test_autumn_overlap_fires_once_at_the_first_occurrence() -> None:
    spec = parse_cron("30 2 * * *")
    fire = spec.next_after(at(2026, 10, 24, 12))
    assert (fire.hour, fire.minute, fire.fold) == (2, 30, 0)
    assert fire.astimezone(UTC) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # CEST, the first 02:30
    assert spec.next_after(fire) == at(2026, 10, 26, 2, 30)
    # Asked during the second 02:xx hour, it does not fire again that day.
    assert spec.next_after(at(2026, 10, 25, 2, 10, fold=1)) == at(2026, 10, 26, 2, 30)


def test_autumn_overlap_half_hourly() -> None:
    fires = list(parse_cron("*/30 * * * *").fires_between(at(2026, 10, 25, 1, 0), at(2026, 10, 25, 4, 0)))
    assert [f.strftime("%H:%M%z") for f in fires] == [
        "01:30+0200",
        "02:00+0200",
        "02:30+0200",
        "03:00+0100",
        "03:30+0100",
        "04:00+0100",
    ]


# --- properties ---------------------------------------------------------------------------------


def _field(lowest: int, highest: int) -> st.SearchStrategy[str]:
    number = st.integers(lowest, highest)
    span = st.tuples(number, number).map(lambda t: f"{min(t)}-{max(t)}")
    step = st.integers(1, highest - lowest + 1)
    item = st.one_of(
        number.map(str),
        span,
        st.tuples(span, step).map(lambda t: f"{t[0]}/{t[1]}"),
        step.map(lambda s: f"*/{s}"),
    )
    return st.one_of(st.just("*"), st.lists(item, min_size=1, max_size=3).map(",".join))


CRONS = st.tuples(_field(0, 59), _field(0, 23), _field(1, 31), _field(1, 12), _field(0, 7)).map(" ".join)
YEARS_2000_TO_2090 = {"min_value": datetime(2000, 1, 1), "max_value": datetime(2090, 1, 1)}
MOMENTS = st.datetimes(**YEARS_2000_TO_2090, timezones=st.sampled_from(ZONES))


def _spec(text: str) -> CronSpec:
    try:
        return parse_cron(text)
    except CronError:
        assume(False)
        raise


def _in_gap_before(spec: CronSpec, fire: datetime) -> bool:
    """Whether ``fire`` ends a DST gap that skipped a wall time the spec names."""
    before = (fire.astimezone(UTC) - timedelta(seconds=1)).astimezone(fire.tzinfo)
    gap = fire.utcoffset() - before.utcoffset()  # type: ignore[operator]
    if gap <= timedelta(0):
        return False
    wall = fire.replace(tzinfo=None)
    skipped = range(1, int(gap.total_seconds()) // 60 + 1)
    return any(spec.matches(wall - timedelta(minutes=m)) for m in skipped)


@settings(max_examples=300, deadline=None)
@given(text=CRONS, moment=MOMENTS)
def test_next_after_is_later_and_matches(text: str, moment: datetime) -> None:
    spec = _spec(text)
    fire = spec.next_after(moment)
    assert fire.astimezone(UTC) > moment.astimezone(UTC)
    assert fire.tzinfo is moment.tzinfo
    settled = fire.astimezone(UTC).astimezone(fire.tzinfo)  # fold as the zone sees the instant
    assert settled.fold == 0
    assert spec.matches(fire) or _in_gap_before(spec, fire)
    # Nothing matching was skipped: check every minute in between when that is cheap.
    if fire.astimezone(UTC) - moment.astimezone(UTC) <= timedelta(days=2):
        minute = moment.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
        while minute < fire.astimezone(UTC):
            local = minute.astimezone(moment.tzinfo)
            assert not (spec.matches(local) and local.fold == 0), f"skipped {local}"
            minute += timedelta(minutes=1)


@settings(max_examples=100, deadline=None)
@given(text=CRONS, moment=MOMENTS)
def test_fires_between_is_strictly_increasing(text: str, moment: datetime) -> None:
    spec = _spec(text)
    fires = [f.astimezone(UTC) for f in spec.fires_between(moment, moment + timedelta(days=3))]
    assert fires == sorted(set(fires))
    assert all(f > moment.astimezone(UTC) for f in fires)
