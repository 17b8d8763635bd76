"""What ``replay`` shows when effects differ: the changed part of a field with its context, and no
difference where only the daemon's handling delay moved a time computed from "now"."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from flowctl.cli.main import cli
from flowctl.ports import NewChange
from tests.gitops.conftest import BASE, NOW, Live, invoke, write

SINCE, UNTIL = (NOW - timedelta(hours=1)).isoformat(), (NOW + timedelta(hours=1)).isoformat()
LONG = "Xin chao {{ record.full_name }}! Cam on ban da dang ky nhan tin tu cua hang noi that. Ma uu dai: SOFA10"
TASK = """\
apiVersion: flowctl/v1
kind: Flow
metadata: {name: follow-up}
spec:
  object: contact
  trigger: {on: created}
  start: task
  nodes:
    task: {type: create_task, title: "Call {{ record.full_name }}", assignee: {user: lan}, due: 1d, next: done}
    done: {type: stop}
"""


def replay(config: Path, live: Live, *extra: str) -> tuple[int, dict]:
    result = invoke("replay", config, "--db", live.url, "--since", SINCE, "--until", UNTIL, "--format", "json", *extra)
    return result.exit_code, json.loads(result.output)


def handled_late(live: Live, id: str, delay: timedelta, **fields: str) -> None:
    """A contact created at NOW that the daemon handles ``delay`` later, as a loaded daemon does."""
    live.clock.set((NOW + delay).astimezone(UTC))  # the daemon's clock is UTC
    live.work(
        NewChange(
            object="contact",
            record_id=id,
            op="put",
            idempotency_key=f"put-{id}-{uuid.uuid4()}",
            fields=fields,
            received_at=NOW,
        )
    )


def test_a_due_from_now_is_not_a_difference_when_the_daemon_handled_the_change_late(config: Path, live: Live) -> None:
    write(config, {"flows/task.yaml": TASK})
    invoke("apply", config, "--db", live.url, "--now", NOW.isoformat())
    handled_late(live, "c1", timedelta(milliseconds=4), full_name="Lan", phone="0901")
    handled_late(live, "c2", timedelta(seconds=3), full_name="Minh", phone="0902")
    (row,) = [
        r
        for r in live.store.outbox_between(NOW, NOW + timedelta(hours=1))
        if r.action == "create_task" and r.record_id == "c1"
    ]
    assert row.payload["due"] != (NOW + timedelta(days=1)).isoformat()  # the live due is 4 ms later
    code, same = replay(config, live)
    assert (code, same["records"]) == (0, []), same
    # a real change of the due still shows, on the field, with the effect it belongs to
    write(config, {"flows/task.yaml": TASK.replace("due: 1d", "due: 2d")})
    code, changed = replay(config, live)
    assert code == 2
    assert [r["id"] for r in changed["records"]] == ["c1", "c2"]
    (change,) = changed["records"][0]["changed"]
    assert change["action"] == "create_task"
    assert [f["path"] for f in change["fields"]] == ["due"]
    text = invoke("replay", config, "--db", live.url, "--since", SINCE, "--until", UNTIL).output
    assert "    ~ create_task via log (Call Lan):" in text
    assert "due: 2026-03-11T10:00:00" in text and "→ 2026-03-12T10:00:00" in text


def test_a_long_text_shows_the_part_that_changed(config: Path, live: Live) -> None:
    flow = BASE["flows/welcome.yaml"].replace('text: "Xin chao {{ record.full_name }}"', f'text: "{LONG}"')
    write(config, {"flows/welcome.yaml": flow})
    invoke("apply", config, "--db", live.url, "--now", NOW.isoformat())
    live.put("c1", full_name="Lan", phone="0901")
    write(config, {"flows/welcome.yaml": flow.replace("SOFA10", "SOFA20")})
    result = invoke("replay", config, "--db", live.url, "--since", SINCE, "--until", UNTIL)
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    at = lines.index("  contact c1")
    assert lines[at + 1] == "    ~ send_sms via log to 0901:"
    assert lines[at + 2] == '        text: "…noi that. Ma uu dai: SOFA10" → "…noi that. Ma uu dai: SOFA20"'


def test_added_and_removed_effects_read_as_what_they_do(config: Path, live: Live) -> None:
    invoke("apply", config, "--db", live.url, "--now", NOW.isoformat())
    live.put("c1", full_name="Lan", phone="0901")
    write(
        config,
        {"flows/welcome.yaml": BASE["flows/welcome.yaml"].replace("trigger: {on: created}", "trigger: {on: deleted}")},
    )
    text = invoke("replay", config, "--db", live.url, "--since", SINCE, "--until", UNTIL).output
    assert '    - send_sms via log to 0901: "Xin chao Lan"' in text.splitlines()


def coloured(*args: Any) -> str:
    """What a colour terminal shows (``CliRunner`` with ``color=True``)."""
    return CliRunner().invoke(cli, [str(a) for a in args], color=True, catch_exceptions=False).output


def test_plan_and_replay_colour_their_diff_on_a_colour_terminal(config: Path, live: Live) -> None:
    invoke("apply", config, "--db", live.url, "--now", NOW.isoformat())
    live.put("c1", full_name="Lan", phone="0901")
    welcome = BASE["flows/welcome.yaml"]
    write(
        config,
        {"flows/welcome.yaml": welcome.replace('"Xin chao {{ record.full_name }}"', '"Chao {{ record.full_name }}"')},
    )
    plan = coloured("plan", config, "--db", live.url, "--now", NOW.isoformat()).splitlines()
    assert any(line.startswith("\x1b[33m  ~ ") and line.endswith("\x1b[0m") for line in plan), plan
    replayed = coloured("replay", config, "--db", live.url, "--since", SINCE, "--until", UNTIL).splitlines()
    assert "\x1b[33m    ~ send_sms via log to 0901:\x1b[0m" in replayed, replayed
    write(config, {"flows/welcome.yaml": welcome.replace("trigger: {on: created}", "trigger: {on: deleted}")})
    replayed = coloured("replay", config, "--db", live.url, "--since", SINCE, "--until", UNTIL).splitlines()
    assert '\x1b[31m    - send_sms via log to 0901: "Xin chao Lan"\x1b[0m' in replayed, replayed
    plain = invoke("replay", config, "--db", live.url, "--since", SINCE, "--until", UNTIL).output
    assert "\x1b[" not in plain
