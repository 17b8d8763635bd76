"""What a tick reads and writes: only the days that fire, skips in the log, cron by id, one commit
per occurrence even when another replica gets there between the look and the write."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from flowctl.engine.care import candidate_days, day_instants, firings, firings_on
from flowctl.engine.state import Record, Run, Step
from flowctl.ports import CareOccurrence, Processed, Store
from tests.care.conftest import care_yaml, contact, make_bundle, put_records, scheduler

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=TZ)


class Spy:
    """A store that records the care reads a tick makes, and can hide the ledger once (the view of
    a replica that looked just before another one committed)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.month_days: list[list[int]] = []
        self.read: list[str] = []
        self.listed = 0
        self.blind = 0  # care_done calls that see an empty ledger

    def care_records(
        self, object: str, field: str, month_days: Sequence[int], on_dates: Sequence[str] = ()
    ) -> list[Record]:
        self.month_days.append(sorted(month_days))
        found = self.store.care_records(object, field, month_days, on_dates)
        self.read += [r.id for r in found]
        return found

    def list_records(self, *args: Any, **kwargs: Any) -> list[Record]:
        self.listed += 1
        return self.store.list_records(*args, **kwargs)

    def care_done(self, keys: Sequence[tuple[str, str, str, str]]) -> set[tuple[str, str, str, str]]:
        if self.blind:
            self.blind -= 1
            return set()
        return self.store.care_done(keys)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def texts(store: Store) -> list[tuple[str, str]]:
    return sorted((row.record_id, str(row.payload.get("text"))) for row in store.list_outbox(limit=1000))


def test_a_tick_reads_only_the_records_of_the_day_that_fires(tmp_path: Path, open_stores: Callable[[], Store]) -> None:
    spy = Spy(open_stores())
    bundle = make_bundle(tmp_path, care_yaml())
    put_records(spy.store, *[contact(str(n), birthday=f"1990-03-0{n}") for n in range(1, 6)])
    report = scheduler(spy, bundle, T0).tick(T0)  # type: ignore[arg-type]
    assert report.outcomes == {"sent": 1}
    assert spy.month_days == [[302]] and spy.read == ["2"]  # not the days either side


def test_the_day_instants_give_the_same_firings_as_the_record_by_record_path(tmp_path: Path) -> None:
    cases = [
        ("Europe/Berlin", '{anniversary_of: birthday, at: "02:30"}', "2026-03-28T12:00", 2),
        ("Europe/Berlin", '{anniversary_of: birthday, at: "02:30"}', "2026-10-24T12:00", 2),
        ("America/New_York", '{anniversary_of: birthday, offset: -1d12h, at: "08:00"}', "2026-03-06T00:00", 3),
        ("Australia/Lord_Howe", '{anniversary_of: birthday, at: "02:15"}', "2026-10-03T00:00", 2),
        ("Asia/Ho_Chi_Minh", '{anniversary_of: birthday, at: "00:00"}', "2027-02-27T00:00", 3),
        ("Asia/Ho_Chi_Minh", '{date: renewal, offset: 7d, at: "09:00"}', "2026-03-01T00:00", 3),
    ]
    born = [
        "1992-02-29",
        "1990-02-28",
        "1990-03-01",
        "1990-03-29",
        "1990-10-25",
        "1990-10-04",
        "1990-03-07",
        "2026-02-24",
        "2026-02-25",
        "2030-03-01",
        "01/03/1990",
        "?",
        "",
    ]
    for n, ((zone, when, start, days), gap, overlap, feb29) in enumerate(
        itertools.product(cases, ("shift", "skip"), ("once", "twice"), ("feb28", "mar1"))
    ):
        text = (
            care_yaml(when=when)
            .replace("dst_gap: shift", f"dst_gap: {gap}")
            .replace("dst_overlap: once", f"dst_overlap: {overlap}")
            .replace("feb29: feb28", f"feb29: {feb29}")
        )
        process = make_bundle(tmp_path / str(n), text, tz=zone).care["birthday"]
        tz = ZoneInfo(zone)
        begin = datetime.fromisoformat(start).replace(tzinfo=tz)
        for hours in range(0, days * 24, 5):
            lo, hi = begin + timedelta(hours=hours), begin + timedelta(hours=hours + 5)
            instants = day_instants(process, candidate_days(process, lo, hi, tz), lo, hi, tz)
            for value in born:
                record = contact("1", birthday=value, renewal=value)
                assert firings_on(process, record, instants) == list(firings(process, record, lo, hi, tz)), (
                    zone,
                    when,
                    gap,
                    overlap,
                    feb29,
                    lo,
                    value,
                )


def test_skips_are_logged_one_line_per_process(
    tmp_path: Path, open_stores: Callable[[], Store], caplog: pytest.LogCaptureFixture
) -> None:
    store = open_stores()
    berlin = make_bundle(
        tmp_path / "berlin",
        care_yaml(name="gap", when='{anniversary_of: birthday, at: "02:30"}').replace("dst_gap: shift", "dst_gap: skip")
        + "---\n"
        + care_yaml(name="leap"),
        tz="Europe/Berlin",
    )
    put_records(
        store,
        contact("1", birthday="1990-03-29"),
        contact("2", birthday="1992-02-29"),
        contact("3", birthday="không rõ"),
        contact("4"),
        contact("5", birthday="1990-02-28"),
    )
    tz = ZoneInfo("Europe/Berlin")
    care = scheduler(store, berlin, T0)
    with caplog.at_level(logging.INFO, logger="flowctl.care"):
        gap = care.tick(datetime(2026, 3, 29, 3, 31, tzinfo=tz))  # 02:30 does not exist that night
        leap = care.tick(datetime(2027, 2, 28, 8, 0, tzinfo=tz))  # 29 Feb runs on 28 Feb in 2027
    assert gap.processes["gap"].dst_gap == 1 and gap.outcomes == {}
    assert (gap.processes["gap"].undated, gap.processes["gap"].records) == (2, 5)
    assert leap.processes["leap"].feb29 == 1 and leap.processes["leap"].outcomes == {"sent": 2}
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("care: gap at 2026")]
    assert len(lines) == 1
    assert "0 due (none run here); skipped: 2 without a usable date (of 5 records), 1 at a wall time" in lines[0]
    leap_line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("care: leap at 2027"))
    assert "2 due (sent 2)" in leap_line and "1 born on 29 February run on another day" in leap_line


