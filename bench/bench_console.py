"""What an open console costs the daemon: the end-to-end rate of ``bench/bench_e2e.py`` (64 wrk
clients PUT records, each change's SMS rule commits an outbox row) with and without a browser on
the pipeline's board, in one run on one daemon.

The browser is simulated as the console's own script behaves: a thread that asks the board's
refresh fragment (``/ui/boards/sales?fragment=1``) every 2 s. Rounds alternate (without, with,
with, without, ...) so that the database growing over the run weighs on both alike; each figure is
the median of its rounds. The last line prints both rates and the cost in percent (target: under 5).

    python bench/bench_console.py [--seconds 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from bench_e2e import CONFIG, changes_total, drain, free_port, outbox_count, wait_ready, wrk

PERIOD = 2.0  # seconds between two refreshes of the board, as static/refresh.js does


class Browser:
    """A board left open: its fragment fetched every ``PERIOD`` seconds until stopped."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.stop = threading.Event()
        self.times: list[float] = []
        self.cards = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                started = time.perf_counter()
                answer = client.get(self.url)
                assert answer.status_code == 200, answer.text[:500]
                self.times.append(time.perf_counter() - started)
                self.cards = answer.text.count('class="card"')
                self.stop.wait(PERIOD)

    def __enter__(self) -> Browser:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def one_round(url: str, db: Path, seconds: float, name: str, workdir: Path) -> float:
    """The rate of changes to outbox row committed under 64 clients for ``seconds``."""
    before = outbox_count(db)
    accepted_before = changes_total(db)
    started = time.monotonic()
    wrk(url, 64, seconds, name, workdir)
    accepted = changes_total(db) - accepted_before
    finished = drain(db, before + accepted)
    return accepted / (finished - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each load round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each kind (without, with)")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("this benchmark needs wrk: apt-get install wrk")
    workdir = Path(tempfile.mkdtemp(prefix="flowctl-bench-console-"))
    db = workdir / "flowctl.db"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (workdir / "daemon.log").open("w")
    command = [sys.executable, "-m", "flowctl", "run", str(CONFIG), "--db", f"sqlite:///{db}"]
    daemon = subprocess.Popen(
        [*command, "--listen", f"127.0.0.1:{port}", "--log-level", "warning"],
        stdout=subprocess.DEVNULL,
        stderr=log,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    rates: dict[str, list[float]] = {"without": [], "with": []}
    board_times: list[float] = []
    try:
        wait_ready(f"{url}/readyz")
        one_round(url, db, 2.0, "warm", workdir)  # the first round pays for imports and caches
        order = ["without", "with", "with", "without"] * ((args.rounds + 1) // 2)
        for i, kind in enumerate(order[: 2 * args.rounds]):
            if kind == "with":
                with Browser(f"{url}/ui/boards/sales?fragment=1") as browser:
                    rate = one_round(url, db, args.seconds, f"r{i}", workdir)
                board_times += browser.times
                extra = f", board asked {len(browser.times)} times, {browser.cards} cards shown"
            else:
                rate = one_round(url, db, args.seconds, f"r{i}", workdir)
                extra = ""
            rates[kind].append(rate)
            print(f"round {i + 1} {kind:>7} the console: {rate:,.0f} changes/s{extra}", flush=True)
        records = outbox_count(db)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)
        log.close()
    shutil.rmtree(workdir, ignore_errors=True)
    without, with_ = statistics.median(rates["without"]), statistics.median(rates["with"])
    cost = (without - with_) / without * 100
    board_ms = sorted(t * 1000 for t in board_times)
    print(
        f"board fragment under load: median {board_ms[len(board_ms) // 2]:.0f} ms, "
        f"max {board_ms[-1]:.0f} ms over {len(board_ms)} refreshes; {records:,} records at the end"
    )
    print(
        f"console board open (refresh every {PERIOD:g} s): {with_:,.0f} changes/s with, "
        f"{without:,.0f} without = {cost:+.1f} % cost"
    )


if __name__ == "__main__":
    main()
