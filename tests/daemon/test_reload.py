"""Hot reload of a running daemon: --watch and SIGHUP validate and plan first, never half-apply."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import httpx

from flowctl.testing import Daemon, wait_for
from tests.conftest import HttpSink
from tests.daemon.test_daemon import sms_hits


def test_watch_reloads_a_valid_change_and_refuses_a_broken_one(
    tmp_path: Path, config_dir: Path, http_sink: HttpSink
) -> None:
    daemon = Daemon(config_dir, f"sqlite:///{tmp_path / 'r.db'}", args=("--watch",))
    config = config_dir / "flowctl.yaml"
    try:
        daemon.start()
        assert daemon.put("deal", "1", {"title": "A", "phone": "0901234567"}).status_code == 202
        wait_for(lambda: any(h["text"] == "Cảm ơn A" for h in sms_hits(http_sink)), what="first SMS")

        config.write_text(
            config.read_text().replace('text: "Cảm ơn {{ record.title }}"', 'text: "Xin cảm ơn {{ record.title }}"')
        )
        wait_for(lambda: "switched" in daemon.output() or "reloaded" in daemon.output(), what="reload")
        assert daemon.put("deal", "2", {"title": "B", "phone": "0901234567"}).status_code == 202
        wait_for(lambda: any(h["text"] == "Xin cảm ơn B" for h in sms_hits(http_sink)), what="new text")
        assert daemon.metric("flowctl_reload_ok", missing=-1.0) == 1

        good = config.read_text()
        config.write_text(good.replace("action: send_sms, text:", "action: send_smss, text:"))
        wait_for(lambda: "reload invalid" in daemon.output(), what="refused reload")
        assert daemon.metric("flowctl_reload_ok", missing=-1.0) == 0
        assert daemon.put("deal", "3", {"title": "C", "phone": "0901234567"}).status_code == 202
        wait_for(lambda: any(h["text"] == "Xin cảm ơn C" for h in sms_hits(http_sink)), what="old version runs")

        config.write_text(good.replace("Xin cảm ơn", "Cám ơn"))
        wait_for(lambda: daemon.metric("flowctl_reload_ok", missing=-1.0) == 1, what="fixed file loads")
        assert daemon.put("deal", "4", {"title": "D", "phone": "0901234567"}).status_code == 202
        wait_for(lambda: any(h["text"] == "Cám ơn D" for h in sms_hits(http_sink)), what="fixed version runs")
        assert daemon.terminate() == 0
    finally:
        daemon.stop_quietly()


def test_sighup_reloads(tmp_path: Path, config_dir: Path, http_sink: HttpSink) -> None:
    daemon = Daemon(config_dir, f"sqlite:///{tmp_path / 'h.db'}")
    config = config_dir / "flowctl.yaml"
    try:
        daemon.start()
        config.write_text(
            config.read_text().replace('text: "Cảm ơn {{ record.title }}"', 'text: "Cảm ơn bạn {{ record.title }}"')
        )
        time.sleep(2.5)  # without --watch nothing happens until the signal
        assert daemon.put("deal", "1", {"title": "A", "phone": "0901234567"}).status_code == 202
        wait_for(lambda: any(h["text"] == "Cảm ơn A" for h in sms_hits(http_sink)), what="old text")
        daemon.send_signal(signal.SIGHUP)
        wait_for(lambda: "reloaded" in daemon.output(), what="reload on SIGHUP")
        assert daemon.put("deal", "2", {"title": "B", "phone": "0901234567"}).status_code == 202
        wait_for(lambda: any(h["text"] == "Cảm ơn bạn B" for h in sms_hits(http_sink)), what="new text")
    finally:
        daemon.stop_quietly()


class Writer:
    """A client that keeps putting new deals (one every 0.1 s) and remembers the accepted titles."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.accepted: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        n = 0
        while not self.stop.wait(0.1):
            n += 1
            try:
                answer = self.daemon.put("deal", f"w{n}", {"title": f"W{n}", "phone": "0901234567"})
            except httpx.HTTPError:
                continue
            if answer.status_code == 202:
                self.accepted.append(f"W{n}")

    def finish(self) -> list[str]:
        self.stop.set()
        self.thread.join(timeout=30)
        return list(self.accepted)


