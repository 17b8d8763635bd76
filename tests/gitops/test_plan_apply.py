"""plan / apply / history / rollback against a live store: each refusal and each allowed change."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flowctl.ports import ConfigVersion
from tests.gitops.conftest import BASE, NOW, Live, invoke, write

PlanJson = Callable[..., tuple[int, dict[str, Any]]]


def apply(config: Path, live: Live, *extra: Any) -> Any:
    return invoke("apply", config, "--db", live.url, "--now", NOW.isoformat(), *extra)


def codes(plan: dict[str, Any], severity: str = "refuse") -> list[str]:
    return [f["code"] for f in plan["findings"] if f["severity"] == severity]


def test_first_apply_then_no_change(config: Path, live: Live, plan_json: PlanJson) -> None:
    code, plan = plan_json(config, "--db", live.url)
    assert code == 2 and plan["status"] == "changes" and plan["deployed"] is None
    assert {d["document"] for d in plan["documents"] if d["op"] == "added"} >= {"Flow/welcome", "Pipeline/sales"}
    result = apply(config, live)
    assert result.exit_code == 0, result.output
    assert "is now current" in result.output
    current = live.store.current_version()
    assert current is not None and current.id == plan["proposed"]["id"]
    assert current.files["flows/welcome.yaml"] == BASE["flows/welcome.yaml"]  # the documents themselves
    assert "Flow/welcome" in current.documents
    code, plan = plan_json(config, "--db", live.url)
    assert code == 0 and plan["status"] == "unchanged"
    text = invoke("plan", config, "--db", live.url, "--now", NOW.isoformat())
    assert text.exit_code == 0 and "no changes" in text.output


def test_field_level_diff(config: Path, live: Live, plan_json: PlanJson) -> None:
    apply(config, live)
    flow = BASE["flows/welcome.yaml"].replace("for: 2d", "for: 3d")
    write(config, {"flows/welcome.yaml": flow})
    code, plan = plan_json(config, "--db", live.url)
    assert code == 2
    (doc,) = plan["documents"]
    assert doc["document"] == "Flow/welcome" and doc["op"] == "changed"
    assert doc["fields"] == [{"path": "spec.nodes.wait.for", "op": "changed", "old": "2d", "new": "3d"}]
    text = invoke("plan", config, "--db", live.url, "--now", NOW.isoformat()).output
    assert '~ spec.nodes.wait.for: "2d" → "3d"' in text


def test_git_commit_and_author_are_stored(config: Path, live: Live) -> None:
    git = ["git", "-C", str(config), "-c", "user.name=Lan", "-c", "user.email=lan@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "birthday SMS"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    assert apply(config, live).exit_code == 0
    current = live.store.current_version()
    assert current is not None
    assert (current.commit, current.author, current.message) == (head, "Lan <lan@example.com>", "birthday SMS")
    history = invoke("history", config, "--db", live.url)
    assert history.output.splitlines()[1].startswith("* "), history.output
    assert head[:12] in history.output and "birthday SMS" in history.output


def test_removing_a_stage_that_holds_records_is_refused(config: Path, live: Live, plan_json: PlanJson) -> None:
    apply(config, live)
    for i in range(3):
        live.put(f"c{i}", stage="spare", full_name=f"Khach {i}")
    before = live.store.current_version()
    write(config, {"pipelines/sales.yaml": BASE["pipelines/sales.yaml"].replace("    - id: spare\n", "")})
    code, plan = plan_json(config, "--db", live.url)
    assert code == 1 and plan["status"] == "refused" and codes(plan) == ["stage-not-empty"]
    finding = plan["findings"][0]
    assert (finding["stage"], finding["records"]) == ("spare", 3)
    assert "3 contact records are in stage 'spare'" in finding["message"]
    result = apply(config, live, "--allow-cancel", "--force")  # neither lifts this refusal
    assert result.exit_code == 1 and "REFUSED" in result.output
    assert live.store.current_version() == before  # nothing half-applied


def test_removing_an_empty_stage_is_allowed(config: Path, live: Live, plan_json: PlanJson) -> None:
    apply(config, live)
    live.put("c1", stage="new", full_name="Lan")
    write(config, {"pipelines/sales.yaml": BASE["pipelines/sales.yaml"].replace("    - id: spare\n", "")})
    code, plan = plan_json(config, "--db", live.url)
    assert code == 2 and codes(plan) == []
    assert apply(config, live).exit_code == 0


def test_runs_on_a_removed_rule_need_allow_cancel(config: Path, live: Live, plan_json: PlanJson) -> None:
    apply(config, live)
    live.put("c1", stage="new", full_name="Lan")
    live.move("c1", "documents")  # the delayed rule 'nudge' now waits a day
    pipeline = (
        BASE["pipelines/sales.yaml"]
        .replace(
            '        - {name: nudge, delay: 1d, action: create_task, title: "Nudge {{ record.full_name }}", '
            "assignee: {user: lan}}\n",
            "",
        )
        .replace("      rules:\n", "")
    )
    write(config, {"pipelines/sales.yaml": pipeline})
    code, plan = plan_json(config, "--db", live.url)
    assert code == 1 and codes(plan) == ["runs-cancelled"]
    finding = plan["findings"][0]
    assert "rule 'nudge' of stage 'documents' (sales) is removed" in finding["message"]
    assert finding["timers"] == 1 and finding["records"][0]["id"] == "c1"
    code, plan = plan_json(config, "--db", live.url, "--allow-cancel")
    assert code == 2 and codes(plan, "notice") == ["runs-cancelled"] and len(plan["cancel_runs"]) == 1
    result = apply(config, live, "--allow-cancel")
    assert result.exit_code == 0 and "cancelled 1 runs" in result.output
    run = live.store.run(plan["cancel_runs"][0])
    assert run is not None and run.status == "cancelled"
    assert live.store.timers_of(run.id) == []


def test_runs_on_a_removed_flow_node_are_refused(config: Path, live: Live, plan_json: PlanJson) -> None:
    apply(config, live)
    live.put("c1", full_name="Lan", phone="0901234567")  # welcome: SMS, then waits 2 days at 'wait'
    flow = (
        BASE["flows/welcome.yaml"]
        .replace("next: wait}", "next: bye}")
        .replace("    wait: {type: delay, for: 2d, next: bye}\n", "")
    )
    write(config, {"flows/welcome.yaml": flow})
    code, plan = plan_json(config, "--db", live.url)
    assert code == 1
    message = plan["findings"][0]["message"]
    assert "node 'wait' of flow 'welcome' is removed: 1 run (waiting) with 1 pending timer" in message
    write(config, {"flows/welcome.yaml": None})  # the whole flow: the same refusal, named so
    code, plan = plan_json(config, "--db", live.url)
    assert code == 1 and "flow 'welcome' is removed" in plan["findings"][0]["message"]


def test_care_edit_after_it_ran_today_applies_tomorrow(config: Path, live: Live, plan_json: PlanJson) -> None:
    apply(config, live)
    live.put("c1", full_name="Lan", birthday="1990-03-10")
    assert live.store.claim_occurrence("birthday", "contact", "c1", "2026-03-10", NOW)
    write(config, {"care/birthday.yaml": BASE["care/birthday.yaml"].replace('at: "08:00"', 'at: "09:00"')})
    code, plan = plan_json(config, "--db", live.url)
    assert code == 2 and codes(plan, "notice") == ["care-applies-tomorrow"]
    finding = plan["findings"][0]
    assert finding["applies_from"] == "2026-03-11" and finding["ran_today"] == 1


def test_removed_field_with_values_is_a_warning(config: Path, live: Live, plan_json: PlanJson) -> None:
    apply(config, live)
    live.put("c1", full_name="Lan", note="VIP")
    live.put("c2", full_name="Minh")
    write(config, {"objects/contact.yaml": BASE["objects/contact.yaml"].replace("    note: {type: string}\n", "")})
    code, plan = plan_json(config, "--db", live.url)
    assert code == 2 and codes(plan, "warn") == ["field-removed-with-values"]
    assert plan["findings"][0]["records"] == 1
    assert apply(config, live).exit_code == 0
    record = live.store.record("contact", "c1")
    assert record is not None and record.fields["note"] == "VIP"  # nothing deleted


def test_removing_most_documents_needs_force(config: Path, live: Live, plan_json: PlanJson) -> None:
    apply(config, live)
    write(config, {"flows/welcome.yaml": None, "care/birthday.yaml": None, "pipelines/sales.yaml": None})
    code, plan = plan_json(config, "--db", live.url)
    assert code == 1 and codes(plan) == ["mass-removal"]
    assert "removes 3 of 5 documents" in plan["findings"][0]["message"]
    assert apply(config, live).exit_code == 1
    assert apply(config, live, "--force").exit_code == 0


def test_invalid_configuration_is_refused(config: Path, live: Live, plan_json: PlanJson) -> None:
    write(config, {"flows/welcome.yaml": BASE["flows/welcome.yaml"].replace("next: bye}", "next: nowhere}")})
    code, plan = plan_json(config, "--db", live.url)
    assert code == 1 and plan["status"] == "invalid" and plan["errors"]
    assert apply(config, live).exit_code == 1
    assert live.store.current_version() is None


def test_blast_radius_counts_sms_per_window(config: Path, live: Live, plan_json: PlanJson) -> None:
    apply(config, live)
    live.put("c1", full_name="Lan", phone="0901", birthday="1990-03-11")  # tomorrow 08:00
    live.put("c2", full_name="Minh", phone="0902", birthday="1985-03-14")  # in 4 days
    live.put("c3", full_name="Tuan", phone="0903", birthday="1985-07-01")
    care = BASE["care/birthday.yaml"].replace("  feb29:", "  if: \"record.full_name != 'Minh'\"\n  feb29:")
    write(config, {"care/birthday.yaml": care})
    code, plan = plan_json(config, "--db", live.url)
    assert code == 2, plan
    (reach,) = plan["blast_radius"]
    assert reach["process"] == "birthday" and reach["status"] == "changed"
    assert reach["new"]["day"] == {"records": 1, "effects": {"send_sms via log": 1}, "errors": 0}
    assert reach["new"]["week"]["records"] == 1 and reach["old"]["week"]["records"] == 2
    text = invoke("plan", config, "--db", live.url, "--now", NOW.isoformat()).output
    assert "next 7 days 1 record (-1), send_sms via log 1 (-1)" in text


def test_history_and_rollback(config: Path, live: Live) -> None:
    apply(config, live)
    first = live.store.current_version()
    assert first is not None
    write(config, {"flows/welcome.yaml": BASE["flows/welcome.yaml"].replace("Tam biet", "Hen gap lai")})
    assert apply(config, live, "-m", "new goodbye").exit_code == 0
    second = live.store.current_version()
    assert second is not None and second.id != first.id and second.message == "new goodbye"
    history = json.loads(invoke("history", config, "--db", live.url, "--format", "json").output)
    assert [(v["id"], v["current"]) for v in history] == [(second.id, True), (first.id, False)]
    result = invoke("rollback", first.id[:8], config, "--db", live.url, "--now", NOW.isoformat())
    assert result.exit_code == 0, result.output
    assert '~ spec.nodes.bye.text: "Hen gap lai" → "Tam biet"' in result.output
    current = live.store.current_version()
    assert current is not None and current.id == first.id and current.message == f"rollback to {first.id}"
    again = invoke("rollback", first.id, config, "--db", live.url)
    assert again.exit_code == 0 and "already deployed" in again.output
    missing = invoke("rollback", "zzzz", config, "--db", live.url)
    assert missing.exit_code == 1 and "no stored version 'zzzz'" in missing.output


def test_rollback_is_checked_like_apply(config: Path, live: Live) -> None:
    write(config, {"pipelines/sales.yaml": BASE["pipelines/sales.yaml"].replace("    - id: spare\n", "")})
    apply(config, live)
    first = live.store.current_version()
    write(config, {"pipelines/sales.yaml": BASE["pipelines/sales.yaml"]})
    apply(config, live)
    live.put("c1", stage="spare", full_name="Lan")
    assert first is not None
    result = invoke("rollback", first.id, config, "--db", live.url)
    assert result.exit_code == 1 and "1 contact record is in stage 'spare'" in result.output


def test_a_version_stored_without_files_cannot_be_rolled_back_to(config: Path, live: Live) -> None:
    live.store.save_version(ConfigVersion(id="legacy0001", applied_at=NOW, documents={"Flow/welcome": {"file": "x"}}))
    result = apply(config, live)
    assert result.exit_code == 0 and "compared by name only" in result.output
    rollback = invoke("rollback", "legacy", config, "--db", live.url)
    assert rollback.exit_code == 1 and "stored without its files" in rollback.output


def test_deploy_refuses_when_the_current_version_moved(live: Live) -> None:
    v = ConfigVersion(id="a", applied_at=NOW, documents={})
    assert live.store.deploy_version(v, None)
    assert not live.store.deploy_version(ConfigVersion(id="b", applied_at=NOW, documents={}), None)
    assert live.store.deploy_version(ConfigVersion(id="b", applied_at=NOW, documents={}), "a")
    current = live.store.current_version()
    assert current is not None and current.id == "b"
