"""A database left by the previous schema head, with work in flight, is upgraded and everything resumes.

Today's daemon (``flowctl run``) writes records, flows waiting on a delay, rules' pending timers
and SMS held because the gateway's address is not set yet; it stops, and the newest migration's
``downgrade`` takes the schema back to the previous head (its data stays), so the test always
upgrades from head - 1, whatever head is when it runs. A daemon started on it refuses (the real
process exits non-zero naming both revisions); ``flowctl db upgrade`` migrates it; a daemon started
with the gateway set sends every held message, fires every timer and finishes every waiting flow,
and the real HTTP gateway gets each message once.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from flowctl.cli.main import cli
from flowctl.store import migrate, revisions
from flowctl.store.engines import make_engine
from flowctl.testing import Daemon, free_port, wait_for
from tests.daemon.configs import deal_config, http_channel
from tests.reliability.gateway import Gateway, serve

DEALS = 3
DELAY = "15s"  # long enough to be pending across the upgrade, short enough for a test

CONFIG = deal_config(
    "    phone: phone\n",
    then=http_channel("sms", "${GATEWAY_URL}/sms")
    + f"""\
---
apiVersion: flowctl/v1
kind: Pipeline
metadata: {{name: sales}}
spec:
  object: deal
  stages:
    - id: new
      rules:
        - {{name: now, action: send_sms, text: "Now {{{{ record.title }}}}", to: "{{{{ record.phone }}}}"}}
        - name: later
          action: send_sms
          delay: {DELAY}
          text: "Later {{{{ record.title }}}}"
          to: "{{{{ record.phone }}}}"
    - id: done
      final: success
---
apiVersion: flowctl/v1
kind: Flow
metadata: {{name: welcome}}
spec:
  object: deal
  trigger: {{on: created}}
  start: wait
  nodes:
    wait: {{type: delay, for: {DELAY}, next: bye}}
    bye: {{type: send_sms, channel: sms, to: "{{{{ record.phone }}}}", text: "Bye {{{{ record.title }}}}"}}
""",
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'flowctl.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    with serve() as gw:
        yield gw


def counts(url: str) -> dict[str, int]:
    engine = make_engine(url)
    queries = {
        "records": "SELECT count(*) FROM records",
        "waiting runs": "SELECT count(*) FROM runs WHERE status = 'waiting'",
        "timers": "SELECT count(*) FROM timers",
        "held": "SELECT count(*) FROM outbox WHERE status = 'held'",
        "sent": "SELECT count(*) FROM outbox WHERE status = 'sent'",
    }
    try:
        with engine.connect() as conn:
            return {name: conn.execute(sa.text(query)).scalar_one() for name, query in queries.items()}
    finally:
        engine.dispose()


def test_a_database_at_the_previous_head_is_upgraded_and_everything_resumes(
    tmp_path: Path, url: str, gateway: Gateway
) -> None:
    old = revisions.previous_head()
    assert old is not None, "there is only one revision: nothing to upgrade from"
    config = tmp_path / "config"
    config.mkdir()
    (config / "flowctl.yaml").write_text(CONFIG)

    before = Daemon(config, url)
    before.env.pop("GATEWAY_URL", None)
    with before:
        for i in range(DEALS):
            assert before.put("deal", f"d{i}", {"title": f"D{i}", "phone": f"09{i:08d}"}).status_code == 202
        wait_for(lambda: counts(url)["held"] == DEALS, what="the SMS held (no gateway address)")
        # per deal: the flow waiting on its delay, and the rule waiting on its own
        wait_for(lambda: counts(url)["waiting runs"] == 2 * DEALS, what="the runs waiting on their delays")
        assert before.terminate() == 0
    left = counts(url)
    assert left == {"records": DEALS, "waiting runs": 2 * DEALS, "timers": 2 * DEALS, "held": DEALS, "sent": 0}

    engine = make_engine(url)
    try:
        migrate.downgrade(engine, old)  # the schema the previous release left; the rows stay
    finally:
        engine.dispose()
    assert counts(url) == left

    # a daemon on the older schema refuses, and the process exits
    command = [sys.executable, "-m", "flowctl", "run", str(config), "--db", url, "--listen", f"127.0.0.1:{free_port()}"]
    refused = subprocess.run(command, capture_output=True, text=True, timeout=60, env={**before.env})
    assert refused.returncode == 1, refused.stderr
    head = revisions.head()
    assert f"the database is at revision {old}, this flowctl needs {head}" in refused.stderr
    assert "run `flowctl db upgrade`" in refused.stderr

    upgraded = CliRunner().invoke(cli, ["db", "upgrade", str(config), "--db", url], catch_exceptions=False)
    assert upgraded.exit_code == 0, upgraded.output
    assert f"from revision {old} to {head}" in upgraded.output
    assert counts(url) == left

    with Daemon(config, url, env={"GATEWAY_URL": gateway.url}):
        wait_for(lambda: len(gateway.keys("/sms")) == 3 * DEALS, timeout=60, what="every SMS sent")
        wait_for(lambda: counts(url)["sent"] == 3 * DEALS, what="every SMS recorded sent")
    assert Counter(gateway.keys()).most_common(1)[0][1] == 1, "an SMS arrived twice"
    after = counts(url)
    assert (after["waiting runs"], after["timers"], after["held"]) == (0, 0, 0)
