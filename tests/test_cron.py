from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
from functools import lru_cache
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


# --- daylight saving time: the rules of docs/care.md ("Cron and daylight saving time") --------------
#
# A fixed-time cron (neither the minute nor the hour field starts with '*') follows dst_gap and
# dst_overlap as anniversaries do: a wall time in a gap runs as much later as the gap is long
# (shift) or not at all (skip); a repeated wall time runs once (the first time) or twice. An
# interval cron ('*/30 * * * *', '0 * * * *') fires by the clock on the wall: never at a wall time
# that does not exist, and through the repeated hour as through any other.


def fires(text: str, zone: str, start: str, end: str, dst_gap: str = "shift", dst_overlap: str = "once") -> list[str]:
    """The firings in ``(start, end]`` (naive local ISO times; a start in a repeated hour is its first pass)."""
    tz = ZoneInfo(zone)
    begin, until = datetime.fromisoformat(start).replace(tzinfo=tz), datetime.fromisoformat(end).replace(tzinfo=tz)
    return [
        f.isoformat() for f in parse_cron(text).fires_between(begin, until, dst_gap=dst_gap, dst_overlap=dst_overlap)
    ]


NY, LH = "America/New_York", "Australia/Lord_Howe"
# (cron, zone, dst_gap, dst_overlap, start, end, firings): the table of docs/care.md and more
VECTORS = [
    # New York, 2027-03-14: 02:00 EST becomes 03:00 EDT (a one-hour gap)
    ("30 2 * * *", NY, "shift", "once", "2027-03-14T00:00", "2027-03-15T00:00", ["2027-03-14T03:30:00-04:00"]),
    ("30 2 * * *", NY, "skip", "once", "2027-03-14T00:00", "2027-03-15T00:00", []),
    (
        "30 2 * * *",
        NY,
        "skip",
        "once",
        "2027-03-13T00:00",
        "2027-03-16T00:00",
        ["2027-03-13T02:30:00-05:00", "2027-03-15T02:30:00-04:00"],
    ),
    (
        "*/30 * * * *",
        NY,
        "shift",
        "once",
        "2027-03-14T00:00",
        "2027-03-14T04:00",
        [
            "2027-03-14T00:30:00-05:00",
            "2027-03-14T01:00:00-05:00",
            "2027-03-14T01:30:00-05:00",
            "2027-03-14T03:00:00-04:00",
            "2027-03-14T03:30:00-04:00",
            "2027-03-14T04:00:00-04:00",
        ],
    ),
    (
        "0 * * * *",
        NY,
        "shift",
        "once",
        "2027-03-14T00:00",
        "2027-03-14T04:00",
        ["2027-03-14T01:00:00-05:00", "2027-03-14T03:00:00-04:00", "2027-03-14T04:00:00-04:00"],
    ),
    # New York, 2027-11-07: 02:00 EDT becomes 01:00 EST (01:00-01:59 happen twice)
    ("30 1 * * *", NY, "shift", "once", "2027-11-07T00:00", "2027-11-08T00:00", ["2027-11-07T01:30:00-04:00"]),
    (
        "30 1 * * *",
        NY,
        "shift",
        "twice",
        "2027-11-07T00:00",
        "2027-11-08T00:00",
        ["2027-11-07T01:30:00-04:00", "2027-11-07T01:30:00-05:00"],
    ),
    (
        "*/30 * * * *",
        NY,
        "shift",
        "once",
        "2027-11-07T00:00",
        "2027-11-07T02:00",
        [
            "2027-11-07T00:30:00-04:00",
            "2027-11-07T01:00:00-04:00",
            "2027-11-07T01:30:00-04:00",
            "2027-11-07T01:00:00-05:00",
            "2027-11-07T01:30:00-05:00",
            "2027-11-07T02:00:00-05:00",
        ],
    ),
    # Berlin, 2027-03-28 (02:00 → 03:00) and 2027-10-31 (03:00 → 02:00)
    (
        "30 2 * * *",
        "Europe/Berlin",
        "shift",
        "once",
        "2027-03-28T00:00",
        "2027-03-29T00:00",
        ["2027-03-28T03:30:00+02:00"],
    ),
    (
        "0,30 2,3 * * *",
        "Europe/Berlin",
        "shift",
        "once",
        "2027-03-28T00:00",
        "2027-03-29T00:00",
        ["2027-03-28T03:00:00+02:00", "2027-03-28T03:30:00+02:00"],
    ),  # 02:00 → 03:00 and 02:30 → 03:30: once each
    (
        "30 2 * * *",
        "Europe/Berlin",
        "shift",
        "twice",
        "2027-10-31T00:00",
        "2027-11-01T00:00",
        ["2027-10-31T02:30:00+02:00", "2027-10-31T02:30:00+01:00"],
    ),
    # Lord Howe, 2027-10-03: 02:00 (+10:30) becomes 02:30 (+11), a 30-minute gap
    ("15 2 * * *", LH, "shift", "once", "2027-10-03T00:00", "2027-10-04T00:00", ["2027-10-03T02:45:00+11:00"]),
    ("15 2 * * *", LH, "skip", "once", "2027-10-03T00:00", "2027-10-04T00:00", []),
    (
        "0 * * * *",
        LH,
        "shift",
        "once",
        "2027-10-03T00:00",
        "2027-10-03T04:00",
        ["2027-10-03T01:00:00+10:30", "2027-10-03T03:00:00+11:00", "2027-10-03T04:00:00+11:00"],
    ),
    (
        "*/15 * * * *",
        LH,
        "shift",
        "once",
        "2027-10-03T01:30",
        "2027-10-03T03:00",
        [
            "2027-10-03T01:45:00+10:30",
            "2027-10-03T02:30:00+11:00",
            "2027-10-03T02:45:00+11:00",
            "2027-10-03T03:00:00+11:00",
        ],
    ),
    # Lord Howe, 2027-04-04: 02:00 (+11) becomes 01:30 (+10:30), 01:30-01:59 happen twice
    ("45 1 * * *", LH, "shift", "once", "2027-04-04T00:00", "2027-04-05T00:00", ["2027-04-04T01:45:00+11:00"]),
    (
        "45 1 * * *",
        LH,
        "shift",
        "twice",
        "2027-04-04T00:00",
        "2027-04-05T00:00",
        ["2027-04-04T01:45:00+11:00", "2027-04-04T01:45:00+10:30"],
    ),
    (
        "*/30 * * * *",
        LH,
        "shift",
        "once",
        "2027-04-04T00:30",
        "2027-04-04T02:30",
        [
            "2027-04-04T01:00:00+11:00",
            "2027-04-04T01:30:00+11:00",
            "2027-04-04T01:30:00+10:30",
            "2027-04-04T02:00:00+10:30",
            "2027-04-04T02:30:00+10:30",
        ],
    ),
    # Santiago changes at midnight (2027-09-05 00:00 → 01:00); Troll by two hours (01:00 → 03:00)
    (
        "0 0 * * *",
        "America/Santiago",
        "shift",
        "once",
        "2027-09-04T12:00",
        "2027-09-05T12:00",
        ["2027-09-05T01:00:00-03:00"],
    ),
    (
        "30 1 * * *",
        "Antarctica/Troll",
        "shift",
        "once",
        "2027-03-28T00:00",
        "2027-03-29T00:00",
        ["2027-03-28T03:30:00+02:00"],
    ),
    # Ho Chi Minh City has no daylight saving time
    (
        "30 2 * * *",
        "Asia/Ho_Chi_Minh",
        "skip",
        "twice",
        "2027-03-14T00:00",
        "2027-03-16T00:00",
        ["2027-03-14T02:30:00+07:00", "2027-03-15T02:30:00+07:00"],
    ),
]


