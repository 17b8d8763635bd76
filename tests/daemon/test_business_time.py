"""A real daemon holds an ``only_during:`` action outside working hours and sends it when the
working minute comes. The calendar's window opens at the next full minute at least thirty seconds
away (calendars count in minutes), so the test waits for a moment, never on how fast anything runs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from flowctl.testing import Daemon, wait_for
from tests.conftest import HttpSink
from tests.daemon.configs import deal_config, http_channel, sales_pipeline

LEAD = timedelta(seconds=30)  # room for the daemon to start (and restart) before the window opens


def window_from(now: datetime) -> tuple[datetime, str]:
    """The next full minute at least ``LEAD`` after ``now``, and a five-minute span from it."""
    opens = (now + LEAD).replace(second=0, microsecond=0) + timedelta(minutes=1)
    closes = opens + timedelta(minutes=5)
    end = "24:00" if closes.date() != opens.date() else closes.strftime("%H:%M")
    return opens, f"{opens:%H:%M}-{end}"


def sms_texts(sink: HttpSink) -> list[str]:
    return [h.json()["text"] for h in sink.hits if h.path == "/sms"]


@pytest.mark.slow
def test_an_only_during_sms_waits_for_the_working_minute_across_a_restart(tmp_path: Path, http_sink: HttpSink) -> None:
    opens, span = window_from(datetime.now(UTC))
    days = "[mon, tue, wed, thu, fri, sat, sun]"
    spec = f'{{timezone: UTC, calendars: {{window: {{days: {days}, hours: ["{span}"]}}}}}}'
    rules = """\
        - {name: in hours, action: send_sms, text: "Hẹn {{ record.title }}", to: "{{ record.phone }}", \
only_during: window}
        - {name: at once, action: send_sms, text: "Ngay {{ record.title }}", to: "{{ record.phone }}"}
"""
    then = http_channel("sms", f"{http_sink.url}/sms") + "---\n" + sales_pipeline(rules)
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "flowctl.yaml").write_text(deal_config("    phone: phone\n", spec=spec, then=then))
    daemon = Daemon(folder, f"sqlite:///{tmp_path / 'flowctl.db'}")
    try:
        daemon.start()
        assert daemon.put("deal", "1", {"title": "Tủ", "phone": "0901234567"}).status_code == 202
        wait_for(lambda: "Ngay Tủ" in sms_texts(http_sink), what="the SMS without only_during")
        held = f"{daemon.url}/v1/runs/{_run_id(daemon)}"
        detail = httpx.get(held, headers=daemon.headers(), timeout=10).json()
        assert datetime.now(UTC) < opens, "the daemon took longer than LEAD to start; the hold was not observable"
        assert detail["status"] == "waiting"
        assert f"held until {opens.isoformat()}" in detail["trace"][-1]["detail"]
        assert "Hẹn Tủ" not in sms_texts(http_sink)
        assert daemon.terminate() == 0  # the hold is a timer row in the database, not a sleep in memory
        daemon.start()
        timeout = (opens - datetime.now(UTC)).total_seconds() + 30
        wait_for(lambda: "Hẹn Tủ" in sms_texts(http_sink), timeout=timeout, what="the held SMS")
        assert datetime.now(UTC) >= opens, "sent before the working minute"
        assert sms_texts(http_sink).count("Hẹn Tủ") == 1
        assert daemon.terminate() == 0
    finally:
        daemon.stop_quietly()


def _run_id(daemon: Daemon) -> str:
    answer = httpx.get(
        f"{daemon.url}/v1/runs",
        params={"automation": "rule:sales/new/in hours", "object": "deal", "record": "1"},
        headers=daemon.headers(),
        timeout=10,
    )
    (run,) = answer.json()["items"]
    return str(run["id"])
