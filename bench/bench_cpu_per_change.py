"""CPU per change on one core, per thread of every daemon process: where a change's time goes.

Starts ``flowctl run`` on bench/e2e_config pinned to CPU 1 (all its processes, as the
Node-RED comparison does), loads it with wrk pinned to CPU 0 (PUT a new deal, one SMS rule), and
reads each thread's user+system time from ``/proc/<pid>/task/*/stat`` before and after the load,
once every change of the load has its outbox row. Thread names come from ``py-spy dump`` when
py-spy is installed (else the kernel's ``comm``). With ``--profile DIR`` it also records a py-spy
profile (``--gil``, raw folded stacks) of each process during a second load.

    python bench/bench_cpu_per_change.py                    # 64 clients, 8 s
    python bench/bench_cpu_per_change.py --clients 1 --seconds 5
    python bench/bench_cpu_per_change.py --profile /tmp/prof
    python bench/bench_cpu_per_change.py --clients 1 --warm-clients 8 --no-drain   # the harness's start

It also prints wrk's latency percentiles of the load (``latency (wrk): p50 … ms, …, p99 … ms``).
The last line: ``cpu per change: N us (C clients, R changes/s)``, all processes together.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from bench_e2e import changes_total, daemon_argv, drain, free_port, outbox_count, wait_ready, wrk

TICK = os.sysconf("SC_CLK_TCK")


def group(pid: int) -> list[int]:
    """The daemon and its child processes."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return [pid, *map(int, children)]


def thread_times(pids: list[int]) -> dict[tuple[int, int], tuple[float, float]]:
    """CPU seconds (user, system) per (process, thread)."""
    times: dict[tuple[int, int], tuple[float, float]] = {}
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            times[(pid, int(task.name))] = (int(fields[11]) / TICK, int(fields[12]) / TICK)
    return times


def thread_names(pids: list[int]) -> dict[tuple[int, int], str]:
    """Python thread names from py-spy (falls back to the kernel's name of the thread)."""
    names: dict[tuple[int, int], str] = {}
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            names[(pid, int(task.name))] = (task / "comm").read_text().strip()
        if shutil.which("py-spy"):  # "Thread <native id> (idle): "<name>""
            out = subprocess.run(["py-spy", "dump", "--pid", str(pid)], capture_output=True, text=True).stdout
            for native, name in re.findall(r'^Thread (\d+) \(\w+\): "([^"]+)"', out, re.M):
                names[(pid, int(native))] = name
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--processes", type=int, choices=(1, 2), help="flowctl run --processes (default: its own)")
    parser.add_argument("--profile", type=Path, help="also record py-spy folded stacks here")
    parser.add_argument("--warm-clients", type=int, help="clients of the 2 s warm-up (default: --clients)")
    parser.add_argument(
        "--no-drain",
        action="store_true",
        help="start the load right after the warm-up, before the daemon has processed it (as the side-by-side "
        "harness does, which warms up at 8 clients)",
    )
    args = parser.parse_args()
    if not shutil.which("wrk") or not shutil.which("taskset"):
        raise SystemExit("this benchmark needs wrk and taskset: apt-get install wrk util-linux")
    workdir = Path(tempfile.mkdtemp(prefix="flowctl-cpu-"))
    db, port = workdir / "flowctl.db", free_port()
    url = f"http://127.0.0.1:{port}"
    argv = daemon_argv(db, port)
    if args.processes:
        argv += ["--processes", str(args.processes)]
    log = (workdir / "daemon.log").open("w")
    daemon = subprocess.Popen(["taskset", "-c", "1", *argv], stdout=subprocess.DEVNULL, stderr=log)
    try:
        wait_ready(f"{url}/readyz")
        wrk(url, args.warm_clients or args.clients, 2, "warm", workdir, pin="0")
        if not args.no_drain:
            drain(db, changes_total(db))
        pids = group(daemon.pid)
        before, start_total = thread_times(pids), changes_total(db)
        started = time.monotonic()
        latencies: dict[str, float] = {}
        wrk(url, args.clients, args.seconds, "load", workdir, pin="0", latencies=latencies)
        done = changes_total(db)
        finished = drain(db, done)
        after = thread_times(pids)
        changes = done - start_total
        rate = changes / (finished - started)
        names = thread_names(pids)
        rows = []
        for key, (user, system) in after.items():
            was_user, was_system = before.get(key, (0.0, 0.0))
            rows.append(((user - was_user) / changes * 1e6, (system - was_system) / changes * 1e6, key))
        rows.sort(key=lambda row: row[0] + row[1], reverse=True)
        print("  us/change (user + system)  process thread")
        for user, system, (pid, tid) in rows:
            if user + system >= 1:
                kind = "http" if pid == daemon.pid else "engine"
                print(f"{user + system:8.0f} ({user:4.0f} + {system:4.0f})  {kind:6s} {names.get((pid, tid), '?')}")
        total = sum(user + system for user, system, _ in rows)
        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
            spies = [
                subprocess.Popen(
                    [
                        "py-spy",
                        "record",
                        "--gil",
                        "-r",
                        "200",
                        "-f",
                        "raw",
                        "-d",
                        str(round(args.seconds)),
                        "-o",
                        str(args.profile / f"{'http' if pid == daemon.pid else 'engine'}-{pid}.txt"),
                        "--pid",
                        str(pid),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for pid in pids
            ]
            wrk(url, args.clients, args.seconds, "prof", workdir, pin="0")
            for spy in spies:
                spy.wait(60)
            print(f"profiles in {args.profile}")
        print(f"outbox rows: {outbox_count(db):,}")
        print("latency (wrk): " + ", ".join(f"p{share[:-1]} {ms:.2f} ms" for share, ms in latencies.items()))
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
        log.close()
    print(f"cpu per change: {total:.0f} us ({args.clients} clients, {rate:,.0f} changes/s)")


if __name__ == "__main__":
    main()