@pytest.mark.parametrize(("text", "zone", "dst_gap", "dst_overlap", "start", "end", "expected"), VECTORS)
def test_dst_vectors(
    text: str, zone: str, dst_gap: str, dst_overlap: str, start: str, end: str, expected: list[str]
) -> None:
    assert fires(text, zone, start, end, dst_gap, dst_overlap) == expected


def test_next_after_inside_a_repeated_hour_finds_its_second_pass() -> None:
    spec = parse_cron("30 1 * * *")
    first = datetime(2027, 11, 7, 1, 30, tzinfo=ZoneInfo(NY))
    assert spec.next_after(first, dst_overlap="twice").isoformat() == "2027-11-07T01:30:00-05:00"
    assert spec.next_after(first, dst_overlap="once").isoformat() == "2027-11-08T01:30:00-05:00"
    between = datetime(2027, 11, 7, 1, 45, tzinfo=ZoneInfo(NY))  # 01:45 EDT, before the second 01:30
    assert spec.next_after(between, dst_overlap="twice").isoformat() == "2027-11-07T01:30:00-05:00"


def test_interval_and_fixed_crons() -> None:
    assert parse_cron("*/30 * * * *").interval and parse_cron("0 * * * *").interval
    assert parse_cron("@hourly").interval and parse_cron("15 */2 * * *").interval
    assert not parse_cron("30 2 * * *").interval and not parse_cron("0,30 8-18 * * 1-5").interval
    assert not parse_cron("@daily").interval


