"""The daemon's PUT latency while ``flowctl db backup`` copies a large SQLite database.

1. builds a SQLite database of ``--size-mb`` (default 1024) the way months of running make one:
   processed changes, records, finished runs with their traces and sent SMS rows, written
   directly with SQL (the schema is made by ``open_store``, so the rows are the daemon's);
2. starts ``flowctl run`` on it, with an SMS channel on a loopback HTTP gateway;
3. sends ``--rate`` PUTs a second (default 200) from a few client threads, each at its due time,
   and measures each PUT from its due time to its answer (a late start counts: no coordinated
   omission);
4. after ``--before`` seconds runs ``flowctl db backup`` (the real command, in its own process)
   and keeps the load on until it has finished and ``--after`` seconds more;
5. prints p50/p99/max before, during and after the backup, the backup's own report and how
   large the daemon's WAL grew while the backup held its snapshot.

The last line prints the p99 during the copy in ms (the whole ``flowctl db backup`` command: its
start-up, the copy and the check of the copy).

    python bench/bench_backup.py [--size-mb 1024] [--rate 200] [--before 20] [--after 5] [--check quick]
                                 [--workdir D --reuse]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import support

from flowctl.store import open_store
from flowctl.testing import free_port

CONFIG = """\
apiVersion: flowctl/v1
kind: Config
metadata: {name: bench}
spec: {timezone: Asia/Ho_Chi_Minh}
---
apiVersion: flowctl/v1
kind: ObjectType
metadata: {name: deal}
spec:
  fields:
    title: {type: string, required: true}
    phone: phone
    amount: money
---
apiVersion: flowctl/v1
kind: Channel
metadata: {name: sms}
spec: {type: http, url: "%(url)s/sms", body: {to: "{{ to }}", text: "{{ text }}"}}
---
apiVersion: flowctl/v1
kind: Pipeline
metadata: {name: sales}
spec:
  object: deal
  stages:
    - id: new
      rules:
        - {name: thank, action: send_sms, text: "Cam on {{ record.title }}, don {{ record.amount }}",
           to: "{{ record.phone }}"}
    - id: won
      final: success
