"""``flowctl care list|preview|forecast`` on the birthday-care example, with a records file and a database."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from click.testing import CliRunner

from flowctl.cli.main import cli
from flowctl.spec.config import load_bundle
from flowctl.store import open_store
from tests.care.conftest import contact, put_records, scheduler

EXAMPLE = Path(__file__).parents[2] / "examples" / "birthday-care"
RECORDS = """
- {object: contact, id: 1,
   fields: {full_name: Nguyễn Văn Hải, salutation: anh, phone: "0912000001", email: hai@example.com,
            birthday: "1985-05-02", status: active, owner: mai}}
- {object: contact, id: 2, fields: {full_name: Lê Thị Hà, phone: "0912000002", birthday: "1992-02-29", status: active}}
- {object: contact, id: 3, fields: {full_name: Không Ngày, phone: "0912000003", birthday: "không rõ"}}
- {object: contact, id: 4,
   fields: {full_name: Trần Văn Bốn, phone: "0912000004", birthday: "1990-05-02", status: inactive}}
"""


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_forecast_is_stable_text_across_leap_years(tmp_path: Path) -> None:
    records = tmp_path / "contacts.yaml"
    records.write_text(RECORDS, encoding="utf-8")
    forecast = ("care", "forecast", "sinh-nhat-lien-he", str(EXAMPLE), "--from", "2027-01-01", "--days", "730")
    out = run(*forecast, "--records", str(records))
    assert out.splitlines() == [
        "# care forecast sinh-nhat-lien-he: anniversary of birthday at 08:00, feb29 feb28, dst_gap shift, "
        "dst_overlap once; if: record.status != 'inactive'; Asia/Ho_Chi_Minh; 2027-01-01 + 730 days",
        "contact/1  2027-05-02T08:00:00+07:00  2027-05-02",
        "contact/1  2028-05-02T08:00:00+07:00  2028-05-02",
        "contact/2  2027-02-28T08:00:00+07:00  2027-02-28",
        "contact/2  2028-02-29T08:00:00+07:00  2028-02-29",
        "# 4 firings for 2 records",
        "# 2 firings skipped by if: record.status != 'inactive'",
        "#   contact/4  2027-05-02T08:00:00+07:00  2027-05-02",
        "#   contact/4  2028-05-02T08:00:00+07:00  2028-05-02",
        "# 1 records without a usable birthday: contact/3 'không rõ'",
    ]
    again = run(*forecast, "--records", str(records))
    assert again == out


def test_preview_shows_what_would_be_sent_and_sends_nothing(tmp_path: Path) -> None:
    records = tmp_path / "contacts.yaml"
    records.write_text(RECORDS, encoding="utf-8")
    out = run("care", "preview", "sinh-nhat-lien-he", str(EXAMPLE), "--date", "2026-05-02", "--records", str(records))
    assert "2026-05-02T08:00:00+07:00  contact/1  occurrence 2026-05-02: sent" in out
    assert "send_sms via zalo-oa to 0912000001: ZNS template 318542: ten_khach_hang=anh Nguyễn Văn Hải" in out
    assert "send_email via email to hai@example.com: Chúc mừng sinh nhật anh Nguyễn Văn Hải" in out
    assert "contact/4  occurrence 2026-05-02: skipped" in out
    assert "skipped: 1 records without a usable birthday: contact/3 'không rõ'" in out


def test_list_and_preview_against_a_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'care.db'}"
    store = open_store(url)
    put_records(
        store,
        contact("1", birthday="1985-05-02", status="active", email="a@example.com"),
        contact("2", birthday="1990-05-02", status="inactive"),
    )
    loaded = load_bundle(EXAMPLE)
    assert loaded.bundle is not None
    at = datetime(2026, 5, 2, 8, 0, tzinfo=ZoneInfo("Asia/Ho_Chi_Minh"))
    scheduler(store, loaded.bundle, at).tick(at)
    store.close()
    out = run("care", "list", str(EXAMPLE), "--db", url)
    line = next(line for line in out.splitlines() if line.startswith("sinh-nhat-lien-he"))
    assert line.split()[:5] == ["sinh-nhat-lien-he", "contact", "enabled", "1", "2026-05-02T08:00:00+07:00"]
    assert " 1       1      0  anniversary of birthday at 08:00" in line
    assert "disabled" in next(line for line in out.splitlines() if line.startswith("chuc-mung-20-10"))
    preview = run("care", "preview", "sinh-nhat-lien-he", str(EXAMPLE), "--date", "2027-05-02", "--db", url)
    assert "2 firings; nothing is sent" in preview
    store = open_store(url)
    assert len(store.list_outbox(limit=100)) == 2  # the tick's SMS and email only: preview sent nothing
    store.close()


def test_w001_states_every_defaulted_policy(tmp_path: Path) -> None:
    (tmp_path / "flowctl.yaml").write_text(
        "apiVersion: flowctl/v1\nkind: Config\nmetadata: {name: c}\nspec: {timezone: Europe/Berlin}\n---\n"
        "apiVersion: flowctl/v1\nkind: ObjectType\nmetadata: {name: contact}\nspec: {fields: {birthday: {type: date}}}\n"  # noqa: E501
        "---\napiVersion: flowctl/v1\nkind: CareProcess\nmetadata: {name: b}\nspec:\n  object: contact\n"
        '  when: {anniversary_of: birthday, at: "02:30"}\n  actions: [{action: send_sms, text: hi, to: "1"}]\n',
        encoding="utf-8",
    )
    messages = [i.message for i in load_bundle(tmp_path).issues if i.code == "W001"]
    text = "\n".join(messages)
    assert "on_missed not set: defaults to catch_up with grace 24h" in text
    assert "feb29 not set: anniversaries on 29 February fall on 28 February" in text
    assert "dst_gap/dst_overlap not set" in text and "Europe/Berlin" in text


def test_shift_means_one_thing_in_the_hint_the_schema_and_the_behaviour(tmp_path: Path) -> None:
    """dst_gap: shift moves a wall time by the gap's length (02:30 → 03:30 in Berlin), not to the first
    time after the gap (03:00): the W001 hint and the schema say what the engine does."""
    from datetime import timedelta

    from flowctl.engine.care import firings
    from flowctl.spec.schema import BUNDLE_FILE, load_schema
    from tests.care.conftest import care_yaml, make_bundle

    (tmp_path / "flowctl.yaml").write_text(
        "apiVersion: flowctl/v1\nkind: Config\nmetadata: {name: c}\nspec: {timezone: Europe/Berlin}\n---\n"
        "apiVersion: flowctl/v1\nkind: ObjectType\nmetadata: {name: contact}\nspec: {fields: {birthday: {type: date}}}\n"  # noqa: E501
        "---\napiVersion: flowctl/v1\nkind: CareProcess\nmetadata: {name: b}\nspec:\n  object: contact\n"
        '  when: {anniversary_of: birthday, at: "02:30"}\n  actions: [{action: send_sms, text: hi, to: "1"}]\n',
        encoding="utf-8",
    )
    hint = next(f"{i.message} {i.hint}" for i in load_bundle(tmp_path).issues if "dst_gap" in i.message)
    assert "as much later as the gap is long" in hint and "02:30 → 03:30" in hint and "first time after" not in hint
    for name in ("careprocess.schema.json", BUNDLE_FILE):
        text = str(load_schema(name))
        assert "as much later as the gap is long (02:30 → 03:30" in text and "just after" not in text, name
    bundle = make_bundle(tmp_path / "b", care_yaml(when='{anniversary_of: birthday, at: "02:30"}'), tz="Europe/Berlin")
    tz = ZoneInfo("Europe/Berlin")
    begin = datetime(2027, 3, 28, tzinfo=tz)
    found = firings(bundle.care["birthday"], contact("1", birthday="1990-03-28"), begin, begin + timedelta(days=1), tz)
    assert [f.at.isoformat() for f in found] == ["2027-03-28T03:30:00+02:00"]


def test_no_dst_warning_for_an_interval_cron(tmp_path: Path) -> None:
    """An interval cron fires by the clock through a change: dst_gap/dst_overlap cannot matter."""
    head = (
        "apiVersion: flowctl/v1\nkind: Config\nmetadata: {name: c}\nspec: {timezone: Europe/Berlin}\n---\n"
        "apiVersion: flowctl/v1\nkind: ObjectType\nmetadata: {name: contact}\nspec: {fields: {n: {type: string}}}\n"
    )
    for cron, warned in (("*/30 * * * *", False), ("0 * * * *", False), ("30 2 * * *", True)):
        (tmp_path / "flowctl.yaml").write_text(
            head + "---\napiVersion: flowctl/v1\nkind: CareProcess\nmetadata: {name: b}\nspec:\n  object: contact\n"
            f'  when: {{cron: "{cron}"}}\n  on_missed: skip\n  actions: [{{action: send_sms, text: hi, to: "1"}}]\n',
            encoding="utf-8",
        )
        assert any("dst_gap" in i.message for i in load_bundle(tmp_path).issues) is warned, cron


def test_the_care_limit_per_object_is_configurable(tmp_path: Path) -> None:
    care = "".join(
        f"---\napiVersion: flowctl/v1\nkind: CareProcess\nmetadata: {{name: p{i}}}\nspec:\n  object: contact\n"
        f"  when: {{cron: '0 9 * * *'}}\n  on_missed: skip\n  actions: [{{action: send_sms, text: hi, to: '1'}}]\n"
        for i in range(3)
    )
    (tmp_path / "flowctl.yaml").write_text(
        "apiVersion: flowctl/v1\nkind: Config\nmetadata: {name: c}\nspec: {timezone: UTC, limits: "
        "{care_processes_per_object: 2}}\n---\napiVersion: flowctl/v1\nkind: ObjectType\nmetadata: {name: contact}\n"
        "spec: {fields: {birthday: {type: date}}}\n" + care,
        encoding="utf-8",
    )
    errors = [i for i in load_bundle(tmp_path).issues if i.code == "E070"]
    assert len(errors) == 1 and "enabled care process 3 of 3" in errors[0].message and "at most 2" in errors[0].message