# --- the oracle: docs/care.md's rules, applied to a walk of every UTC minute ------------------------


@dataclass(frozen=True)
class Matcher:
    """Which wall times a cron names, written out here for the oracle: hours x minutes on some weekdays."""

    text: str
    hours: frozenset[int]
    minutes: frozenset[int]
    interval: bool
    weekdays: frozenset[int] = frozenset(range(7))  # Monday = 0, as date.weekday()
    spec: CronSpec | None = None

    @classmethod
    def of(cls, spec: CronSpec) -> Matcher:
        return cls(spec.text, frozenset(), frozenset(), spec.interval, spec=spec)

    def matches(self, wall: datetime) -> bool:
        if self.spec is not None:
            return self.spec.matches(wall)
        return wall.hour in self.hours and wall.minute in self.minutes and wall.weekday() in self.weekdays


MINUTE = timedelta(minutes=1)


@lru_cache(maxsize=32)
def clock_walk(
    zone: tzinfo, start: datetime, end: datetime
) -> tuple[dict[datetime, list[datetime]], dict[datetime, timedelta]]:
    """Walk every UTC minute from ``start`` to ``end``: the UTC minutes at which the wall clock shows
    each wall time, and, for each wall time the clock jumped over, the UTC offset just before the jump."""
    shown: dict[datetime, list[datetime]] = {}
    jumped: dict[datetime, timedelta] = {}
    previous: tuple[datetime, timedelta] | None = None
    minute = start
    while minute <= end:
        local = minute.astimezone(zone)
        wall, offset = local.replace(tzinfo=None), local.utcoffset()
        assert offset is not None
        if previous is not None:
            skipped = previous[0] + MINUTE
            while skipped < wall:
                jumped[skipped] = previous[1]
                skipped += MINUTE
        shown.setdefault(wall, []).append(minute)
        previous = (wall, offset)
        minute += MINUTE
    return shown, jumped


@lru_cache(maxsize=256)
def named_walls(cron: Matcher, zone: tzinfo, start: datetime, end: datetime) -> list[tuple[datetime, ...]]:
    """For each wall time the cron names around ``(start, end]``: the UTC minutes the clock shows it at
    (one; two in a repeated hour), or ``(GAP, instant)`` for a wall time the clock jumps over, where
    the instant is the wall time at the UTC offset of just before the jump."""
    margin = timedelta(hours=15)  # more than any UTC offset: every wall time of the span is shown or jumped over
    shown, jumped = clock_walk(
        zone, start.replace(second=0, microsecond=0) - margin, end.replace(second=0, microsecond=0) + margin
    )
    out: list[tuple[datetime, ...]] = []
    for wall in shown.keys() | jumped.keys():
        if cron.matches(wall):
            out.append(tuple(shown[wall]) if wall in shown else (GAP, (wall - jumped[wall]).replace(tzinfo=UTC)))
    return out


GAP = datetime.min.replace(tzinfo=UTC)  # marks a wall time the clock jumped over


