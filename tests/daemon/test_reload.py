"""Hot reload of a running daemon: --watch and SIGHUP validate and plan first, never half-apply."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import httpx

from tests.conftest import HttpSink
from tests.daemon.harness import Daemon
from tests.daemon.test_daemon import sms_hits, wait_for


def metric(daemon: Daemon, name: str) -> float:
    text = httpx.get(f"{daemon.url}/metrics", timeout=10).text
    match = re.search(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.M)
    return float(match.group(1)) if match else -1.0


def test_watch_reloads_a_valid_change_and_refuses_a_broken_one(tmp_path: Path, config_dir: Path,
                                                                http_sink: HttpSink) -> None:  # fmt: skip
    daemon = Daemon(config_dir, f"sqlite:///{tmp_path / 'r.db'}", args=("--watch",))
    config = config_dir / "flowctl.yaml"
    try:
        daemon.start()
        assert daemon.put("deal", "1", {"title": "A", "phone": "0901234567"}).status_code == 202
        wait_for(lambda: any(h["text"] == "Cảm ơn A" for h in sms_hits(http_sink)), what="first SMS")

        config.write_text(config.read_text().replace('text: "Cảm ơn {{ record.title }}"',
                                                     'text: "Xin cảm ơn {{ record.title }}"'))  # fmt: skip
        wait_for(lambda: "switched" in daemon.output() or "reloaded" in daemon.output(), what="reload")
        assert daemon.put("deal", "2", {"title": "B", "phone": "0901234567"}).status_code == 202
        wait_for(lambda: any(h["text"] == "Xin cảm ơn B" for h in sms_hits(http_sink)), what="new text")
        assert metric(daemon, "flowctl_reload_ok") == 1

        good = config.read_text()
        config.write_text(good.replace("action: send_sms, text:", "action: send_smss, text:"))
        wait_for(lambda: "reload invalid" in daemon.output(), what="refused reload")
        assert metric(daemon, "flowctl_reload_ok") == 0
        assert daemon.put("deal", "3", {"title": "C", "phone": "0901234567"}).status_code == 202
        wait_for(lambda: any(h["text"] == "Xin cảm ơn C" for h in sms_hits(http_sink)), what="old version runs")

        config.write_text(good.replace("Xin cảm ơn", "Cám ơn"))
        wait_for(lambda: metric(daemon, "flowctl_reload_ok") == 1, what="fixed file loads")
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
        config.write_text(config.read_text().replace('text: "Cảm ơn {{ record.title }}"',
                                                     'text: "Cảm ơn bạn {{ record.title }}"'))  # fmt: skip
        time.sleep(2.5)  # without --watch nothing happens until the signal
        assert daemon.put("deal", "1", {"title": "A", "phone": "0901234567"}).status_code == 202
        wait_for(lambda: any(h["text"] == "Cảm ơn A" for h in sms_hits(http_sink)), what="old text")
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reloaded" in daemon.output(), what="reload on SIGHUP")
        assert daemon.put("deal", "2", {"title": "B", "phone": "0901234567"}).status_code == 202
        wait_for(lambda: any(h["text"] == "Cảm ơn bạn B" for h in sms_hits(http_sink)), what="new text")
    finally:
        daemon.stop_quietly()
