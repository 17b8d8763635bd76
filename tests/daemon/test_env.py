"""An unset ``${ENV}`` variable is named at start, in /readyz and by ``validate --env``, and the
messages of its channel are held (never dead-lettered) until the daemon runs with it set."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from flowctl.cli.main import cli
from flowctl.testing import Daemon, wait_for
from tests.conftest import HttpSink, SmtpServer
from tests.daemon.configs import real_channels
from tests.daemon.conftest import EXTRA_FIELDS, REST
from tests.daemon.test_daemon import sms_hits

SOURCE = """\
---
apiVersion: flowctl/v1
kind: Source
metadata: {name: crm}
spec:
  type: sql
  url: "${CRM_DATABASE_URL}"
  table: crm_contacts
  key: id
  cursor: [updated_at, id]
  object: deal
"""


@pytest.fixture
def env_config(tmp_path: Path, smtp_server: SmtpServer, http_sink: HttpSink) -> Path:
    """The daemon tests' config with the SMS gateway's address in ${SMS_GATEWAY_URL} and a SQL
    source reading ${CRM_DATABASE_URL}."""
    folder = tmp_path / "config"
    folder.mkdir()
    text = real_channels(smtp_server.port, "${SMS_GATEWAY_URL}", EXTRA_FIELDS) + REST + SOURCE
    (folder / "flowctl.yaml").write_text(text)
    return folder


def outbox(database: Path, channel: str) -> list[tuple[str, int, str]]:
    with sqlite3.connect(database) as db:
        return db.execute(
            "select status, attempts, last_error from outbox where channel = ? order by id", (channel,)
        ).fetchall()


def test_an_unset_variable_is_named_at_start_and_its_messages_wait_for_it(
    tmp_path: Path, env_config: Path, http_sink: HttpSink
) -> None:
    database = tmp_path / "e.db"
    unset = Daemon(env_config, f"sqlite:///{database}")
    unset.env = {k: v for k, v in unset.env.items() if k not in ("SMS_GATEWAY_URL", "CRM_DATABASE_URL")}
    try:
        unset.start()  # ready: changes are taken and processed, whatever their channel
        # one message at start names every variable, with what needs it
        [line] = [line for line in unset.output().splitlines() if "not set in the environment" in line]
        assert "channel sms: SMS_GATEWAY_URL is not set" in line
        assert "source crm: CRM_DATABASE_URL is not set" in line
        ready = httpx.get(f"{unset.url}/readyz", timeout=5).json()
        assert ready == {
            "status": "degraded",
            "problems": ["channel sms: SMS_GATEWAY_URL is not set", "source crm: CRM_DATABASE_URL is not set"],
        }

        assert unset.put("deal", "1", {"title": "A", "phone": "0901234567"}).status_code == 202
        wait_for(lambda: [s for s, _, _ in outbox(database, "sms")] == ["held"], what="the SMS held")
        [(_, attempts, why)] = outbox(database, "sms")
        assert why == "held: channel sms: SMS_GATEWAY_URL is not set" and attempts == 0
        time.sleep(1.0)  # more delivery rounds: it stays held, it does not use up attempts and die
        assert [s for s, _, _ in outbox(database, "sms")] == ["held"]
        assert unset.terminate() == 0
    finally:
        unset.stop_quietly()

    fixed = Daemon(env_config, f"sqlite:///{database}", env={"SMS_GATEWAY_URL": http_sink.url})
    fixed.env.pop("CRM_DATABASE_URL", None)
    try:
        fixed.start()
        # released at once, not after the hold's minute
        wait_for(lambda: any(h["text"] == "Cảm ơn A" for h in sms_hits(http_sink)), what="the held SMS sent")
        wait_for(lambda: [s for s, _, _ in outbox(database, "sms")] == ["sent"], what="recorded sent")
        assert "SMS_GATEWAY_URL" not in httpx.get(f"{fixed.url}/readyz", timeout=5).text
    finally:
        fixed.stop_quietly()


def test_validate_env_fails_on_every_unset_variable_with_its_place(env_config: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        cli, ["validate", str(env_config), "--env"], env={"SMS_GATEWAY_URL": None, "CRM_DATABASE_URL": ""}
    )
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if "E095" in line]
    assert len(lines) == 2, result.output
    assert lines[0].startswith("flowctl.yaml:") and "channel sms needs ${SMS_GATEWAY_URL}, which is not set" in lines[0]
    assert "source crm needs ${CRM_DATABASE_URL}, which is empty" in lines[1]
    assert runner.invoke(cli, ["validate", str(env_config)], env={"SMS_GATEWAY_URL": None}).exit_code == 0
    given = {"SMS_GATEWAY_URL": "http://gw", "CRM_DATABASE_URL": "sqlite://"}
    assert runner.invoke(cli, ["validate", str(env_config), "--env"], env=given).exit_code == 0


def test_apply_names_the_unset_variables_and_deploys(tmp_path: Path, env_config: Path) -> None:
    runner = CliRunner()
    url = f"sqlite:///{tmp_path / 'a.db'}"
    result = runner.invoke(
        cli,
        ["apply", str(env_config), "--db", url, "--format", "json"],
        env={"SMS_GATEWAY_URL": None, "CRM_DATABASE_URL": None},
    )
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["applied"] is True
    assert answer["unset_env"] == ["channel sms: SMS_GATEWAY_URL is not set", "source crm: CRM_DATABASE_URL is not set"]
