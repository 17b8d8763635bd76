"""What bench_soak.py and bench_purge.py share: a daemon config whose every new deal sends one SMS
to a loopback gateway that counts Idempotency-Keys, a paced writer that records PUT latencies, and
readings of a daemon's resident memory and its SQLite file's size.

Imported as ``retention_support`` (``python bench/bench_x.py`` puts ``bench/`` first on the path).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from flowctl.testing import write_config


class Gateway:
    """An SMS gateway on a loopback port: answers 200 at once and counts each Idempotency-Key."""

    def __init__(self) -> None:
        self.keys: Counter[str] = Counter()
        self.lock = threading.Lock()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with gateway.lock:
                    gateway.keys[self.headers.get("Idempotency-Key", "")] += 1
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def counts(self) -> tuple[int, int]:
        """(distinct keys received, keys received more than once)."""
        with self.lock:
            return len(self.keys), sum(1 for n in self.keys.values() if n > 1)


def write_daemon_config(directory: Path, gateway: str, retention: str, sends_in_flight: int = 1) -> Path:
    """A config: ``retention`` (a YAML flow mapping), a deal, and one SMS per created or updated deal."""
    return write_config(
        directory,
        {
            "flowctl.yaml": f"""\
apiVersion: flowctl/v1
kind: Config
metadata: {{name: bench}}
spec: {{timezone: UTC, retention: {retention}, limits: {{sends_in_flight: {sends_in_flight}}}}}
---
apiVersion: flowctl/v1
kind: ObjectType
metadata: {{name: deal}}
spec:
  fields:
    title: {{type: string, required: true}}
    phone: phone
---
apiVersion: flowctl/v1
kind: Channel
metadata: {{name: sms}}
spec:
  type: http
  url: "{gateway}/sms"
  body: {{to: "{{{{ to }}}}", text: "{{{{ text }}}}"}}
---
apiVersion: flowctl/v1
kind: Flow
metadata: {{name: thanks}}
spec:
  object: deal
  trigger: {{on: created}}
  start: sms
  nodes:
    sms: {{type: send_sms, channel: sms, to: "{{{{ record.phone }}}}", text: "Cam on {{{{ record.title }}}}"}}
---
apiVersion: flowctl/v1
kind: Flow
metadata: {{name: changed}}
spec:
  object: deal
  trigger: {{on: updated}}
  start: sms
  nodes:
    sms: {{type: send_sms, channel: sms, to: "{{{{ record.phone }}}}", text: "Da cap nhat {{{{ record.title }}}}"}}
"""
        },
    )


class Writer:
    """PUTs deals (new ones, or with ``records`` the same ``records`` deals over and over: a CRM whose
    records change) at ``rate``/s from ``threads`` threads (each paced on its own schedule, so a
    slow answer on a loaded machine does not lower the rate) until
    stopped; keeps every answer's latency in ms with the monotonic time it was sent."""

    def __init__(self, url: str, rate: float, threads: int = 16, prefix: str = "d", records: int = 0) -> None:
        self.url, self.rate, self.prefix, self.records = url, rate, prefix, records
        self.stop = threading.Event()
        self.latencies: list[tuple[float, float]] = []  # (sent at, ms)
        self.accepted = 0
        self.failed = 0
        self.lock = threading.Lock()
        self._ids = itertools.count()
        self._threads = [threading.Thread(target=self._run, args=(threads,), daemon=True) for _ in range(threads)]

    def start(self) -> Writer:
        for thread in self._threads:
            thread.start()
        return self

    def _run(self, threads: int) -> None:
        interval = threads / self.rate
        with httpx.Client(base_url=self.url, timeout=30) as client:
            due = time.monotonic()
            while not self.stop.is_set():
                due += interval
                n = next(self._ids)
                body = {"fields": {"title": f"Deal {n}", "phone": f"09{n % 100_000_000:08d}"}}
                sent = time.monotonic()
                try:
                    id_ = n % self.records if self.records else n
                    ok = client.put(f"/v1/records/deal/{self.prefix}{id_}", json=body).status_code == 202
                except httpx.HTTPError:
                    ok = False
                took = (time.monotonic() - sent) * 1000
                with self.lock:
                    self.latencies.append((sent, took))
                    self.accepted += ok
                    self.failed += not ok
                pause = due - time.monotonic()
                if pause > 0:
                    self.stop.wait(pause)

    def halt(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def p99(self, since: float = 0.0, until: float = float("inf")) -> tuple[float, int]:
        """The p99 latency (ms) of the requests sent in [since, until), and how many there were."""
        with self.lock:
            found = sorted(ms for at, ms in self.latencies if since <= at < until)
        if not found:
            return 0.0, 0
        return found[max(int(len(found) * 0.99) - 1, 0)], len(found)


def rss_mb(pid: int) -> dict[int, float]:
    """Resident memory (MB) of ``pid`` and its children (the daemon's engine process)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    out = {}
    for each in (pid, *map(int, children)):
        try:
            status = Path(f"/proc/{each}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                out[each] = int(line.split()[1]) / 1024
    return out


def db_bytes(path: Path) -> int:
    """The SQLite file and its WAL."""
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
