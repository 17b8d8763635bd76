"""End-to-end rate over HTTP on PostgreSQL with 1 and with 2 replicas (64 clients), and the ratio.

Each run gets a fresh PostgreSQL database (``flowctl_bench_replicas``) and starts ``flowctl run``
on bench/e2e_config (one stage rule renders one SMS, to the log channel) once per replica, each
on its own port. wrk (Debian package ``wrk``) sends PUTs for ``--seconds`` with ``--clients``
connections in all (64 unless told), split evenly over the replicas; each run also prints wrk's
p50 and p99 latency of the writes (the answer comes once the change is stored, run or not), and
the p50 and p99 wait from receiving a change to running it (``processed_at - received_at``: the
queue's hand-over, which a change run in its own commit does not wait). The rate is outbox rows
committed per second, from the start of the load until every accepted change is processed. The
last line prints both rates and the ratio. On a 2-core machine the replicas, PostgreSQL and wrk
share the same two cores, so the ratio says more about contention than about scaling.

    python bench/bench_replicas.py [--seconds 8] [--base postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
    python bench/bench_replicas.py --clients 1     # one client: the write's latency
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_e2e import CONFIG, free_port, wait_ready, wrk
from support import fresh_database

DATABASE = "flowctl_bench_replicas"


def count(engine: sa.Engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(sql)).scalar() or 0)


def run(replicas: int, seconds: float, base: str, workdir: Path, clients: int = 64) -> float:
    url = fresh_database(base, DATABASE)
    procs: list[subprocess.Popen[bytes]] = []
    ports: list[int] = []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        for n in range(replicas):  # one at a time: the first migrates the schema
            port = free_port()
            log = (workdir / f"replica-{replicas}-{n}.log").open("wb")
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "flowctl",
                        "run",
                        str(CONFIG),
                        "--db",
                        url,
                        "--listen",
                        f"127.0.0.1:{port}",
                        "--log-level",
                        "warning",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            )
            wait_ready(f"http://127.0.0.1:{port}/readyz", timeout=60)
            ports.append(port)
        engine = sa.create_engine(url)
        started = time.monotonic()
        results: list[tuple[float, int]] = []
        latencies: list[dict[str, float]] = []

        def load(port: int, prefix: str) -> None:
            percentiles: dict[str, float] = {}
            connections = max(1, clients // replicas)  # one client: one per replica
            url = f"http://127.0.0.1:{port}"
            results.append(wrk(url, connections, seconds, prefix, workdir, latencies=percentiles))
            latencies.append(percentiles)

        threads = [threading.Thread(target=load, args=(port, f"r{replicas}p{n}")) for n, port in enumerate(ports)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        deadline = time.monotonic() + 300
        while (
            count(engine, "select count(*) from changes where status in ('pending', 'claimed')")
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        elapsed = time.monotonic() - started
        rows = count(engine, "select count(*) from outbox")
        with engine.connect() as conn:
            wait50, wait99 = conn.execute(
                sa.text(
                    "select percentile_cont(0.5) within group (order by w), percentile_cont(0.99) within group "
                    "(order by w) from (select extract(epoch from processed_at - received_at) * 1000 as w "
                    "from changes) as waits"
                )
            ).one()
        bad = sum(b for _, b in results)
        accepted = sum(r for r, _ in results)
        p50 = max(found.get("50%", 0.0) for found in latencies)
        p99 = max(found.get("99%", 0.0) for found in latencies)
        print(
            f"{replicas} replica(s), {clients} clients: wrk {accepted:,.0f} req/s ({bad} non-2xx), "
            f"p50 {p50:.2f} ms, p99 {p99:.2f} ms; received to run p50 {wait50:.2f} ms, p99 {wait99:.2f} ms; "
            f"{rows:,} outbox rows in "
            f"{elapsed:.1f}s = {rows / elapsed:,.0f} changes/s end to end",
            flush=True,
        )
        engine.dispose()
        return rows / elapsed
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--clients", type=int, default=64, help="wrk connections in all (default 64)")
    parser.add_argument(
        "--base", default=os.environ.get("FLOWCTL_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        one = run(1, args.seconds, args.base, Path(tmp), args.clients)
        two = run(2, args.seconds, args.base, Path(tmp), args.clients)
    rates = f"1 replica {one:,.0f}/s, 2 replicas {two:,.0f}/s, ratio {two / one:.2f}"
    print(f"end-to-end on PostgreSQL, {args.clients} clients: {rates}")


if __name__ == "__main__":
    main()
