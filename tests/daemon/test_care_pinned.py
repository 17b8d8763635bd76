"""Edits apply tomorrow across a restart, with a real ``flowctl run`` (issue 16, item 9).

The daemon runs under libfaketime (its wall clock read from a control file, its monotonic clock
left alone), so the test sets the day and hour it starts at; each start's catch-up tick runs what
came due, and the test waits for it in the store, never for a minute to pass. A birthday
care process runs on day D with version 1 (08:00); version 2 (17:00, another text) is deployed by
restarting the daemon on the edited directory; the rest of day D still runs on version 1 (rebuilt
from the store, which pinned the day), and day D+1 runs on version 2.
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from flowctl.ports import Store
from flowctl.store import open_store
from flowctl.testing import Daemon, wait_for
from tests.reliability.test_clock_step import LIBFAKETIME, SITECUSTOMIZE

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
WAIT = 60.0

CONFIG = """\
apiVersion: flowctl/v1
kind: Config
metadata: {{name: clinic}}
spec: {{timezone: Asia/Ho_Chi_Minh}}
---
apiVersion: flowctl/v1
kind: ObjectType
metadata: {{name: contact}}
spec:
  fields:
    full_name: {{type: string}}
    phone: {{type: phone}}
    birthday: {{type: date}}
---
apiVersion: flowctl/v1
kind: Channel
metadata: {{name: sms}}
spec: {{type: log}}
---
apiVersion: flowctl/v1
kind: CareProcess
metadata: {{name: birthday}}
spec:
  object: contact
  when: {{anniversary_of: birthday, at: "{at}"}}
  on_missed: catch_up
  grace: 24h
  actions:
    - {{action: send_sms, text: "{text}", to: "{{{{ record.phone }}}}"}}
"""


def texts(store: Store) -> dict[str, str]:
    return {row.record_id: str(row.payload.get("text")) for row in store.list_outbox(limit=100)}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'flowctl.db'}"
    return str(request.getfixturevalue("pg_url"))


def test_a_restarted_daemon_runs_the_rest_of_the_day_on_its_pinned_version(tmp_path: Path, database: str) -> None:
    if not LIBFAKETIME.exists():
        pytest.skip(f"libfaketime is not installed ({LIBFAKETIME} is missing; apt-get install libfaketime)")
    control = tmp_path / "faketime"
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(SITECUSTOMIZE)
    root = tmp_path / "config"
    root.mkdir()
    config = root / "flowctl.yaml"
    env = {
        "LD_PRELOAD": str(LIBFAKETIME),
        "FAKETIME_TIMESTAMP_FILE": str(control),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(shim), os.environ.get("PYTHONPATH", "")])),
    }
    daemon = Daemon(config, database, env=env)

    def start_at(moment: datetime) -> None:
        """The daemon's clock reads ``moment`` (and runs on from there) when it starts."""
        offset = tmp_path / "faketime.next"  # renamed into place: libfaketime never reads a half-written file
        offset.write_text(f"{round(moment.timestamp() - time.time()):+d}\n")
        offset.replace(control)
        daemon.start(timeout=WAIT)

    def put(id_: str, born: str) -> None:
        fields = {"full_name": f"K{id_}", "phone": f"090100000{id_}", "birthday": born}
        answer = daemon.put("contact", id_, fields)
        assert answer.status_code in (200, 202), answer.text

    store: Store = open_store(database)
    try:
        config.write_text(CONFIG.format(at="08:00", text="version 1"))
        start_at(datetime(2026, 3, 2, 7, 0, tzinfo=TZ))  # day D, 07:00: the contacts are written
        put("1", "1990-03-02")  # due at 08:00 today
        put("3", "1992-03-03")  # due tomorrow
        wait_for(lambda: store.record("contact", "3") is not None, WAIT, "contacts 1 and 3 stored", daemon.output)
        assert daemon.terminate() == 0

        start_at(datetime(2026, 3, 2, 8, 0, 30, tzinfo=TZ))  # 08:00:30: the catch-up tick runs contact 1
        wait_for(lambda: "1" in texts(store), WAIT, "contact 1's birthday on day D", daemon.output)
        put("2", "1991-03-02")  # after today's 08:00 tick: due at today's next firing
        wait_for(lambda: store.record("contact", "2") is not None, WAIT, "contact 2 stored", daemon.output)
        assert daemon.terminate() == 0
        v1 = store.current_version()

        config.write_text(CONFIG.format(at="17:00", text="version 2"))  # the edit: 17:00, a new text
        start_at(datetime(2026, 3, 2, 17, 0, 30, tzinfo=TZ))  # the restart deploys it; still day D
        wait_for(lambda: "2" in texts(store), WAIT, "contact 2's birthday, later on day D", daemon.output)
        assert daemon.terminate() == 0
        v2 = store.current_version()

        start_at(datetime(2026, 3, 3, 17, 0, 30, tzinfo=TZ))  # day D+1
        wait_for(lambda: "3" in texts(store), WAIT, "contact 3's birthday on day D+1", daemon.output)
        assert daemon.terminate() == 0
    finally:
        store.close()
        daemon.stop_quietly()

    assert v1 is not None and v2 is not None and v1.id != v2.id
    store = open_store(database)
    try:
        sent = texts(store)
        runs = {r.record_id: r.config_version for r in store.list_runs(limit=10)}
    finally:
        store.close()
    assert sent == {"1": "version 1", "2": "version 1", "3": "version 2"}
    assert runs == {"1": v1.id, "2": v1.id, "3": v2.id}
    assert "rebuilt config version" in daemon.output()
    assert "no longer has" not in daemon.output()
