"""From request to sent: how long a change waits for its message to go out, at 1, 8 and 64 clients.

``bench_e2e.py`` stops the clock when a change's outbox row is committed. An operator waits
longer: the deliverer still has to claim the row, hand it to its channel and mark it sent. This
bench starts ``flowctl run`` on bench/e2e_config (one stage rule, one SMS to the ``log``
channel) pinned to CPU 1, as the Node-RED comparison does, and loads it with wrk on CPU 0 for
``--seconds`` at each client count. Once every message of a step is sent it reads, from the
store, each change's ``received_at`` (the API accepted the request), its outbox row's
``created_at`` (the rule's commit) and ``sent_at`` (the deliverer's sent mark), and prints the
percentiles of both waits and the rate of messages sent.

    python bench/bench_queued_to_sent.py                 # 8 s per step
    python bench/bench_queued_to_sent.py --seconds 4 --clients 1 64
    python bench/bench_queued_to_sent.py --unpinned      # both cores, no taskset

The line before the last is JSON; the last line: ``request to sent: p99 X ms at 1 client, …``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path

from bench_e2e import daemon_argv, free_port, wait_ready, wrk


def waits(db: Path, prefix: str) -> tuple[int, int, list[tuple[float, float, float]]]:
    """(changes, messages sent, [(received, committed, sent) in epoch seconds]) of one step's
    records, whose ids start with ``prefix``."""
    like = prefix.replace("_", r"\_") + "%"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        changes = conn.execute(r"select count(*) from changes where record_id like ? escape '\'", (like,)).fetchone()
        rows = conn.execute(
            r"""select c.received_at, o.created_at, o.sent_at
                from outbox o join changes c on c.object = o.object and c.record_id = o.record_id
                where o.record_id like ? escape '\' and o.status = 'sent'""",
            (like,),
        ).fetchall()
    stamps = [tuple(datetime.fromisoformat(text).timestamp() for text in row) for row in rows]
    return int(changes[0]), len(stamps), stamps  # type: ignore[misc]


def all_sent(db: Path, prefix: str, timeout: float = 300.0) -> list[tuple[float, float, float]]:
    """Wait until every change of the step has its message sent; the step's stamps."""
    deadline = time.monotonic() + timeout
    while True:
        changes, sent, stamps = waits(db, prefix)
        if changes and sent >= changes:
            return stamps
        if time.monotonic() > deadline:
            raise SystemExit(f"{prefix}: only {sent} of {changes} messages sent after {timeout:.0f} s")
        time.sleep(0.1)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each load step")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64], help="client counts, one step each")
    parser.add_argument("--unpinned", action="store_true", help="run the daemon and wrk without taskset")
    args = parser.parse_args()
    if not shutil.which("wrk") or (not args.unpinned and not shutil.which("taskset")):
        raise SystemExit("this benchmark needs wrk and taskset: apt-get install wrk util-linux")
    workdir = Path(tempfile.mkdtemp(prefix="flowctl-sent-"))
    db, port = workdir / "flowctl.db", free_port()
    url = f"http://127.0.0.1:{port}"
    argv = daemon_argv(db, port)
    pinned, load_pin = ([], "") if args.unpinned else (["taskset", "-c", "1"], "0")
    log = (workdir / "daemon.log").open("w")
    daemon = subprocess.Popen([*pinned, *argv], stdout=subprocess.DEVNULL, stderr=log)
    results: dict[str, dict[str, float]] = {}
    try:
        wait_ready(f"{url}/readyz")
        wrk(url, 8, 2, "warm", workdir, pin=load_pin)
        all_sent(db, "warm")
        for clients in args.clients:
            prefix = f"step{clients}_"
            wrk(url, clients, args.seconds, prefix, workdir, pin=load_pin)
            stamps = all_sent(db, prefix)
            queued = [(committed - received) * 1000 for received, committed, _ in stamps]
            sent = [(done - received) * 1000 for received, _, done in stamps]
            span = max(done for _, _, done in stamps) - min(received for received, _, _ in stamps)
            figures = {
                "messages": len(stamps),
                "sent_per_s": round(len(stamps) / span) if span > 0 else 0,
                "committed_p50_ms": round(percentile(queued, 0.5), 1),
                "committed_p99_ms": round(percentile(queued, 0.99), 1),
                "sent_p50_ms": round(percentile(sent, 0.5), 1),
                "sent_p90_ms": round(percentile(sent, 0.9), 1),
                "sent_p99_ms": round(percentile(sent, 0.99), 1),
                "sent_max_ms": round(max(sent), 1),
            }
            results[str(clients)] = figures
            print(
                f"{clients:2d} clients: {figures['messages']:,} messages, {figures['sent_per_s']:,} sent/s; "
                f"request to outbox row p50 {figures['committed_p50_ms']} ms, p99 {figures['committed_p99_ms']} ms; "
                f"request to sent p50 {figures['sent_p50_ms']} ms, p90 {figures['sent_p90_ms']} ms, "
                f"p99 {figures['sent_p99_ms']} ms, max {figures['sent_max_ms']} ms",
                flush=True,
            )
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
        log.close()
    print(json.dumps({"pinned": not args.unpinned, "steps": results}))
    print(
        "request to sent: "
        + ", ".join(
            f"p99 {figures['sent_p99_ms']} ms at {clients} client{'s' if clients != '1' else ''}"
            for clients, figures in results.items()
        )
    )


if __name__ == "__main__":
    main()
