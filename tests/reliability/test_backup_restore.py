"""Backup and restore with a real daemon, a real SMS gateway and the real ``flowctl db`` commands.

"Yesterday's backup": a daemon takes deals, each sending an SMS at once, one 5 s later and one
25 s later, and one deal waits in ``quoted`` for ``invoice.paid``. ``flowctl db backup`` copies the
database while it runs; more deals follow, the 5 s timers fire, and the daemon is SIGKILLed.
``flowctl db restore`` puts the backup into a new database and a daemon started on it resumes the
pending timers and the waiting run. The gateway counts requests per Idempotency-Key: what the
backup recorded as sent is never sent again; what was sent after the backup is sent again with
the same key (a gateway that honours it drops the copy).

Another test takes backups while clients keep writing: each copy passes its integrity check
and is one snapshot (every processed change has its SMS row, no more, no less).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowctl.testing import Daemon, wait_for
from tests.daemon.configs import deal_config, http_channel
from tests.reliability.gateway import Gateway, serve

SMS = 'channel: sms, to: "{{ record.phone }}"'
PIPELINE = f"""\
apiVersion: flowctl/v1
kind: Pipeline
metadata: {{name: sales}}
spec:
  object: deal
  stages:
    - id: new
      rules:
        - {{name: now, action: send_sms, text: "Now {{{{ record.title }}}}", {SMS}}}
        - {{name: soon, delay: 5s, action: send_sms, text: "Soon {{{{ record.title }}}}", {SMS}}}
        - {{name: later, delay: 25s, action: send_sms, text: "Later {{{{ record.title }}}}", {SMS}}}
    - id: quoted
      rules:
        - {{name: thanks, wait: {{event: invoice.paid, for: 30d}}, on_timeout: skip,
           action: send_sms, text: "Paid {{{{ record.title }}}}", {SMS}}}
    - id: done
