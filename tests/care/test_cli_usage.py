"""`flowctl care ...` as a user and CI meet it: impossible dates in a records file, bad options
(exit 2, no traceback), the config's database, times with their UTC offset, `--format json`."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner, Result

from flowctl.cli.main import cli
from flowctl.spec.config import load_bundle
from flowctl.store import open_store
from tests.care.conftest import care_yaml, contact, make_bundle, put_records, scheduler

EXAMPLE = Path(__file__).parents[2] / "examples" / "birthday-care"
# docs/care.md's own example (a plain YAML date that does not exist), and a contact who is inactive
RECORDS = """\
- {object: contact, id: 1, fields: {birthday: 1990-02-29}, owner: lan}
- {object: contact, id: 2, fields: {full_name: Hà, phone: "0912000002", birthday: 1992-05-02, status: active}}
- {object: contact, id: 3, fields: {full_name: Bốn, phone: "0912000004", birthday: 1990-05-02, status: inactive}}
"""


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def ok(*args: str) -> str:
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.output


@pytest.fixture
def records(tmp_path: Path) -> Path:
    path = tmp_path / "contacts.yaml"
    path.write_text(RECORDS, encoding="utf-8")
    return path


def test_forecast_skips_and_lists_an_impossible_date_and_applies_if(records: Path) -> None:
    out = ok(
        "care",
        "forecast",
        "sinh-nhat-lien-he",
        str(EXAMPLE),
        "--from",
        "2027-05-01",
        "--days",
        "2",
        "--records",
        str(records),
    )
    lines = out.splitlines()
    assert "if: record.status != 'inactive'" in lines[0]
    assert "contact/2  2027-05-02T08:00:00+07:00  2027-05-02" in lines
    assert not any(line.startswith("contact/3 ") for line in lines), out  # its if: is false
    assert "# 1 firings for 1 records" in lines
    assert "# 1 firings skipped by if: record.status != 'inactive'" in lines
    assert "#   contact/3  2027-05-02T08:00:00+07:00  2027-05-02" in lines
    assert "# 1 records without a usable birthday: contact/1 '1990-02-29'" in lines


def test_preview_reads_the_docs_example_too(records: Path) -> None:
    out = ok("care", "preview", "sinh-nhat-lien-he", str(EXAMPLE), "--date", "2027-05-02", "--records", str(records))
    assert "2027-05-02T08:00:00+07:00  contact/2  occurrence 2027-05-02: sent" in out
    assert "skipped: 1 records without a usable birthday: contact/1 '1990-02-29'" in out


def test_forecast_lists_what_dst_gap_skip_drops(tmp_path: Path) -> None:
    text = care_yaml(when='{anniversary_of: birthday, at: "02:30"}').replace("dst_gap: shift", "dst_gap: skip")
    make_bundle(tmp_path / "cfg", text, tz="America/New_York")
    records = tmp_path / "r.yaml"
    records.write_text("- {object: contact, id: 7, fields: {birthday: 1990-03-14}}\n", encoding="utf-8")
    out = ok(
        "care",
        "forecast",
        "birthday",
        str(tmp_path / "cfg"),
        "--from",
        "2027-03-01",
        "--days",
        "800",
        "--records",
        str(records),
    )
    lines = out.splitlines()
    assert lines[1:3] == [
        "contact/7  2028-03-14T02:30:00-04:00  2028-03-14",
        "contact/7  2029-03-14T02:30:00-04:00  2029-03-14",
    ]
    assert "# 1 firings not run: their wall time does not exist (dst_gap: skip); shift would run them at:" in lines
    assert "#   contact/7  2027-03-14T03:30:00-04:00  2027-03-14" in lines


def test_forecast_lists_the_firings_whose_if_fails(tmp_path: Path) -> None:
    text = care_yaml(when='{anniversary_of: birthday, at: "08:00"}', extra='if: "record.note > 5"\n')
    make_bundle(tmp_path / "cfg", text)
    records = tmp_path / "r.yaml"
    records.write_text(
        "- {object: contact, id: 1, fields: {birthday: 1990-03-14, note: abc}}\n"
        "- {object: contact, id: 2, fields: {birthday: 1990-03-14, note: '9'}}\n",
        encoding="utf-8",
    )
    out = ok(
        "care",
        "forecast",
        "birthday",
        str(tmp_path / "cfg"),
        "--from",
        "2027-03-14",
        "--days",
        "1",
        "--records",
        str(records),
    )
    assert "# 0 firings for 0 records" in out
    assert "# 2 firings whose if: fails (such a run fails)" in out
    assert (
        "#   contact/1  2027-03-14T08:00:00+07:00  2027-03-14: '>' not supported between instances of 'str' and 'int'"
        in out
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["preview", "sinh-nhat-lien-he", str(EXAMPLE), "--date", "2027-13-01", "--records", "{records}"],
            "Invalid value for '--date': '2027-13-01' is not a date: month must be in 1..12",
        ),
        (
            ["forecast", "sinh-nhat-lien-he", str(EXAMPLE), "--from", "2027-13-01"],
            "Invalid value for '--from': '2027-13-01' is not a date: month must be in 1..12",
        ),
        (
            ["forecast", "sinh-nhat-lien-he", str(EXAMPLE), "--from", "yesterday"],
            "Invalid value for '--from': 'yesterday' is not a date: write YYYY-MM-DD",
        ),
        (["forecast", "nobody", str(EXAMPLE), "--from", "2027-01-01"], "no care process 'nobody'"),
        (["preview", "sinh-nhat-lien-he", str(EXAMPLE), "--records", "{bad}"], "item 1: needs 'object' and 'id'"),
        (
            ["preview", "sinh-nhat-lien-he", str(EXAMPLE), "--records", "{records}", "--db", "sqlite:///x.db"],
            "give --records FILE or --db URL, not both",
        ),
        (["list", str(EXAMPLE), "--format", "yaml"], "Invalid value for '--format'"),
    ],
)
def test_bad_options_are_usage_errors(tmp_path: Path, records: Path, args: list[str], message: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("- {fields: {birthday: 1990-01-01}}\n", encoding="utf-8")
    result = invoke("care", *(a.format(records=records, bad=bad) for a in args))
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """The birthday-care example with its own database (``database: sqlite:///birthday-care.db``),
    where a tick ran on 2026-05-02 at 08:00."""
    root = tmp_path / "birthday-care"
    shutil.copytree(EXAMPLE, root)
    store = open_store(f"sqlite:///{root / 'birthday-care.db'}")
    put_records(
        store,
        contact("1", birthday="1985-05-02", status="active", email="a@example.com"),
        contact("2", birthday="1990-05-02", status="inactive"),
    )
    loaded = load_bundle(root)
    assert loaded.bundle is not None
    at = datetime(2026, 5, 2, 8, 0, tzinfo=ZoneInfo("Asia/Ho_Chi_Minh"))
    scheduler(store, loaded.bundle, at).tick(at)
    store.close()
    return root


def test_list_reads_the_configs_database_and_prints_times_with_their_offset(config_dir: Path, tmp_path: Path) -> None:
    out = ok("care", "list", str(config_dir))
    line = next(line for line in out.splitlines() if line.startswith("sinh-nhat-lien-he"))
    assert line.split()[:5] == ["sinh-nhat-lien-he", "contact", "enabled", "1", "2026-05-02T08:00:00+07:00"]
    assert datetime.fromisoformat(line.split()[5]).utcoffset() is not None  # the next run, with its offset
    assert " 1       1      0  anniversary of birthday at 08:00" in line
    # --db overrides the config's database: an empty one has no last run
    other = ok("care", "list", str(config_dir), "--db", f"sqlite:///{tmp_path / 'other.db'}")
    line = next(line for line in other.splitlines() if line.startswith("sinh-nhat-lien-he"))
    assert line.split()[4] == "-"


def test_preview_reads_the_configs_database(config_dir: Path) -> None:
    out = ok("care", "preview", "sinh-nhat-lien-he", str(config_dir), "--date", "2027-05-02")
    assert "2 firings; nothing is sent" in out
    assert "2027-05-02T08:00:00+07:00  contact/1  occurrence 2027-05-02: sent" in out


def test_every_care_command_prints_json(config_dir: Path, records: Path) -> None:
    listed = json.loads(ok("care", "list", str(config_dir), "--format", "json"))
    first = next(p for p in listed if p["name"] == "sinh-nhat-lien-he")
    assert first["last_run"] == "2026-05-02T08:00:00+07:00"
    assert first["counts"] == {"sent": 1, "skipped": 1, "failed": 0}
    assert first["when"] == {"anniversary_of": "birthday", "at": "08:00"} and first["enabled"] is True
    assert datetime.fromisoformat(first["next_run"]).utcoffset() is not None

    previewed = json.loads(
        ok(
            "care",
            "preview",
            "sinh-nhat-lien-he",
            str(EXAMPLE),
            "--date",
            "2027-05-02",
            "--records",
            str(records),
            "--format",
            "json",
        )
    )
    assert [(f["id"], f["at"], f["outcome"]) for f in previewed["firings"]] == [
        ("2", "2027-05-02T08:00:00+07:00", "sent"),
        ("3", "2027-05-02T08:00:00+07:00", "skipped"),
    ]
    assert previewed["undated"] == [{"object": "contact", "id": "1", "value": "1990-02-29"}]
    assert {"action": "send_sms", "channel": "zalo-oa", "to": "0912000002"}.items() <= previewed["firings"][0][
        "effects"
    ][0].items()

    forecast = json.loads(
        ok(
            "care",
            "forecast",
            "sinh-nhat-lien-he",
            str(EXAMPLE),
            "--from",
            "2027-05-01",
            "--days",
            "2",
            "--records",
            str(records),
            "--format",
            "json",
        )
    )
    assert forecast["firings"] == [
        {"object": "contact", "id": "2", "at": "2027-05-02T08:00:00+07:00", "occurrence": "2027-05-02"}
    ]
    assert [f["id"] for f in forecast["skipped_by_if"]] == ["3"]
    assert forecast["undated"] == [{"object": "contact", "id": "1", "value": "1990-02-29"}]
    assert forecast["timezone"] == "Asia/Ho_Chi_Minh" and forecast["if"] == "record.status != 'inactive'"