def oracle(
    cron: Matcher, zone: tzinfo, start: datetime, end: datetime, dst_gap: str = "shift", dst_overlap: str = "once"
) -> list[datetime]:
    """The firings in ``(start, end]`` (UTC), by the rules of docs/care.md, found by brute force."""
    out: set[datetime] = set()
    for seen in named_walls(cron, zone, start, end):
        if seen[0] is GAP:  # a gap: shift runs it as much later as the gap is long
            if not cron.interval and dst_gap == "shift":
                out.add(seen[1])
        elif cron.interval or dst_overlap == "twice":
            out.update(seen)
        else:
            out.add(seen[0])
    return sorted(t for t in out if start < t <= end)


def _shifted_here(spec: CronSpec, fire: datetime) -> bool:
    """Whether ``fire`` is a wall time in a gap that ``shift`` moved by the gap's length."""
    for back in range(1, 181):
        wall = fire.replace(tzinfo=None, fold=0) - timedelta(minutes=back)
        moved = wall.replace(tzinfo=fire.tzinfo).astimezone(UTC)  # fold=0 in a gap: the offset before it
        missing = moved.astimezone(fire.tzinfo).replace(tzinfo=None) != wall
        if missing and moved == fire.astimezone(UTC) and spec.matches(wall):
            return True
    return False


ORACLE_ZONES = [
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",
    "Asia/Ho_Chi_Minh",
    "America/Santiago",
    "Pacific/Chatham",
    "America/St_Johns",
    "Africa/Casablanca",
    "Antarctica/Troll",
    "America/Havana",
    "Europe/London",
    "Australia/Sydney",
]
ALL = frozenset(range(60))
FIXED = [
    Matcher("30 2 * * *", frozenset({2}), frozenset({30}), interval=False),
    Matcher("30 1 * * *", frozenset({1}), frozenset({30}), interval=False),
    Matcher("0 0 * * *", frozenset({0}), frozenset({0}), interval=False),
    Matcher("45 2 * * *", frozenset({2}), frozenset({45}), interval=False),
    Matcher("0,30 0-3 * * 0", frozenset(range(4)), frozenset({0, 30}), interval=False, weekdays=frozenset({6})),
    Matcher("15,45 23 * * 6", frozenset({23}), frozenset({15, 45}), interval=False, weekdays=frozenset({5})),
]
INTERVAL = [
    Matcher("*/30 * * * *", frozenset(range(24)), frozenset({0, 30}), interval=True),
    Matcher("0 * * * *", frozenset(range(24)), frozenset({0}), interval=True),
    Matcher("*/20 0-3 * * *", frozenset(range(4)), frozenset({0, 20, 40}), interval=True),
    Matcher("* 1 * * *", frozenset({1}), ALL, interval=True),
]
POLICIES = [("shift", "once"), ("shift", "twice"), ("skip", "once"), ("skip", "twice")]
FIRST, LAST = datetime(2027, 1, 1, tzinfo=UTC), datetime(2031, 1, 1, tzinfo=UTC)


def transitions(zone: tzinfo) -> list[datetime]:
    """The UTC hours at which the zone's offset changed in 2027-2030 (a day at a time, then by the hour)."""
    out, day = [], FIRST
    while day < LAST:
        if (day - timedelta(days=1)).astimezone(zone).utcoffset() != day.astimezone(zone).utcoffset():
            hour = day - timedelta(hours=23)
            while hour <= day:
                if (hour - timedelta(hours=1)).astimezone(zone).utcoffset() != hour.astimezone(zone).utcoffset():
                    out.append(hour)
                hour += timedelta(hours=1)
        day += timedelta(days=1)
    return out


def oracle_years(
    cron: Matcher, zone: tzinfo, windows: list[tuple[datetime, datetime]], dst_gap: str, dst_overlap: str
) -> list[datetime]:
    """The oracle over 2027-2030: brute force around each change, and on the days between
    (one UTC offset all day) every wall time the cron names, at that offset."""
    out: set[datetime] = set()
    for start, end in windows:
        out.update(oracle(cron, zone, start, end, dst_gap, dst_overlap))
    day = FIRST.date() - timedelta(days=1)
    while day <= LAST.date():
        offset = datetime.combine(day, time(12), tzinfo=UTC).astimezone(zone).utcoffset()
        assert offset is not None
        if day.weekday() in cron.weekdays:
            for hour in cron.hours:
                for minute in cron.minutes:
                    at = (datetime.combine(day, time(hour, minute)) - offset).replace(tzinfo=UTC)
                    if FIRST < at <= LAST and not any(start < at <= end for start, end in windows):
                        out.add(at)
        day += timedelta(days=1)
    return sorted(out)


