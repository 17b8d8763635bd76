"""The cost of purging on the hot path: p99 of PUT latency at a paced 200 changes/s against a real
daemon on SQLite holding --runs finished runs (default 1,000,000, each with a short trace), first
with a retention that keeps them all, then with one that purges them all while the writes go on.

Both phases keep changes and messages 40 s, so the purge thread wakes every 10 s in both and the
only difference is the runs it removes (500 per transaction, resting twice as long as each took,
then the free pages given back). The second phase measures from the first round that
removed runs until none are left (or 20 × --seconds). The last line is the p99 delta in ms (issue 21: under 10 ms).

    python bench/bench_purge.py [--runs 1000000] [--rate 200] [--seconds 60]
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from retention_support import Gateway, Writer, db_bytes, write_daemon_config

from flowctl.engine.state import Run, Step, TraceEntry
from flowctl.ports import Processed
from flowctl.store import open_store
from flowctl.testing import Daemon

OLD = "2020-01-01T00:00:00+00:00"
BATCH = 5000


def seed(url: str, count: int) -> None:
    """``count`` finished runs last written in 2020, committed BATCH at a time."""
    trace = (
        TraceEntry(at=OLD, node="start", kind="enter"),
        TraceEntry(at=OLD, node="check", kind="condition", detail="record.amount > 0", result=True),
        TraceEntry(at=OLD, node="sms", kind="effect", detail="send_sms", result={"ok": 1}),
    )
    base = Run(
        id="",
        automation="flow:thanks",
        object="deal",
        record_id="",
        status="done",
        node="sms",
        started_at=OLD,
        updated_at=OLD,
        config_version="v0",
        trace=trace,
    )
    store = open_store(url)
    try:
        for start in range(0, count, BATCH):
            runs = {
                f"old-{n}": replace(base, id=f"old-{n}", record_id=f"r{n}", seq=n)
                for n in range(start, min(start + BATCH, count))
            }
            store.commit_batch([Processed(step=Step(runs=runs))], datetime.now(UTC))
    finally:
        store.close()


def runs_left(path: Path) -> int:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as conn:
        return int(conn.execute("SELECT count(*) FROM runs WHERE updated_at < '2021'").fetchone()[0])


def retention(runs: str) -> str:
    return f"{{processed_changes: 40s, sent_messages: 40s, finished_runs: {runs}}}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1_000_000, help="finished runs to seed (default 1,000,000)")
    parser.add_argument("--rate", type=float, default=200.0, help="changes per second (default 200)")
    parser.add_argument("--seconds", type=float, default=60.0, help="the phase without purging (default 60)")
    args = parser.parse_args()

    gateway = Gateway()
    with tempfile.TemporaryDirectory(prefix="flowctl-purge-") as tmp:
        work = Path(tmp)
        path = work / "flowctl.db"
        url = f"sqlite:///{path}"
        began = time.monotonic()
        seed(url, args.runs)
        print(
            f"seeded {args.runs:,} finished runs in {time.monotonic() - began:.0f} s: {db_bytes(path) / 1e6:.0f} MB",
            flush=True,
        )

        keep = write_daemon_config(work / "keep", gateway.url, retention("36500d"))
        daemon = Daemon(keep, url).start(timeout=120)
        writer = Writer(daemon.url, args.rate, prefix="a").start()
        time.sleep(5)  # warm up
        since = time.monotonic()
        time.sleep(args.seconds)
        writer.halt()
        daemon.terminate()
        base, n_base = writer.p99(since)
        print(f"without purging: p99 {base:.1f} ms over {n_base:,} PUTs; {runs_left(path):,} old runs kept", flush=True)

        purge = write_daemon_config(work / "purge", gateway.url, retention("1d"))
        daemon = Daemon(purge, url).start(timeout=120)
        writer = Writer(daemon.url, args.rate, prefix="b").start()
        before = runs_left(path)
        while runs_left(path) == before:
            time.sleep(0.2)
        start = time.monotonic()
        deadline = start + max(args.seconds, 1) * 20
        while runs_left(path) > 0 and time.monotonic() < deadline:
            time.sleep(1)
        stop = time.monotonic()
        left = runs_left(path)
        writer.halt()
        daemon.terminate()
        during, n_during = writer.p99(start, stop)
        gone = before - left
        print(
            f"while purging: p99 {during:.1f} ms over {n_during:,} PUTs; {gone:,} runs purged in {stop - start:.0f} s "
            f"({gone / max(stop - start, 1e-9):,.0f}/s); {left:,} left; database {db_bytes(path) / 1e6:.0f} MB after"
        )
        figure = f"({base:.1f} → {during:.1f} ms at {args.rate:.0f}/s, {gone:,} runs purged)"
        print(f"p99 delta while purging: {during - base:+.1f} ms {figure}")


if __name__ == "__main__":
    main()
