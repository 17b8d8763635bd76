"""A cron care process around daylight-saving changes: `care forecast`, the simulator behind
`flowctl test` and the daemon's care tick fire at the same instants, by the rules of docs/care.md."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from flowctl.cli.main import cli
from flowctl.engine.simulator import Simulator
from flowctl.store.memory import MemoryStore
from tests.care.conftest import care_yaml, contact, make_bundle, put_records, scheduler

NY = "America/New_York"
RECORDS = "- {object: contact, id: 1, fields: {full_name: An, phone: '0901'}}\n"

# (cron, dst_gap, dst_overlap, the local day, the occurrences of that day)
CASES = [
    ("30 2 * * *", "shift", "once", "2027-03-14", ["2027-03-14T03:30:00-04:00"]),
    ("30 2 * * *", "skip", "once", "2027-03-14", []),
    ("30 1 * * *", "shift", "once", "2027-11-07", ["2027-11-07T01:30:00-04:00"]),
    ("30 1 * * *", "shift", "twice", "2027-11-07", ["2027-11-07T01:30:00-04:00", "2027-11-07T01:30:00-05:00"]),
    (
        "0 * * * *",
        "skip",
        "twice",
        "2027-03-14",  # an interval cron: by the clock, whatever the policies
        [f"2027-03-14T{h:02}:00:00-05:00" for h in (0, 1)] + [f"2027-03-14T{h:02}:00:00-04:00" for h in range(3, 24)],
    ),
]


@pytest.mark.parametrize(("cron", "dst_gap", "dst_overlap", "day", "expected"), CASES)
def test_forecast_simulator_and_daemon_fire_alike(
    tmp_path: Path, cron: str, dst_gap: str, dst_overlap: str, day: str, expected: list[str]
) -> None:
    text = care_yaml(when=f'{{cron: "{cron}"}}').replace("dst_gap: shift", f"dst_gap: {dst_gap}")
    bundle = make_bundle(tmp_path / "cfg", text.replace("dst_overlap: once", f"dst_overlap: {dst_overlap}"), tz=NY)
    tz = ZoneInfo(NY)
    start = datetime.fromisoformat(day).replace(tzinfo=tz)
    end = start + timedelta(days=1) - timedelta(microseconds=1)

    # care forecast
    records = tmp_path / "records.yaml"
    records.write_text(RECORDS, encoding="utf-8")
    result = CliRunner().invoke(
        cli,
        [
            "care",
            "forecast",
            "birthday",
            str(tmp_path / "cfg"),
            "--from",
            day,
            "--days",
            "1",
            "--records",
            str(records),
        ],
    )
    assert result.exit_code == 0, result.output
    forecast = [line.split()[2] for line in result.output.splitlines() if line.startswith("contact/1 ")]

    # the simulator of `flowctl test`
    sim = Simulator(bundle, start - timedelta(hours=1), version="v1")
    sim.seed(contact("1"))
    sim.advance(end)
    simulated = sorted((o for *_, o in sim.state.occurrences), key=datetime.fromisoformat)

    # the daemon: a tick every five minutes through the day
    store = MemoryStore()
    put_records(store, contact("1"))
    care = scheduler(store, bundle, start)
    care.since = now = start - timedelta(microseconds=1)  # as if it had ticked just before midnight

    while now < end:
        now = min(now + timedelta(minutes=5), end)
        care.tick(now)
    daemon = sorted((r.id.split(":", 4)[4] for r in store.list_runs(limit=100)), key=datetime.fromisoformat)

    assert forecast == simulated == daemon == expected
