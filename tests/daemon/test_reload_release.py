"""Reloads release the engines of versions nothing uses: a daemon reloaded many times holds the
current version's engine and those open runs still need, not every version it ever ran."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

from flowctl.testing import Daemon, wait_for
from tests.daemon.configs import deal_config

CONFIG = deal_config(
    then="""\
apiVersion: flowctl/v1
kind: Flow
metadata: {name: followup}
spec:
  object: deal
  trigger: {on: created}
  start: wait
  nodes:
    wait: {type: delay, for: 1h, next: note}
    note: {type: update_fields, set: {title: "TEXT"}}
"""
)

RELOADS = 4


def released(output: str) -> list[str]:
    return [
        v for line in re.findall(r"released the engines of version\(s\) ([\w, ]+):", output) for v in line.split(", ")
    ]


def test_reloads_release_old_engines_but_keep_the_one_an_open_run_uses(tmp_path: Path) -> None:
    folder = tmp_path / "config"
    folder.mkdir()
    config = folder / "flowctl.yaml"
    config.write_text(CONFIG.replace("TEXT", "v0"))
    daemon = Daemon(folder, f"sqlite:///{tmp_path / 'r.db'}")
    try:
        daemon.start()
        assert daemon.put("deal", "1", {"title": "A"}).status_code == 202  # a run waits an hour on version 1
        wait_for(lambda: daemon.metric("flowctl_timers_pending", missing=-1.0) == 1, what="the open run's timer")
        for n in range(1, RELOADS + 1):
            config.write_text(CONFIG.replace("TEXT", f"v{n}"))
            daemon.send_signal(signal.SIGHUP)
            # the HTTP process switches, then the engine process: one line each
            wait_for(
                lambda n=n: daemon.output().count("switched from version") == 2 * n,
                timeout=60,
                what=f"reload {n} in both processes",
            )
            assert daemon.metric("flowctl_engine_versions", missing=-1.0) <= 2  # the current one, and version 1
        pairs = re.findall(r"switched from version (\w+) to (\w+)", daemon.output())
        first, versions = pairs[0][0], list(dict.fromkeys(new for _, new in pairs))
        # both processes let go of every version between the first and the current one
        middle = versions[:-1]
        wait_for(
            lambda: sorted(released(daemon.output())) == sorted(middle * 2),
            timeout=60,
            what=f"both processes to release {middle}",
        )
        assert first not in released(daemon.output())  # an open run started on it
        assert daemon.metric("flowctl_engine_versions", missing=-1.0) == 2
        time.sleep(1)
        assert daemon.terminate() == 0
    finally:
        daemon.stop_quietly()