"""
WAIT = {"Prefer": "wait=10"}


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    with serve() as gw:
        yield gw


def config(folder: Path, gateway: Gateway) -> Path:
    folder.mkdir()
    fields = "    phone: phone\n"
    (folder / "flowctl.yaml").write_text(
        deal_config(fields, then=http_channel("sms", f"{gateway.url}/sms") + "---\n" + PIPELINE)
    )
    return folder


def flowctl(*args: str) -> dict[str, Any]:
    """Run ``flowctl db …`` as a user does; its ``--format json`` document."""
    done = subprocess.run(
        [sys.executable, "-m", "flowctl", "db", *args, "--format", "json"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def put(daemon: Daemon, i: int, **extra: Any) -> None:
    answer = daemon.put(
        "deal", f"d{i}", {"title": f"D{i}", "phone": f"09{i:08d}"}, headers={"Idempotency-Key": f"k{i}"}, **extra
    )
    assert answer.status_code in (200, 201, 202), answer.text


def sent_keys(database: Path, text_prefix: str = "") -> dict[str, str]:
    """Outbox key -> status of the SMS rows in a SQLite file (``text_prefix`` filters on the text)."""
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT key, status, payload FROM outbox WHERE channel = 'sms'").fetchall()
    finally:
        db.close()
    return {key: status for key, status, payload in rows if json.loads(payload)["text"].startswith(text_prefix)}


def test_a_restored_backup_resumes_timers_and_waits_and_resends_nothing_it_recorded_as_sent(
    tmp_path: Path, gateway: Gateway, figures: Callable[..., None]
) -> None:
    folder = config(tmp_path / "config", gateway)
    live = tmp_path / "live.db"
    daemon = Daemon(folder, f"sqlite:///{live}")
    restored: Daemon | None = None
    try:
        daemon.start()
        for i in range(10):  # batch A
            put(daemon, i)
        answer = daemon.put("deal", "w", {"title": "W", "phone": "0900000099"}, stage="quoted", headers=WAIT)
        assert answer.status_code == 200, answer.text
        wait_for(lambda: len(gateway.keys("/sms")) >= 10, 30, "the first SMS of batch A")

        made = flowctl("backup", str(tmp_path / "yesterday.db"), "--db", f"sqlite:///{live}")
        assert made["integrity"] == "ok" and made["revision"], made
        in_backup = sent_keys(tmp_path / "yesterday.db")
        recorded_sent = {key for key, status in in_backup.items() if status == "sent"}
        assert len(recorded_sent) >= 10

        for i in range(10, 15):  # batch B: after the backup, lost with the live database
            put(daemon, i)
        first_and_soon = 15 + 10  # the first SMS of A and B, the 5 s ones of A
        wait_for(
            lambda: len(set(gateway.keys("/sms"))) >= first_and_soon, 60, "the SMS of batch B and the 5 s ones of A"
        )
        soon = set(sent_keys(live, "Soon "))
        before_kill = Counter(gateway.keys("/sms"))
        daemon.kill()

        new = tmp_path / "restored.db"
        put_back = flowctl("restore", str(tmp_path / "yesterday.db"), "--db", f"sqlite:///{new}")
        # a waiting run per delay not yet due (the 25 s ones at least) and the wait for invoice.paid,
        # each with its timer (the wait's: its 30 days)
        resumes = put_back["resumes"]
        assert resumes["waiting_runs"] == resumes["timers"] >= 11, resumes
        restored = Daemon(folder, f"sqlite:///{new}")
        restored.start(timeout=60)
        refused = subprocess.run(
            [
                sys.executable,
                "-m",
                "flowctl",
                "db",
                "restore",
                str(tmp_path / "yesterday.db"),
                "--db",
                f"sqlite:///{new}",
                "--force",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert refused.returncode == 1 and "a daemon (pid" in refused.stderr, refused.stderr

        event = {"event": "invoice.paid", "object": "deal", "id": "w", "data": {}}
        paid = httpx.post(f"{restored.url}/v1/events", json=event, headers=WAIT, timeout=30)
        assert paid.status_code == 200, paid.text

        def later_sent() -> bool:
            later = set(sent_keys(new, "Later "))
            return len(later) == 10 and later <= set(gateway.keys("/sms"))

        wait_for(later_sent, 60, "the 25 s SMS, from the restored timers")
        later = set(sent_keys(new, "Later "))
        paid_keys = set(sent_keys(new, "Paid "))
        wait_for(lambda: paid_keys and paid_keys <= set(gateway.keys("/sms")), 30, "the SMS of the waiting run")
        time.sleep(1)  # a copy would arrive now

        counts = Counter(gateway.keys("/sms"))
        again = {key: n for key, n in counts.items() if key in recorded_sent and n > 1}
        assert again == {}, f"sent again although the backup recorded them as sent: {again}"
        assert all(counts[key] == 1 for key in later)
        # what was sent after the backup is sent again, with the key it had: a gateway drops it
        resent = {key for key, n in counts.items() if n > 1}
        assert resent <= set(soon) and all(before_kill[key] == 1 for key in resent)
        figures(
            sent_in_backup=len(recorded_sent),
            resent_same_key=len(resent),
            timers_resumed=len(later),
            gateway_requests=sum(counts.values()),
            backup_bytes=made["bytes"],
        )
    finally:
        daemon.stop_quietly()
        if restored is not None:
            restored.stop_quietly()


def test_a_backup_taken_while_clients_write_is_one_consistent_snapshot(tmp_path: Path, gateway: Gateway) -> None:
    folder = config(tmp_path / "config", gateway)
    live = tmp_path / "live.db"
    stop = threading.Event()
    accepted: list[int] = []

    def write(daemon: Daemon) -> None:
        i = 1000
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                body = {"fields": {"title": f"D{i}", "phone": f"09{i:08d}"}}
                if client.put(f"{daemon.url}/v1/records/deal/d{i}", json=body).status_code in (200, 202):
                    accepted.append(i)
                i += 1

    with Daemon(folder, f"sqlite:///{live}") as daemon:
        writer = threading.Thread(target=write, args=(daemon,), daemon=True)
        writer.start()
        try:
            wait_for(lambda: len(accepted) >= 50, 60, "the first writes")
            copies = []
            for n in range(3):
                low = len(accepted)
                made = flowctl("backup", str(tmp_path / f"copy-{n}.db"), "--db", f"sqlite:///{live}")
                copies.append((made, low, len(accepted)))
        finally:
            stop.set()
            writer.join(timeout=30)
    for made, low, high in copies:
        assert made["integrity"] == "ok", made
        db = sqlite3.connect(made["file"])
        try:
            (changes,) = db.execute("SELECT count(*) FROM changes").fetchone()
            (done,) = db.execute("SELECT count(*) FROM changes WHERE processed_at IS NOT NULL").fetchone()
            (records,) = db.execute("SELECT count(*) FROM records").fetchone()
            (now,) = db.execute("SELECT count(*) FROM outbox WHERE payload LIKE '%Now %'").fetchone()
        finally:
            db.close()
        # every write accepted before the copy began is in it, none accepted after it ended
        # (the writer has one write in flight: committed, its answer not yet read)
        assert low <= changes <= high + 1, (low, changes, high)
        # the worker commits a change's processing, its record and its SMS rows at once
        assert done == records == now, (done, records, now)
