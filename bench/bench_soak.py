"""Soak: a steady rate of changes to --records deals (each created or updated deal sends one SMS)
against a real daemon on SQLite with a short retention, for minutes. (The records are a fixed
set, as in a CRM: the newest change of each record is kept for good, so writing new records
only would grow the database by design.) Every minute it prints the database size (file and WAL), the
resident memory of the daemon's two processes and the messages delivered; at the end it waits for
every message and checks the gateway got each once (by Idempotency-Key).

The last line is the database's growth over the last third of the run, in %: with retention
working it levels off once the first rows reach their retention (issue 21: under 5 % over the
last 10 of 30 minutes). Keep --minutes at least three times --retention, or the last third
still grows towards its level.

    python bench/bench_soak.py [--rate 200] [--minutes 30] [--retention 5m] [--records 10000] [--sends-in-flight 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from retention_support import Gateway, Writer, db_bytes, rss_mb, write_daemon_config

from flowctl.testing import Daemon, wait_for


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=200.0, help="changes per second (default 200)")
    parser.add_argument("--minutes", type=float, default=30.0, help="how long (default 30)")
    parser.add_argument("--retention", default="5m", help="every retention: processed changes, runs, messages")
    parser.add_argument(
        "--records", type=int, default=10_000, help="deals written over and over (default 10,000): each change is one"
    )
    parser.add_argument("--every", type=float, default=60.0, help="seconds between two readings (default 60)")
    parser.add_argument(
        "--sends-in-flight", type=int, default=1, help="limits.sends_in_flight (default 1; raise it on a slow machine)"
    )
    args = parser.parse_args()

    gateway = Gateway()
    with tempfile.TemporaryDirectory(prefix="flowctl-soak-") as tmp:
        work = Path(tmp)
        kept = (
            f"{{processed_changes: {args.retention}, finished_runs: {args.retention}, sent_messages: {args.retention}}}"
        )
        config = write_daemon_config(work / "config", gateway.url, kept, args.sends_in_flight)
        path = work / "flowctl.db"
        daemon = Daemon(config, f"sqlite:///{path}").start(timeout=60)
        assert daemon.proc is not None
        writer = Writer(daemon.url, args.rate, records=args.records).start()
        started = time.monotonic()
        end = started + args.minutes * 60
        sizes: list[tuple[float, int]] = []
        print(f"{'minute':>6} {'db MB':>8} {'accepted':>9} {'delivered':>9}  resident MB per process", flush=True)
        try:
            while time.monotonic() < end:
                time.sleep(min(args.every, max(end - time.monotonic(), 0)))
                at = (time.monotonic() - started) / 60
                size = db_bytes(path)
                sizes.append((at, size))
                rss = ", ".join(f"{mb:.0f}" for mb in rss_mb(daemon.proc.pid).values())
                print(f"{at:6.1f} {size / 1e6:8.1f} {writer.accepted:9,} {gateway.counts()[0]:9,}  {rss}", flush=True)
        finally:
            writer.halt()
        try:
            wait_for(lambda: gateway.counts()[0] >= writer.accepted, 900, "every message delivered")
            time.sleep(2)  # a copy would arrive now
        except AssertionError as exc:
            print(f"not drained: {exc}", flush=True)
        finally:
            daemon.terminate()
        delivered, twice = gateway.counts()
        p99, n = writer.p99()
        print(f"accepted {writer.accepted:,} (failed {writer.failed}); delivered {delivered:,}, {twice} more than once")
        print(f"PUT p99 {p99:.1f} ms over {n:,} requests")
        purged = [line for line in daemon.output().splitlines() if "retention: purged" in line]
        print(f"{len(purged)} purge rounds logged; last: {purged[-1].split('retention: ')[-1] if purged else '-'}")
        third = [s for at, s in sizes if at >= args.minutes * 2 / 3 - 1e-9]
        base = third[0] if third else sizes[-1][1]
        growth = (sizes[-1][1] - base) / base * 100 if base else 0.0
        if twice or delivered < writer.accepted:
            print("FAILED: a message was lost or sent twice", file=sys.stderr)
        print(
            f"database growth over the last third: {growth:+.1f} % ({base / 1e6:.1f} → {sizes[-1][1] / 1e6:.1f} MB; "
            f"{args.rate:.0f}/s for {args.minutes:g} min, retention {args.retention}; {twice} sent twice)"
        )


if __name__ == "__main__":
    main()
