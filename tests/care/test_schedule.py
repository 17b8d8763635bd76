"""When care comes due: Feb 29, local midnight, DST gaps and overlaps, offsets, bad dates (pure engine)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from flowctl.engine.care import firings, scan
from flowctl.spec import model as m
from tests.care.conftest import care_yaml, contact, make_bundle

UTC = ZoneInfo("UTC")


def process(tmp_path: Path, when: str, tz: str = "Asia/Ho_Chi_Minh", **policy: str) -> tuple[m.CareProcess, ZoneInfo]:
    text = care_yaml(when=when)
    for key, value in policy.items():
        text = text.replace(f"  {key}: ", f"  {key}: {value}  # was: ")
    bundle = make_bundle(tmp_path / "cfg", text, tz=tz)
    return bundle.care["birthday"], ZoneInfo(tz)


def fire_times(proc: m.CareProcess, tz: ZoneInfo, born: str, start: str, days: int) -> list[str]:
    begin = datetime.fromisoformat(start).replace(tzinfo=tz)
    return [
        f"{f.at.isoformat()} {f.occurrence}"
        for f in firings(proc, contact("1", birthday=born), begin, begin + timedelta(days=days), tz)
    ]


@pytest.mark.parametrize(
    ("policy", "year", "expected"),
    [
        ("feb28", 2027, "2027-02-28T08:00:00+07:00 2027-02-28"),
        ("mar1", 2027, "2027-03-01T08:00:00+07:00 2027-03-01"),
        ("feb28", 2028, "2028-02-29T08:00:00+07:00 2028-02-29"),
        ("mar1", 2028, "2028-02-29T08:00:00+07:00 2028-02-29"),
    ],
)
def test_feb29_birthdays_follow_the_policy_in_leap_and_other_years(
    tmp_path: Path, policy: str, year: int, expected: str
) -> None:
    proc, tz = process(tmp_path, '{anniversary_of: birthday, at: "08:00"}', feb29=policy)
    assert fire_times(proc, tz, "1992-02-29", f"{year}-02-01T00:00", 60) == [expected]


def test_a_birthday_at_local_midnight_is_the_local_day_not_the_utc_one(tmp_path: Path) -> None:
    proc, tz = process(tmp_path, '{anniversary_of: birthday, at: "00:00"}')
    # 2026-03-02 00:00 in Ho Chi Minh City is 2026-03-01 17:00 UTC
    found = list(
        firings(
            proc,
            contact("1", birthday="1990-03-02"),
            datetime(2026, 3, 1, 16, 59, tzinfo=UTC),
            datetime(2026, 3, 1, 17, 0, tzinfo=UTC),
            tz,
        )
    )
    assert [(f.at.astimezone(UTC).isoformat(), f.occurrence) for f in found] == [
        ("2026-03-01T17:00:00+00:00", "2026-03-02")
    ]
    # one second before local midnight nothing is due yet
    assert not list(
        firings(
            proc,
            contact("1", birthday="1990-03-02"),
            datetime(2026, 3, 1, 16, 0, tzinfo=UTC),
            datetime(2026, 3, 1, 16, 59, 59, tzinfo=UTC),
            tz,
        )
    )


# (zone, birthday on the change day, wall time inside the gap, what "shift" gives)
GAPS = [
    ("Europe/Berlin", "1990-03-29", "02:30", "2026-03-29T03:30:00+02:00"),
    ("America/New_York", "1990-03-08", "02:30", "2026-03-08T03:30:00-04:00"),
    ("Australia/Lord_Howe", "1990-10-04", "02:15", "2026-10-04T02:45:00+11:00"),  # a 30-minute shift
]
# (zone, birthday on the change day, wall time that happens twice, first, second)
OVERLAPS = [
    ("Europe/Berlin", "1990-10-25", "02:30", "2026-10-25T02:30:00+02:00", "2026-10-25T02:30:00+01:00"),
    ("America/New_York", "1990-11-01", "01:30", "2026-11-01T01:30:00-04:00", "2026-11-01T01:30:00-05:00"),
    ("Australia/Lord_Howe", "1990-04-05", "01:45", "2026-04-05T01:45:00+11:00", "2026-04-05T01:45:00+10:30"),
]


@pytest.mark.parametrize(("zone", "born", "at", "shifted"), GAPS)
def test_dst_gap_shift_runs_after_the_gap_and_skip_does_not_run(
    tmp_path: Path, zone: str, born: str, at: str, shifted: str
) -> None:
    day = born.replace("1990", "2026")
    proc, tz = process(tmp_path / "shift", f'{{anniversary_of: birthday, at: "{at}"}}', tz=zone, dst_gap="shift")
    assert fire_times(proc, tz, born, f"{day}T00:00", 1) == [f"{shifted} {day}"]
    proc, tz = process(tmp_path / "skip", f'{{anniversary_of: birthday, at: "{at}"}}', tz=zone, dst_gap="skip")
    assert fire_times(proc, tz, born, f"{day}T00:00", 1) == []
    # the day after, the same wall time exists again
    next_year = fire_times(proc, tz, born, f"{day}T00:00", 366)
    assert len(next_year) == 1 and next_year[0].endswith(born.replace("1990", "2027"))


@pytest.mark.parametrize(("zone", "born", "at", "first", "second"), OVERLAPS)
def test_dst_overlap_once_or_twice(tmp_path: Path, zone: str, born: str, at: str, first: str, second: str) -> None:
    day = born.replace("1990", "2026")
    proc, tz = process(tmp_path / "once", f'{{anniversary_of: birthday, at: "{at}"}}', tz=zone, dst_overlap="once")
    assert fire_times(proc, tz, born, f"{day}T00:00", 1) == [f"{first} {day}"]
    proc, tz = process(tmp_path / "twice", f'{{anniversary_of: birthday, at: "{at}"}}', tz=zone, dst_overlap="twice")
    assert fire_times(proc, tz, born, f"{day}T00:00", 1) == [f"{first} {day}", f"{second} {day}#2"]


def test_offset_moves_the_wall_time_across_midnight(tmp_path: Path) -> None:
    proc, tz = process(tmp_path, '{anniversary_of: birthday, offset: -1d12h, at: "08:00"}')
    # 08:00 on 2026-03-10 minus 1 day 12 hours is 20:00 on 2026-03-08
    assert fire_times(proc, tz, "1990-03-10", "2026-03-01T00:00", 30) == ["2026-03-08T20:00:00+07:00 2026-03-10"]


def test_one_time_date_with_offset_fires_once(tmp_path: Path) -> None:
    proc, tz = process(tmp_path, '{date: renewal, offset: -7d, at: "09:00"}')
    begin = datetime(2026, 1, 1, tzinfo=tz)
    found = list(firings(proc, contact("1", renewal="2026-06-30"), begin, begin + timedelta(days=3 * 365), tz))
    assert [(f.at.isoformat(), f.occurrence) for f in found] == [("2026-06-23T09:00:00+07:00", "2026-06-30")]


def test_records_without_a_usable_date_are_skipped_and_counted(tmp_path: Path) -> None:
    proc, tz = process(tmp_path, '{anniversary_of: birthday, at: "08:00"}')
    records = [
        contact("1", birthday="1990-03-02"),
        contact("2"),
        contact("3", birthday="không rõ"),
        contact("4", birthday="31/02/1990"),
        contact("5", birthday=""),
        contact("6", birthday="02/03/1985"),
    ]
    begin = datetime(2026, 3, 2, tzinfo=tz)
    found, undated = scan(proc, records, begin, begin + timedelta(days=1), tz)
    assert [f.record_id for f in found] == ["1", "6"]
    assert undated == ["2", "3", "4", "5"]


def test_cron_is_dst_aware(tmp_path: Path) -> None:
    """A fixed-time cron in a gap shifts by the gap's length, as an anniversary at that wall time does."""
    proc, tz = process(tmp_path, '{cron: "30 2 * * *"}', tz="Europe/Berlin")
    begin = datetime(2026, 3, 28, 12, tzinfo=tz)
    found = [f.at.isoformat() for f in firings(proc, contact("1"), begin, begin + timedelta(days=2), tz)]
    assert found == ["2026-03-29T03:30:00+02:00", "2026-03-30T02:30:00+02:00"]
    birthday, _ = process(tmp_path / "anniversary", '{anniversary_of: birthday, at: "02:30"}', tz="Europe/Berlin")
    assert [
        f.at for f in firings(birthday, contact("1", birthday="1990-03-29"), begin, begin + timedelta(days=2), tz)
    ] == [datetime.fromisoformat(found[0])]