def test_the_undated_count_is_taken_once_a_day(tmp_path: Path, open_stores: Callable[[], Store]) -> None:
    store = open_stores()
    put_records(store, contact("1", birthday="1990-03-02"), contact("2"))
    counts = []

    class Counting(Spy):
        def care_undated(self, object: str, field: str) -> tuple[int, int]:
            counts.append((object, field))
            return self.store.care_undated(object, field)

    care = scheduler(Counting(store), make_bundle(tmp_path, care_yaml()), T0)  # type: ignore[arg-type]
    for minutes in (0, 1, 2, 24 * 60):
        care.tick(T0 + timedelta(minutes=minutes))
    assert counts == [("contact", "birthday")] * 2  # today, then tomorrow


def test_a_cron_process_reads_ids_page_by_page(tmp_path: Path, open_stores: Callable[[], Store]) -> None:
    spy = Spy(open_stores())
    bundle = make_bundle(tmp_path, care_yaml(when='{cron: "0 9 * * *"}'))
    put_records(spy.store, *[contact(str(n)) for n in range(1, 6)])
    put_records(spy.store, replace(contact("3"), deleted=True))
    care = scheduler(spy, bundle, T0)  # type: ignore[arg-type]
    care.page, care.since = 2, T0 - timedelta(minutes=1)  # running since before
    assert care.tick(T0).found == 0  # the cron has not fired: nothing read
    report = care.tick(T0 + timedelta(hours=1))
    assert (report.found, report.outcomes) == (4, {"sent": 4})
    assert spy.listed == 0 and spy.read == []  # ids only; the engine reads the records it runs
    assert [r for r, _ in texts(spy.store)] == ["1", "2", "4", "5"]
    assert care.tick(T0 + timedelta(hours=1, minutes=1)).found == 0


def test_an_occurrence_another_replica_commits_first_is_not_written_twice(
    tmp_path: Path, open_stores: Callable[[], Store]
) -> None:
    spy = Spy(open_stores())
    bundle = make_bundle(tmp_path, care_yaml())
    put_records(spy.store, contact("1", birthday="1990-03-02"), contact("2", birthday="1990-03-02"))
    other = CareOccurrence(
        process="birthday", object="contact", record_id="1", occurrence="2026-03-02", status="sent", config_version="v1"
    )
    assert spy.store.insert_care([(other, Processed(step=Step()))], "b", T0)  # replica b, after our look
    spy.blind = 1
    report = scheduler(spy, bundle, T0).tick(T0)  # type: ignore[arg-type]
    assert (report.found, report.committed, report.outcomes) == (2, 1, {"sent": 1})
    assert texts(spy.store) == [("2", "Chuc mung sinh nhat Khach 2")]  # ours for 1 was dropped whole
    assert spy.store.care_summary("birthday").counts == {"sent": 2}
    # and a second insert of the same occurrence changes nothing
    assert not spy.store.insert_care([(other, Processed(step=Step()))], "c", T0)


def test_a_care_run_left_without_its_ledger_row_is_written_over(
    tmp_path: Path, open_stores: Callable[[], Store]
) -> None:
    """An operator who deletes ledger rows to run a day again gets it run again (on PostgreSQL the
    fast COPY path meets the old run row and the transaction is written the usual way)."""
    store = open_stores()
    put_records(store, contact("1", birthday="1990-03-02"))
    old = Run(
        id="care:birthday:contact:1:2026-03-02",
        automation="care:birthday",
        object="contact",
        record_id="1",
        status="done",
        node="actions",
        started_at="x",
        updated_at="x",
        config_version="v0",
    )
    store.commit_batch([Processed(step=Step(runs={old.id: old}))], T0)
    report = scheduler(store, make_bundle(tmp_path, care_yaml()), T0).tick(T0)
    assert report.outcomes == {"sent": 1}
    run = store.run(old.id)
    assert run is not None and run.config_version == "v1" and run.status == "done"
    assert len(store.list_outbox()) == 1


def test_a_later_batch_sees_what_an_earlier_one_wrote(tmp_path: Path, open_stores: Callable[[], Store]) -> None:
    store = open_stores()
    first = care_yaml(
        name="first", extra="priority: 1\n", actions='    - {action: update_fields, set: {note: "da goi"}}'
    )
    second = care_yaml(
        name="second",
        extra="priority: 2\n",
        actions='    - {action: send_sms, text: "note={{ record.note }}", to: "1"}',
    )
    put_records(store, contact("1", birthday="1990-03-02", note="chua"))
    care = scheduler(store, make_bundle(tmp_path, first + "---\n" + second), T0)
    care.batch = 1  # each occurrence in a transaction of its own
    assert care.tick(T0).outcomes == {"sent": 2}
    assert texts(store) == [("1", "note=da goi")]
