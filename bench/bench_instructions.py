"""Instructions per change, counted by valgrind: a figure this noisy machine repeats.

The CPU-time benches (``bench_inline.py``, ``bench_cpu_per_change.py``) swing by 15 % between
runs of the same code here, more than most single changes to the hot path save. Valgrind's
``callgrind`` counts the instructions a process executes in user space (SQLite's and the
interpreter's included; the kernel's work, such as an fsync, is not), and the count repeats
within a fraction of a percent once the hash seed is fixed (``PYTHONHASHSEED=0`` unless set:
with a random seed, dicts and sets laid out differently moved the count by up to 2 %). Each kind
runs twice, with ``--small`` and ``--large`` units of work, and the difference is divided by the
extra changes, so start-up and imports cancel out:

- ``inline``: one change per append, run in the append's transaction (a daemon at one client);
- ``batch``: appends of 64 changes, each claimed, run and committed by the worker (what the
  engine process does at 64 clients).

Both run on the end-to-end benches' configuration (a stage rule that renders an SMS), SQLite in
a temporary folder, as the daemon's threads do (inside ``store.kept_connection()``). To compare
two versions, run this in each checkout (``PYTHONPATH=/other/checkout python …``).

    python bench/bench_instructions.py               # about 2 minutes
    python bench/bench_instructions.py --kinds inline

The last line: ``instructions per change: inline X, batch Y``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

#: Changes per unit of work: one per inline append, 64 per batch (the worker's claim takes them all).
PER_UNIT = {"inline": 1, "batch": 64}
#: Units of the two runs of each kind (their difference is what is counted).
DEFAULT_UNITS = {"inline": (50, 250), "batch": (3, 13)}


def work(kind: str, units: int) -> None:
    """The measured process: ``units`` units of ``kind`` (see the module's docstring)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_inline import CONFIG, deal

    from flowctl.engine.core import Engine
    from flowctl.runtime.daemon.inline import InlineWorker
    from flowctl.runtime.daemon.worker import Engines, Worker
    from flowctl.spec.config import load_bundle
    from flowctl.store import open_store
    from flowctl.testing import FrozenClock

    loaded = load_bundle(CONFIG)
    assert loaded.bundle is not None, loaded.diagnostics
    with tempfile.TemporaryDirectory(prefix="flowctl-instructions-") as folder:
        store = open_store(f"sqlite:///{Path(folder) / 'flowctl.db'}")
        worker = Worker(store, Engines(Engine(loaded.bundle, "bench")), FrozenClock(datetime.now(UTC)))
        inline = InlineWorker(worker, limit=1)
        try:
            with store.kept_connection():
                for unit in range(units):
                    if kind == "inline":
                        (result,) = store.append_changes([deal(f"d{unit}")], inline)
                        assert result.processed
                    else:
                        store.append_changes([deal(f"d{unit}-{n}") for n in range(PER_UNIT[kind])])
                        while worker.run_once():
                            pass
            assert worker.processed == units * PER_UNIT[kind], "every change ran"  # not a read: it would count
        finally:
            store.close()


def counted(kind: str, units: int) -> int:
    """Instructions of one run of ``work(kind, units)`` under callgrind."""
    argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__]
    env = {**os.environ, "PYTHONHASHSEED": os.environ.get("PYTHONHASHSEED", "0")}
    done = subprocess.run([*argv, "--work", kind, str(units)], capture_output=True, text=True, check=False, env=env)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"bench_instructions: the {kind} run failed:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kinds", nargs="+", choices=sorted(PER_UNIT), default=["inline", "batch"])
    parser.add_argument("--work", nargs=2, metavar=("KIND", "UNITS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.work:
        work(args.work[0], int(args.work[1]))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("bench_instructions: valgrind is not installed (apt-get install valgrind)")
    figures = []
    for kind in args.kinds:
        small, large = DEFAULT_UNITS[kind]
        with contextlib.redirect_stdout(sys.stderr):
            print(f"{kind}: counting {small} and {large} units under valgrind", flush=True)
        per_change = (counted(kind, large) - counted(kind, small)) / ((large - small) * PER_UNIT[kind])
        print(f"{kind}: {per_change:,.0f} instructions per change", flush=True)
        figures.append(f"{kind} {per_change:,.0f}")
    print("instructions per change: " + ", ".join(figures))


if __name__ == "__main__":
    main()