"""

BATCH = 5_000


def fill(db: Path, size_mb: int) -> int:
    """Write finished work until the file has ``size_mb`` MiB; return the number of deals."""
    open_store(f"sqlite:///{db}").close()  # the schema, at the newest revision
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=OFF")  # the daemon is not running yet: nothing to protect
    conn.execute("PRAGMA synchronous=OFF")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    n = 0
    while db.stat().st_size < size_mb << 20:
        conn.execute("BEGIN")
        changes, records, runs, outbox = [], [], [], []
        for i in range(n, n + BATCH):
            at = (start + timedelta(seconds=i * 5)).isoformat()
            fields = json.dumps({"title": f"Đơn hàng số {i}", "phone": f"09{i % 10**8:08d}", "amount": 1_500_000 + i})
            text = f"Cam on Don hang so {i}, don {1_500_000 + i}"
            sms = {
                "to": f"09{i % 10**8:08d}",
                "text": text,
                "encoding": "GSM-7",
                "segments": 1,
                "characters": len(text),
            }
            trace = [
                {"at": at, "node": "thank", "kind": "enter", "detail": "entered stage new"},
                {"at": at, "node": "thank", "kind": "effect", "detail": "send_sms", "values": sms},
                {"at": at, "node": "thank", "kind": "end", "detail": "done"},
            ]
            changes.append((f"fill-{i}", f"f{i}", fields, at, at))
            records.append((f"f{i}", fields, at))
            runs.append((f"c{i}/run1", f"f{i}", at, at, json.dumps(trace), i))
            outbox.append((f"c{i}/run1:0", f"f{i}", f"c{i}/run1", json.dumps(sms), at, at, sms["to"]))
        conn.executemany(
            "INSERT INTO changes (idempotency_key, object, record_id, op, fields, stage, pipeline, event, data,"
            " source, status, attempts, error, received_at, processed_at)"
            " VALUES (?, 'deal', ?, 'put', ?, '', '', '', '{}', 'api', 'done', 1, '', ?, ?)",
            changes,
        )
        conn.executemany(
            "INSERT INTO records (object, id, fields, stage, pipeline, owner, version, deleted, updated_at)"
            " VALUES ('deal', ?, ?, 'won', 'sales', '', 2, 0, ?)",
            records,
        )
        conn.executemany(
            "INSERT INTO runs (id, automation, object, record_id, status, node, waiting_for, entry, visits, steps,"
            " started_at, updated_at, config_version, trace, seq)"
            " VALUES (?, 'rule:sales/new/thank', 'deal', ?, 'done', 'thank', '', 'entry1', '{}', 1, ?, ?,"
            " 'fill', ?, ?)",
            runs,
        )
        conn.executemany(
            "INSERT INTO outbox (key, channel, action, object, record_id, run_id, payload, status, attempts,"
            " last_error, created_at, sent_at, recipient) VALUES (?, 'sms', 'send_sms', 'deal', ?, ?, ?, 'sent', 1,"
            " '', ?, ?, ?)",
            outbox,
        )
        conn.execute("COMMIT")
        n += BATCH
    conn.close()
    return n


class Load:
    """``rate`` PUTs a second from ``threads`` clients; each PUT's latency from its due time."""

    def __init__(self, url: str, rate: int, threads: int = 8) -> None:
        self.url, self.rate, self.threads = url, rate, threads
        self.start = time.monotonic() + 0.5
        self.prefix = f"live-{os.getpid()}"  # new records on every run, also on a reused database
        self.done: list[tuple[float, float, int]] = []  # (due, latency ms, status)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.workers = [threading.Thread(target=self.run, args=(k,), daemon=True) for k in range(threads)]
        for worker in self.workers:
            worker.start()

    def run(self, k: int) -> None:
        with httpx.Client(timeout=30) as client:
            i = k
            while not self.stop.is_set():
                due = self.start + i / self.rate
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                body = {"fields": {"title": f"Live {i}", "phone": "0901234567", "amount": 1000 + i}}
                try:
                    status = client.put(f"{self.url}/v1/records/deal/{self.prefix}-{i}", json=body).status_code
                except httpx.HTTPError:
                    status = 0
                with self.lock:
                    self.done.append((due, (time.monotonic() - due) * 1000, status))
                i += self.threads

    def between(self, since: float, until: float) -> list[float]:
        with self.lock:
            return sorted(ms for due, ms, _ in self.done if since <= due < until)

    def failed(self) -> int:
        with self.lock:
            return sum(1 for _, _, status in self.done if status not in (200, 202))

    def close(self) -> None:
        self.stop.set()
        for worker in self.workers:
            worker.join(timeout=60)


class Wal:
    """The largest size of the daemon's WAL while the backup holds its snapshot (sampled)."""

    def __init__(self, path: Path) -> None:
        self.path, self.peak, self.stop = path, 0, threading.Event()
        threading.Thread(target=self.run, daemon=True).start()

    def run(self) -> None:
        while not self.stop.wait(0.2):
            with contextlib.suppress(OSError):  # no WAL at this moment
                self.peak = max(self.peak, self.path.stat().st_size)


def figures(latencies: list[float]) -> str:
    if not latencies:
        return "no requests"
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[max(0, int(len(latencies) * 0.99) - 1)]
    return f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {latencies[-1]:.1f} ms ({len(latencies)} PUTs)"


