"""End-to-end rate over HTTP: POST/PUT to outbox row committed, on SQLite (synchronous=FULL).

Measured in one run, on this machine:
  1. a bare uvicorn + starlette endpoint that parses the JSON and answers (the baseline);
  2. the flowctl daemon on bench/e2e_config (one stage rule renders one SMS) with 1, 8 and 64
     concurrent clients: the rate of changes whose outbox row is committed;
  3. p99 latency from request to outbox row at a paced 200 changes/s;
  4. the daemon's peak resident memory over the whole run (--changes, default 100,000).

With --token the daemon's Config has four access tokens and every request carries the writer's
(``Authorization: Bearer``), so the run measures the role check on the hot path too.

The load comes from wrk (Debian package ``wrk``) on the other core. The last line prints the
64-client rate and its ratio to the bare endpoint.

    python bench/bench_e2e.py [--seconds 8] [--changes 100000] [--token]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "e2e_config"

BARE_APP = """
import json
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

async def put(request):
    body = json.loads(await request.body())
    return JSONResponse({"accepted": True, "fields": len(body.get("fields", {}))}, status_code=202)

app = Starlette(routes=[Route("/v1/records/{object}/{id}", put, methods=["PUT"])])
"""

WRK_SCRIPT = """
local counter = 0
local threads = {}
function setup(thread)
  thread:set("prefix", "%(prefix)s" .. tostring(#threads))
  table.insert(threads, thread)
end
function request()
  counter = counter + 1
  local body = '{"fields": {"title": "Don ' .. counter .. '", "phone": "0901234567", "amount": 1500000}}'
  return wrk.format("PUT", "/v1/records/deal/" .. prefix .. "-" .. counter,
                    {["Content-Type"] = "application/json"%(auth)s}, body)
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def daemon_argv(db: Path, port: int, config: Path = CONFIG) -> list[str]:
    """``flowctl run`` on ``config`` with SQLite at ``db``, listening on ``port``, warnings only."""
    argv = [sys.executable, "-m", "flowctl", "run", str(config), "--db", f"sqlite:///{db}"]
    return [*argv, "--listen", f"127.0.0.1:{port}", "--log-level", "warning"]


def wait_ready(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"not ready: {url}")


TOKEN = "bench-writer-token-0123456789abcdef"
ACCESS = """  access:
    - {name: ci, token: "${BENCH_VIEWER}", role: viewer}
    - {name: crm-sync, token: "${BENCH_WRITER}", role: writer, objects: [deal]}
    - {name: support, token: "${BENCH_OPERATOR}", role: operator}
    - {name: ops, token: "${BENCH_ADMIN}", role: admin}
"""
ACCESS_ENV = {"BENCH_VIEWER": "v" * 32, "BENCH_WRITER": TOKEN, "BENCH_OPERATOR": "o" * 32, "BENCH_ADMIN": "a" * 32}
AUTH: dict[str, str] = {}  # the header every request carries (--token)


def with_tokens(workdir: Path) -> Path:
    """A copy of the bench config whose Config sets ACCESS."""
    config = workdir / "config"
    shutil.copytree(CONFIG, config)
    main = config / "flowctl.yaml"
    spec = "spec: {timezone: Asia/Ho_Chi_Minh}\n"
    assert spec in main.read_text()
    main.write_text(main.read_text().replace(spec, "spec:\n  timezone: Asia/Ho_Chi_Minh\n" + ACCESS, 1))
    return config


def wrk(
    url: str,
    connections: int,
    seconds: float,
    prefix: str,
    workdir: Path,
    pin: str = "",
    latencies: dict[str, float] | None = None,
) -> tuple[float, int]:
    """Run wrk (on CPU ``pin`` when given); return (requests/s, non-2xx count). With
    ``latencies`` it also fills in wrk's latency percentiles, in ms: ``{"50%": 1.04, …, "99%": 8.2}``."""
    script = workdir / f"load-{prefix}.lua"
    auth = "".join(f', ["{name}"] = "{value}"' for name, value in AUTH.items())
    script.write_text(WRK_SCRIPT % {"prefix": prefix, "auth": auth})
    pinned = ["taskset", "-c", pin] if pin else []
    options = [f"-c{connections}", f"-d{max(1, round(seconds))}s", *(["--latency"] if latencies is not None else [])]
    out = subprocess.run(
        [*pinned, "wrk", "-t1", *options, "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if latencies is not None:
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
        for share, value, unit in re.findall(r"^\s+(\d+%)\s+([\d.]+)(us|ms|s)$", out, re.M):
            latencies[share] = float(value) * scale[unit]
    return rate, int(bad.group(1)) if bad else 0


def outbox_count(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        return int(conn.execute("select count(*) from outbox").fetchone()[0])


def changes_done(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        return int(conn.execute("select count(*) from changes where status = 'done'").fetchone()[0])


class Rss:
    """Samples the resident memory of a process and its children every 100 ms; keeps the peak of
    the largest one (each process must stay under the limit)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self.stop = pid, 0, threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _pids(self) -> list[int]:
        try:
            children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        except OSError:
            children = []
        return [self.pid, *map(int, children)]

    def _run(self) -> None:
        while not self.stop.is_set():
            for pid in self._pids():
                try:
                    text = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                found = re.search(r"VmRSS:\s+(\d+)", text)  # absent once the process is a zombie
                if found:
                    self.peak = max(self.peak, int(found.group(1)) // 1024)
            self.stop.wait(0.1)


def measure_bare(seconds: float, workdir: Path) -> float:
    port = free_port()
    app_file = workdir / "bare_app.py"
    app_file.write_text(BARE_APP)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bare_app:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=workdir,
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/v1/records/deal/x")
        rate, _ = wrk(f"http://127.0.0.1:{port}", 64, seconds, "bare", workdir)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    return rate


def drain(db: Path, target: int, timeout: float = 300.0) -> float:
    """Wait until ``target`` outbox rows exist; return when that happened (monotonic)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if outbox_count(db) >= target:
            return time.monotonic()
        time.sleep(0.02)
    raise SystemExit(f"outbox stuck at {outbox_count(db)} of {target}")


def paced_latency(url: str, db: Path, rate: int, seconds: float) -> list[float]:
    """Send ``rate`` changes/s; latency = outbox row's commit stamp - the request's send time."""
    sent: dict[str, float] = {}
    client = httpx.Client(timeout=30, headers=AUTH)
    start = time.time()
    n = int(rate * seconds)
    for i in range(n):
        due = start + i / rate
        pause = due - time.time()
        if pause > 0:
            time.sleep(pause)
        key = f"lat-{i}"
        sent[key] = time.time()
        client.put(
            f"{url}/v1/records/deal/{key}", json={"fields": {"title": f"L {i}", "phone": "0901234567", "amount": 1000}}
        )
    client.close()
    time.sleep(1.0)
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        rows = conn.execute("select record_id, created_at from outbox where record_id like 'lat-%'").fetchall()
    latencies = []
    for record_id, created in rows:
        stamp = datetime.fromisoformat(created).timestamp()
        latencies.append((stamp - sent[record_id]) * 1000)
    return sorted(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each load step")
    parser.add_argument("--changes", type=int, default=100_000, help="changes for the memory run")
    parser.add_argument("--token", action="store_true", help="access tokens in Config; requests carry one")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("this benchmark needs wrk: apt-get install wrk")
    workdir = Path(tempfile.mkdtemp(prefix="flowctl-bench-"))
    bare = measure_bare(args.seconds, workdir)
    print(f"bare parse-and-answer endpoint, 64 clients: {bare:,.0f} req/s", flush=True)

    db = workdir / "flowctl.db"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    config = CONFIG
    if args.token:
        config = with_tokens(workdir)
        env.update(ACCESS_ENV)
        AUTH["Authorization"] = f"Bearer {TOKEN}"
    log = (workdir / "daemon.log").open("w")
    daemon = subprocess.Popen(
        daemon_argv(db, port, config),
        stdout=subprocess.DEVNULL,
        stderr=log,
        env=env,
    )
    rss = Rss(daemon.pid)
    results: dict[str, float] = {}
    try:
        wait_ready(f"{url}/readyz")
        for clients in (1, 8, 64):
            before = outbox_count(db)
            started = time.monotonic()
            accepted_rate, bad = wrk(url, clients, args.seconds, f"c{clients}", workdir)
            accepted = changes_total(db) - before
            finished = drain(db, before + accepted)
            rate = accepted / (finished - started)
            results[str(clients)] = rate
            print(
                f"flowctl, {clients:2d} clients: {accepted_rate:,.0f} accepted/s (HTTP), "
                f"{rate:,.0f} changes/s to outbox row committed ({accepted} changes, {bad} non-2xx)",
                flush=True,
            )
        lat = paced_latency(url, db, 200, min(args.seconds, 10))
        p50, p99 = lat[len(lat) // 2], lat[int(len(lat) * 0.99) - 1]
        print(
            f"latency at 200 changes/s, request to outbox row: p50 {p50:.1f} ms, p99 {p99:.1f} ms ({len(lat)} changes)",
            flush=True,
        )
        remaining = args.changes - outbox_count(db)
        if remaining > 0:
            seconds = max(2.0, remaining / max(results["64"], 1.0))
            before = outbox_count(db)
            wrk(url, 64, seconds, "mem", workdir)
            drain(db, before + (changes_total(db) - before))
        total = outbox_count(db)
        print(f"resident memory: peak {rss.peak} MB over {total:,} changes", flush=True)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
        rss.stop.set()
        log.close()
    ratio = results["64"] / bare
    print(
        json.dumps(
            {
                "bare": round(bare),
                **{f"clients_{k}": round(v) for k, v in results.items()},
                "p99_ms": round(p99, 1),
                "rss_mb": rss.peak,
            }
        )
    )
    print(
        f"e2e{' (with a writer token)' if args.token else ''}: {results['64']:,.0f} changes/s with 64 clients "
        "on SQLite synchronous=FULL "
        f"= {ratio:.2f} of a bare endpoint ({bare:,.0f} req/s); p99 {p99:.1f} ms at 200/s; peak RSS {rss.peak} MB"
    )


def changes_total(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        return int(conn.execute("select count(*) from changes").fetchone()[0])


if __name__ == "__main__":
    main()
