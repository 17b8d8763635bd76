"""The inspection commands on a live store: every time printed with its offset, in the Config's zone;
``plan`` exit codes; ``replay --since`` in the forms people type."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from tests.gitops.conftest import BASE, NOW, Live, invoke, write

LOCAL = "2026-03-10T10:00:00+07:00"  # NOW in the Config's zone (Asia/Ho_Chi_Minh)
HCM = ZoneInfo("Asia/Ho_Chi_Minh")


def daemon_made(config: Path, live: Live) -> None:
    """A deployed version and a contact handled by a worker whose clock is UTC, as the daemon's is."""
    assert invoke("apply", config, "--db", live.url, "--now", NOW.astimezone(UTC).isoformat()).exit_code == 0
    live.clock.set(NOW.astimezone(UTC))
    live.put("c1", full_name="Lan", phone="0901")


def test_times_are_printed_with_their_offset_in_the_config_zone(config: Path, live: Live) -> None:
    daemon_made(config, live)
    runs = invoke("runs", "list", config, "--db", live.url).output.splitlines()
    assert runs[0].split() == ["RUN", "AUTOMATION", "RECORD", "STATUS", "AT", "NODE", "UPDATED"], runs
    assert runs[1].endswith(f"  {LOCAL}"), runs
    (run,) = json.loads(invoke("runs", "list", config, "--db", live.url, "--format", "json").output)
    assert datetime.fromisoformat(run["started_at"]) == NOW and run["started_at"].endswith("+07:00")
    assert {entry["at"] for entry in run["trace"]} == {LOCAL}
    trace = invoke("runs", "show", run["id"], config, "--db", live.url).output.splitlines()
    assert trace[1].startswith("  ├─ 2026-03-10 10:00:00+07:00 ? trigger: condition"), trace
    outbox = invoke("outbox", "list", config, "--db", live.url).output.splitlines()
    assert outbox[0].startswith("ID  STATUS") and f"  {LOCAL}  " in outbox[1], outbox
    (row,) = json.loads(invoke("outbox", "list", config, "--db", live.url, "--format", "json").output)
    assert row["created_at"] == LOCAL and row["next_attempt_at"] == LOCAL
    history = invoke("history", config, "--db", live.url).output
    assert f"  {LOCAL}  " in history, history
    (version,) = json.loads(invoke("history", config, "--db", live.url, "--format", "json").output)
    assert version["applied_at"] == LOCAL
    plan = invoke("plan", config, "--db", live.url, "--now", NOW.astimezone(UTC).isoformat()).output
    assert f", applied {LOCAL}" in plan, plan
    since, until = (NOW - timedelta(hours=1)).astimezone(UTC).isoformat(), (NOW + timedelta(hours=1)).isoformat()
    replay = invoke("replay", config, "--db", live.url, "--since", since, "--until", until).output
    assert replay.startswith("Replay 2026-03-10T09:00:00+07:00 .. 2026-03-10T11:00:00+07:00:"), replay


def test_a_directory_without_config_prints_utc_with_its_offset(config: Path, live: Live, tmp_path: Path) -> None:
    daemon_made(config, live)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    runs = invoke("runs", "list", elsewhere, "--db", live.url).output.splitlines()
    assert runs[1].endswith("  2026-03-10T03:00:00+00:00"), runs


def test_plan_exits_0_when_only_comments_changed(config: Path, live: Live) -> None:
    daemon_made(config, live)
    write(config, {"flows/welcome.yaml": "# greets new contacts\n" + BASE["flows/welcome.yaml"]})
    result = invoke("plan", config, "--db", live.url, "--now", NOW.isoformat())
    assert result.exit_code == 0, result.output
    assert "Result: no change to the documents (comments or layout in flows/welcome.yaml)" in result.output
    as_json = json.loads(invoke("plan", config, "--db", live.url, "--now", NOW.isoformat(), "--format", "json").output)
    assert as_json["layout_only"] is True
    # a real change still exits 2
    write(config, {"flows/welcome.yaml": BASE["flows/welcome.yaml"].replace("for: 2d", "for: 3d")})
    assert invoke("plan", config, "--db", live.url, "--now", NOW.isoformat()).exit_code == 2


def since_of(config: Path, live: Live, since: str) -> datetime:
    result = invoke("replay", config, "--db", live.url, "--since", since, "--format", "json")
    assert result.exit_code in (0, 2), result.output
    return datetime.fromisoformat(json.loads(result.output)["since"])


def test_replay_since_takes_dates_words_and_durations(config: Path, live: Live) -> None:
    daemon_made(config, live)
    assert since_of(config, live, "2026-03-09").isoformat() == "2026-03-09T00:00:00+07:00"  # midnight, Config zone
    assert since_of(config, live, "2026-03-09T08:30").isoformat() == "2026-03-09T08:30:00+07:00"
    before = datetime.now(HCM)
    yesterday, ago = since_of(config, live, "yesterday"), since_of(config, live, "1d")
    after = datetime.now(HCM)
    midnights = {datetime.combine(day.date() - timedelta(days=1), datetime.min.time(), HCM) for day in (before, after)}
    assert yesterday in midnights
    assert before - timedelta(days=1) <= ago <= after - timedelta(days=1)


def test_replay_names_the_option_it_could_not_read(config: Path, live: Live) -> None:
    daemon_made(config, live)
    for option in ("--since", "--until"):
        args = ["--since", "2026-03-09", option, "last tuesday"] if option == "--until" else [option, "last tuesday"]
        result = invoke("replay", config, "--db", live.url, *args)
        assert result.exit_code == 2, result.output
        assert f"Invalid value for {option}: 'last tuesday' is not a time" in result.output
        assert "--now" not in result.output
        assert "2026-03-01" in result.output and "1d" in result.output and "yesterday" in result.output