@pytest.mark.parametrize("zone_name", ORACLE_ZONES)
def test_every_firing_of_2027_to_2030_agrees_with_the_oracle(zone_name: str) -> None:
    """Every cron within 15 hours of each change under every policy; the fixed-time ones over all four
    years too (each under one policy: away from the changes the policies do not matter)."""
    zone = ZoneInfo(zone_name)
    windows = [(t - timedelta(hours=15), t + timedelta(hours=15)) for t in transitions(zone)]
    assert len(windows) >= (0 if zone_name == "Asia/Ho_Chi_Minh" else 8)
    for index, cron in enumerate(FIXED):
        dst_gap, dst_overlap = POLICIES[index % len(POLICIES)]
        got = _fires(cron.text, zone, FIRST, LAST, dst_gap, dst_overlap)
        want = oracle_years(cron, zone, windows, dst_gap, dst_overlap)
        assert got == want, _first_difference(cron.text, zone_name, dst_gap, dst_overlap, got, want)
    for cron in FIXED + INTERVAL:
        for start, end in windows or [(FIRST, FIRST + timedelta(days=2))]:
            # an interval cron fires by the clock, whatever the policy: two opposite ones show it
            for dst_gap, dst_overlap in POLICIES if not cron.interval else POLICIES[::3]:
                got = _fires(cron.text, zone, start, end, dst_gap, dst_overlap)
                want = oracle(cron, zone, start, end, dst_gap, dst_overlap)
                assert got == want, _first_difference(cron.text, zone_name, dst_gap, dst_overlap, got, want)


def _fires(text: str, zone: tzinfo, start: datetime, end: datetime, dst_gap: str, dst_overlap: str) -> list[datetime]:
    spec = parse_cron(text)
    return [
        f.astimezone(UTC)
        for f in spec.fires_between(
            start.astimezone(zone), end.astimezone(zone), dst_gap=dst_gap, dst_overlap=dst_overlap
        )
    ]


def _first_difference(
    text: str, zone: str, dst_gap: str, dst_overlap: str, got: list[datetime], want: list[datetime]
) -> str:
    for index, (a, b) in enumerate(zip(got, want, strict=False)):
        if a != b:
            return f"{text} in {zone} ({dst_gap}, {dst_overlap}): firing {index}: got {a}, the oracle {b}"
    return f"{text} in {zone} ({dst_gap}, {dst_overlap}): {len(got)} firings, the oracle {len(want)}"


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


@settings(max_examples=150, deadline=None)
@given(text=CRONS, moment=MOMENTS)
def test_next_after_is_later_and_matches(text: str, moment: datetime) -> None:
    spec = _spec(text)
    fire = spec.next_after(moment)
    assert fire.astimezone(UTC) > moment.astimezone(UTC)
    assert fire.tzinfo is moment.tzinfo
    assert spec.matches(fire) or (not spec.interval and _shifted_here(spec, fire))
    # Nothing was skipped: the oracle's first firing is the same, when that is cheap to check.
    if fire.astimezone(UTC) - moment.astimezone(UTC) <= timedelta(days=2):
        zone = moment.tzinfo
        assert isinstance(zone, ZoneInfo) or zone is UTC
        end = fire.astimezone(UTC)
        expected = oracle(Matcher.of(spec), zone, moment.astimezone(UTC), end)  # type: ignore[arg-type]
        assert expected[:1] == [end], f"{text} after {moment.isoformat()}: {expected[:1]} != {end}"


@settings(max_examples=100, deadline=None)
@given(text=CRONS, moment=MOMENTS)
def test_fires_between_is_strictly_increasing(text: str, moment: datetime) -> None:
    spec = _spec(text)
    fires = [f.astimezone(UTC) for f in spec.fires_between(moment, moment + timedelta(days=3))]
    assert fires == sorted(set(fires))
    assert all(f > moment.astimezone(UTC) for f in fires)
