"""Resident memory of both daemon processes over time at a paced rate of changes.

``flowctl run`` on bench/e2e_config with its SMS sent to a loopback HTTP gateway, fed ``--rate``
changes/s (PUT, paced from a few client threads) for ``--minutes``; every ``--every`` seconds it
prints the resident memory of the HTTP process and of the engine process (anonymous and file
parts), the database's size and the backlog. ``--trace FILE`` runs the engine process with
``FLOWCTL_TRACEMALLOC=FILE`` (docs/operations.md, "Memory over time"): its top allocations by line
each minute. Extra environment for the daemon: ``--env NAME=VALUE`` (e.g. MALLOC_ARENA_MAX=2).
``--stall-at S`` stops the engine process for ``--stall`` seconds at S, so a backlog builds and
the worker then takes full batches.

    python bench/bench_memory.py --minutes 10 --rate 200 [--trace /tmp/engine.trace]
"""

from __future__ import annotations

import argparse
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
from pathlib import Path

import httpx
import support

HERE = Path(__file__).resolve().parent
CHANNEL = """
---
apiVersion: flowctl/v1
kind: Channel
metadata: {name: sms}
spec:
  type: http
  url: "%s/sms"
  body: {to: "{{ to }}", text: "{{ text }}"}
"""


def status(pid: int) -> dict[str, int]:
    """VmRSS, RssAnon, RssFile, RssShmem of ``pid`` in KiB (empty once it is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return {k: int(v) for k, v in re.findall(r"(VmRSS|RssAnon|RssFile|RssShmem):\s+(\d+)", text)}


def engine_pid(parent: int) -> int | None:
    try:
        children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


WRK_PACED = """
local counter = 0
function delay() return %(delay_ms)d end
function request()
  counter = counter + 1
  local body = '{"fields": {"title": "Don ' .. counter .. '", "phone": "0901234567", "amount": 1500000}}'
  return wrk.format("PUT", "/v1/records/deal/w" .. math.random(1, 1000000000) .. "-" .. counter,
                    {["Content-Type"] = "application/json"}, body)
end
"""


def feed_wrk(url: str, rate: float, seconds: float, workdir: Path, connections: int = 8) -> subprocess.Popen[bytes]:
    """wrk on ``connections`` connections, each waiting ``connections / rate`` s between requests
    (wrk's ``delay()``): about ``rate`` changes/s from the other core, less the requests' latency."""
    script = workdir / "paced.lua"
    script.write_text(WRK_PACED % {"delay_ms": round(1000 * connections / rate) if rate > 0 else 0})
    command = ["wrk", "-t1", f"-c{connections}", f"-d{round(seconds)}s", "-s", str(script), url]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL)


def feed(url: str, rate: float, stop: threading.Event, sent: list[int], threads: int = 4) -> None:
    """``rate`` PUTs a second in all, from ``threads`` clients, each paced on its own share."""

    def client(n: int) -> None:
        each = rate / threads
        with httpx.Client(timeout=30) as http:
            start, i = time.monotonic(), 0
            while not stop.is_set():
                pause = start + i / each - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                body = {"fields": {"title": f"Don {n}-{i}", "phone": "0901234567", "amount": 1500000}}
                try:
                    http.put(f"{url}/v1/records/deal/m{n}-{i}", json=body)
                except httpx.HTTPError:
                    return  # the daemon stopped at the end of the run
                sent[n] += 1
                i += 1

    for n in range(threads):
        threading.Thread(target=client, args=(n,), daemon=True).start()


def stall(pid: int | None, seconds: float) -> None:
    """Stop the engine process for ``seconds`` (a stalled disk, a busy core): the worker then takes
    full batches until the backlog is gone."""
    if pid is None:
        return
    os.kill(pid, signal.SIGSTOP)
    time.sleep(seconds)
    os.kill(pid, signal.SIGCONT)
    print(f"       stalled the engine process {seconds:g} s", flush=True)


def total(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        return int(conn.execute("select max(seq) from changes").fetchone()[0] or 0)


def backlog(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        return int(conn.execute("select count(*) from changes where status != 'done'").fetchone()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=200.0, help="changes/s (with --wrk, 0: as fast as it takes them)")
    parser.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--trace", default="", help="FLOWCTL_TRACEMALLOC file for the engine process")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the daemon")
    parser.add_argument(
        "--stall-at",
        type=float,
        action="append",
        default=[],
        help="seconds: stop the engine process (SIGSTOP) for --stall seconds then, so a backlog builds",
    )
    parser.add_argument("--stall", type=float, default=5.0)
    parser.add_argument(
        "--wrk", action="store_true", help="feed with wrk (paced by its delay()) instead of Python clients"
    )
    parser.add_argument("--start-from", default="", help="a flowctl.db of an earlier run (stopped) to go on from")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(1))  # stop the daemon and wrk too
    workdir = Path(tempfile.mkdtemp(prefix="flowctl-memory-"))
    gateway = support.gateway(0.0)
    config = workdir / "config"
    config.mkdir()
    text = (HERE / "e2e_config" / "flowctl.yaml").read_text()
    (config / "flowctl.yaml").write_text(text + CHANNEL % f"http://127.0.0.1:{gateway.server_address[1]}")
    db = workdir / "flowctl.db"
    if args.start_from:
        for suffix in ("", "-wal"):  # its daemon stopped: the file and its WAL are one consistent state
            if Path(args.start_from + suffix).exists():
                shutil.copyfile(args.start_from + suffix, f"{db}{suffix}")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, **dict(item.split("=", 1) for item in args.env)}
    if args.trace:
        env["FLOWCTL_TRACEMALLOC"] = args.trace
    log = (workdir / "daemon.log").open("w")
    command = [sys.executable, "-m", "flowctl", "run", str(config), "--db", f"sqlite:///{db}"]
    daemon = subprocess.Popen(
        [*command, "--listen", f"127.0.0.1:{port}", "--log-level", "warning"], stderr=log, env=env
    )
    stop = threading.Event()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        sent = [0] * 4
        if args.wrk:
            loader = feed_wrk(url, args.rate, args.minutes * 60 + 5, workdir)
        else:
            feed(url, args.rate, stop, sent)
        started = time.monotonic()
        print("  t(s)    sent  backlog  db(MB)  http rss  engine rss (anon/file/shmem MiB)", flush=True)
        stalls = sorted(args.stall_at)
        while time.monotonic() - started < args.minutes * 60:
            time.sleep(args.every)
            if stalls and time.monotonic() - started >= stalls[0]:
                stalls.pop(0)
                stall(engine_pid(daemon.pid), args.stall)
            main_s, child = status(daemon.pid), engine_pid(daemon.pid)
            eng = status(child) if child else {}
            mib = {k: v / 1024 for k, v in eng.items()}
            print(
                f"{time.monotonic() - started:6.0f} {sum(sent) or total(db):7d} {backlog(db):8d} "
                f"{db.stat().st_size / 2**20:7.1f} "
                f"{main_s.get('VmRSS', 0) / 1024:9.1f} {mib.get('VmRSS', 0):11.1f} "
                f"({mib.get('RssAnon', 0):.1f}/{mib.get('RssFile', 0):.1f}/{mib.get('RssShmem', 0):.1f})",
                flush=True,
            )
    finally:
        stop.set()
        if args.wrk:
            loader.terminate()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)
        log.close()
        gateway.shutdown()
    print(f"workdir {workdir} (the database: {db})")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    main()
