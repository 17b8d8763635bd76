"""``flowctl run --log-format json``: every line of both processes on stderr is one JSON object,
with the ids it is about as fields; the ``log`` channel's messages are on stdout."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from flowctl.testing import Daemon, wait_for
from tests.ecosystem.configs import welcome_config


def lines(text: str) -> list[dict[str, Any]]:
    """Every line as JSON; fails naming the first that is not one object."""
    out = []
    for line in text.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            raise AssertionError(f"not JSON: {line!r}") from None
        assert isinstance(doc, dict), line
        assert {"time", "level", "logger", "message", "pid"} <= set(doc), line
        out.append(doc)
    return out


def test_every_stderr_line_is_json_with_its_ids_and_the_log_channel_is_on_stdout(tmp_path: Path) -> None:
    config = welcome_config(tmp_path)
    daemon = Daemon(
        config,
        f"sqlite:///{tmp_path / 'flowctl.db'}",
        args=("--log-format", "json", "--log-level", "debug"),
        split_stdout=True,
    )
    with daemon:
        engine_pid = daemon.engine_pid()
        assert daemon.put("contact", "1", {"full_name": "Lan", "phone": "0901234567"}).status_code == 202
        wait_for(lambda: "[log] send_sms" in daemon.stdout(), what="the SMS on stdout", detail=daemon.output)
        flow = config / "flowctl.yaml"
        flow.write_text(flow.read_text().replace("Chao", "Xin chao"))
        daemon.send_signal(signal.SIGHUP)
        wait_for(lambda: '"switched from version' in daemon.output(), what="the engine process switching")
        assert daemon.terminate() == 0

    logged = lines(daemon.output())
    assert not [doc for doc in logged if "[log]" in doc["message"]], "the log channel's lines are on stdout"
    assert re.search(r"^\[log\] send_sms via log contact/1 → 0901234567: Chao Lan$", daemon.stdout(), re.MULTILINE)

    (loaded,) = [doc for doc in logged if doc["message"].startswith("loaded ")]
    version = loaded["config_version"]
    assert re.fullmatch(r"[0-9a-f]{16}", version)
    assert loaded["logger"] == "flowctl.run"
    assert any(doc["message"] == "stopped" for doc in logged)

    (processed,) = [doc for doc in logged if doc["message"] == "processed put of contact/1"]
    # run in the commit that stored it, by the HTTP process (daemon/inline.py); the engine
    # process's lines are JSON too: its version switch below
    assert processed["pid"] == daemon.proc.pid
    assert processed["change_seq"] == 1
    assert processed["record"] == "contact/1"
    assert processed["automation"] == "flow:welcome"
    assert processed["config_version"] == version
    assert processed["run_id"]
    assert "1" not in processed["message"].replace("contact/1", "")  # the ids are fields, not text

    (sent,) = [doc for doc in logged if doc["message"].startswith("sent send_sms")]
    assert sent["channel"] == "log"
    assert sent["message_id"] and sent["outbox_id"] == 1
    assert sent["record"] == "contact/1" and sent["run_id"] == processed["run_id"]

    switched = {doc["pid"]: doc for doc in logged if doc["message"].startswith("switched from version")}
    assert engine_pid in switched  # both processes switch; the engine process says so in JSON too
    assert {doc["config_version"] for doc in switched.values()} == {switched[engine_pid]["config_version"]}
    assert switched[engine_pid]["config_version"] != version
    reloaded = [doc for doc in logged if doc["message"].startswith("reloaded")]
    assert reloaded and reloaded[0]["config_version"] == switched[engine_pid]["config_version"]
    assert {doc["pid"] for doc in logged} >= {engine_pid, processed["pid"]}


def test_a_daemon_that_cannot_start_says_why_in_json(tmp_path: Path) -> None:
    config = welcome_config(tmp_path)
    database = ["--db", f"sqlite:///{tmp_path / 'flowctl.db'}", "--log-format", "json"]
    refused = subprocess.run(
        [sys.executable, "-m", "flowctl", "run", str(config), *database, "--listen", "0.0.0.0:0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1
    (why,) = lines(refused.stderr)
    assert why["level"] == "error" and "token" in why["message"], why

    (config / "flowctl.yaml").write_text((config / "flowctl.yaml").read_text().replace("start: sms", "start: nowhere"))
    invalid = subprocess.run(
        [sys.executable, "-m", "flowctl", "run", str(config), *database], capture_output=True, text=True, timeout=60
    )
    assert invalid.returncode == 1
    errors = lines(invalid.stderr)
    assert errors[0]["file"].endswith("flowctl.yaml") and errors[0]["line"] > 1 and errors[0]["code"], errors
    assert "nowhere" in errors[0]["message"]
    assert "invalid: 1 errors" in errors[-1]["message"]