def p99(latencies: list[float]) -> float:
    return latencies[max(0, int(len(latencies) * 0.99) - 1)] if latencies else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1024, help="size of the database to back up")
    parser.add_argument("--rate", type=int, default=200, help="PUTs a second during the whole run")
    parser.add_argument("--before", type=float, default=20.0, help="seconds of load measured before the backup")
    parser.add_argument("--after", type=float, default=5.0, help="seconds of load after the backup")
    parser.add_argument("--workdir", type=Path, default=None, help="where the database goes (default: a temp dir)")
    parser.add_argument("--check", choices=["full", "quick"], default="full", help="flowctl db backup --check")
    parser.add_argument("--reuse", action="store_true", help="keep the database a previous run left in --workdir")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="flowctl-bench-backup-"))
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "flowctl.db"
    (workdir / "backup.db").unlink(missing_ok=True)
    if args.reuse and db.exists():
        print(f"reusing {db.stat().st_size / 2**20:,.0f} MiB at {db}", flush=True)
    else:
        db.unlink(missing_ok=True)
        began = time.monotonic()
        deals = fill(db, args.size_mb)
        size = db.stat().st_size / 2**20
        print(f"filled {size:,.0f} MiB with {deals:,} finished deals in {time.monotonic() - began:.0f} s", flush=True)

    gateway = support.gateway(0.002)
    (workdir / "config").mkdir(exist_ok=True)
    url = f"http://127.0.0.1:{gateway.server_address[1]}"
    (workdir / "config" / "flowctl.yaml").write_text(CONFIG % {"url": url})
    port = free_port()
    daemon_url = f"http://127.0.0.1:{port}"
    log = (workdir / "daemon.log").open("w")
    command = [sys.executable, "-m", "flowctl", "run", str(workdir / "config"), "--db", f"sqlite:///{db}"]
    daemon = subprocess.Popen(
        [*command, "--listen", f"127.0.0.1:{port}", "--log-level", "warning"],
        stdout=subprocess.DEVNULL,
        stderr=log,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    load: Load | None = None
    try:
        support_ready(f"{daemon_url}/readyz")
        load = Load(daemon_url, args.rate)
        time.sleep(3.0)  # warm up: connections, caches
        measured = time.monotonic()
        time.sleep(args.before)
        backup_started = time.monotonic()
        wal = Wal(Path(f"{db}-wal"))
        options = ["--format", "json", "--check", args.check]
        backup = subprocess.run(
            [*command[:3], "db", "backup", str(workdir / "backup.db"), "--db", f"sqlite:///{db}", *options],
            capture_output=True,
            text=True,
        )
        backup_ended = time.monotonic()
        wal.stop.set()
        if backup.returncode != 0:
            raise SystemExit(f"flowctl db backup failed: {backup.stderr}")
        report = json.loads(backup.stdout)
        time.sleep(args.after)
        load.close()
        before = load.between(measured, backup_started)
        during = load.between(backup_started, backup_ended)
        after = load.between(backup_ended, backup_ended + args.after)
        # the command's phases, from its own timings: start-up, copy, check
        copied = backup_ended - report["check_seconds"]
        copying = copied - report["copy_seconds"]
        phases = {
            "start-up": load.between(backup_started, copying),
            "copy": load.between(copying, copied),
            "check": load.between(copied, backup_ended),
        }
        print(
            f"backup: {report['bytes'] / 2**20:,.0f} MiB, {report['pages']:,} pages, copied in "
            f"{report['copy_seconds']:.1f} s, checked ({report['check']}) in {report['check_seconds']:.1f} s, "
            f"{backup_ended - backup_started:.1f} s for the whole command; integrity {report['integrity']}",
            flush=True,
        )
        print(f"PUT at {args.rate}/s before the backup: {figures(before)}", flush=True)
        print(f"PUT at {args.rate}/s during the backup: {figures(during)}", flush=True)
        for phase, latencies in phases.items():
            print(f"  of which {phase}: {figures(latencies)}", flush=True)
        print(f"PUT at {args.rate}/s after the backup:  {figures(after)}", flush=True)
        print(f"failed PUTs: {load.failed()}; the daemon's WAL peaked at {wal.peak / 2**20:,.0f} MiB", flush=True)
        print(f"p99 during the copy (the whole backup command: start-up, copy, check): {p99(during):.1f} ms")
    finally:
        if load is not None:
            load.close()
        daemon.terminate()
        daemon.wait(30)
        gateway.shutdown()


def support_ready(url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"the daemon was not ready within {timeout:g} s: {url}")


if __name__ == "__main__":
    main()