def test_an_invalid_edit_leaves_both_processes_on_the_deployed_version(
    tmp_path: Path, config_dir: Path, http_sink: HttpSink
) -> None:
    daemon = Daemon(config_dir, f"sqlite:///{tmp_path / 'i.db'}", args=("--watch",))
    config = config_dir / "flowctl.yaml"
    good = config.read_text()
    writer = Writer(daemon)
    try:
        daemon.start()
        writer.thread.start()
        config.write_text(good.replace("delay: 3s", "delay: 2days"))  # what the user saved
        wait_for(lambda: "reload invalid" in daemon.output(), what="the refused reload")
        first = daemon.engine_pid()
        os.kill(first, signal.SIGKILL)  # the engine process exits (for any reason) while the file is invalid
        wait_for(lambda: "starting it again" in daemon.output(), what="the restart in the log")
        wait_for(lambda: daemon.engine_pid_or_none() not in (None, first), what="a new engine process")
        wait_for(lambda: daemon.get("/readyz", timeout=5).status_code == 200, what="ready again")
        seen = len(writer.accepted)
        wait_for(lambda: len(writer.accepted) >= seen + 10, what="more accepted writes")
        accepted = writer.finish()
        wait_for(
            lambda: {f"Cảm ơn {t}" for t in accepted} <= {h["text"] for h in sms_hits(http_sink)},
            timeout=30,
            what="every accepted change processed on the deployed version",
        )
        assert "does not validate" not in daemon.output()
        assert daemon.metric("flowctl_engine_restarts_total", missing=-1.0) == 1

        # the fixed file (with a new field and a new text) applies in both processes: the API
        # accepts the new field, the engine renders the new text
        fixed = good.replace("    note: string\n", "    note: string\n    city: string\n").replace(
            'text: "Cảm ơn {{ record.title }}"', 'text: "Cảm ơn {{ record.title }} ở {{ record.city }}"'
        )
        config.write_text(fixed)
        wait_for(lambda: "reloaded" in daemon.output(), what="the fixed file deployed")
        answer = daemon.put("deal", "fixed", {"title": "F", "phone": "0901234567", "city": "Huế"})
        assert answer.status_code == 202, answer.text
        wait_for(lambda: any(h["text"] == "Cảm ơn F ở Huế" for h in sms_hits(http_sink)), what="the new version")
        assert daemon.terminate() == 0
    finally:
        writer.stop.set()
        daemon.stop_quietly()


def test_readyz_is_503_while_the_engine_process_has_no_version_to_run(
    tmp_path: Path, config_dir: Path, http_sink: HttpSink
) -> None:
    database = tmp_path / "n.db"
    daemon = Daemon(config_dir, f"sqlite:///{database}")
    try:
        daemon.start()
        with sqlite3.connect(database) as db:
            files = db.execute("select files from config_versions where current").fetchone()[0]
            db.execute("update config_versions set files = null")  # stored without its files: not rebuildable
        os.kill(daemon.engine_pid(), signal.SIGKILL)
        wait_for(lambda: "starting it again" in daemon.output(), what="the restart in the log")
        wait_for(lambda: daemon.engine_pid_or_none() is not None, what="a new engine process")
        time.sleep(2.0)  # the new child had the time to look for a version
        answer = daemon.get("/readyz", timeout=5)
        assert answer.status_code == 503, answer.text
        assert "engine" in answer.json()["error"]["message"] + " ".join(answer.json()["error"]["details"])
        assert daemon.engine_pid_or_none() is not None  # alive and waiting, not exiting in a loop
        with sqlite3.connect(database) as db:
            db.execute("update config_versions set files = ? where current", (files,))
        wait_for(lambda: daemon.get("/readyz", timeout=5).status_code == 200, what="ready again")
        assert daemon.put("deal", "1", {"title": "A", "phone": "0901234567"}).status_code == 202
        wait_for(lambda: any(h["text"] == "Cảm ơn A" for h in sms_hits(http_sink)), what="processed")
        assert daemon.metric("flowctl_engine_restarts_total", missing=-1.0) == 1
    finally:
        daemon.stop_quietly()
