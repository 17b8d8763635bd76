"""The hot path's saving, in one process: CPU per change through the queue against inline.

One change at a time (a daemon at one client), on the end-to-end benches' configuration (a stage
rule that renders an SMS), SQLite in a temporary folder with ``synchronous=FULL``:

- ``queue``: the ingest's append, then the worker's claim, its reads and its commit (what a
  daemon does with ``FLOWCTL_INLINE=0``, or with a change a worker may be holding back);
- ``inline``: the append that runs the change's rules in its own transaction (``daemon/inline.py``).

Both run as the daemon's threads do, inside ``store.kept_connection()`` (one connection for every
transaction of the thread). With ``--pooled`` a third kind, ``pooled``, runs ``inline`` with each
transaction taking its connection from the pool and returning it, and the last line is then
``kept connection: inline X us, pooled Y us (Z us less per change)``.

Each round times ``--changes`` changes with ``time.thread_time`` (user and system CPU of this
thread: the fsync's kernel work counts, its wait does not); the two kinds alternate, ``--rounds``
each, and the best round of each is kept (the machine is noisy; its other work only adds).

    python bench/bench_inline.py
    python bench/bench_inline.py --rounds 5 --changes 3000
    python bench/bench_inline.py --pooled --rounds 6

The last line: ``cpu per change: queue X us, inline Y us (ratio R)``.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from flowctl.engine.core import Engine
from flowctl.ports import NewChange, Store
from flowctl.runtime.daemon.inline import InlineWorker
from flowctl.runtime.daemon.worker import Engines, Worker
from flowctl.spec.config import load_bundle
from flowctl.store import open_store
from flowctl.testing import FrozenClock

CONFIG = Path(__file__).resolve().parent / "e2e_config"


def deal(key: str) -> NewChange:
    fields = {"title": "Sofa", "phone": "0912000001", "amount": 1_500_000}
    return NewChange(object="deal", record_id=key, op="put", idempotency_key=key, fields=fields)


def one_round(kind: str, engine: Engine, changes: int, folder: Path) -> float:
    """CPU seconds per change of ``changes`` changes stored and run one at a time, ``kind`` way."""
    store: Store = open_store(f"sqlite:///{folder / f'{kind}-{time.time_ns()}.db'}")
    worker = Worker(store, Engines(engine), FrozenClock(datetime.now(UTC)))
    inline = InlineWorker(worker, limit=1)
    try:
        with contextlib.nullcontext() if kind == "pooled" else store.kept_connection():
            for n in range(changes + 100):  # the first 100 warm the caches up
                if n == 100:
                    started = time.thread_time()
                if kind in ("inline", "pooled"):
                    (result,) = store.append_changes([deal(f"d{n}")], inline)
                    assert result.processed
                else:
                    store.append_changes([deal(f"d{n}")])
                    assert worker.run_once() == 1
            spent = time.thread_time() - started
        assert len(store.list_outbox(changes + 100)) == changes + 100, "every change queued its SMS"
        return spent / changes
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each kind (default 3)")
    parser.add_argument("--changes", type=int, default=1500, help="changes per round (default 1500)")
    parser.add_argument("--pooled", action="store_true", help="also time inline through the pool (see above)")
    args = parser.parse_args()
    loaded = load_bundle(CONFIG)
    assert loaded.bundle is not None, loaded.diagnostics
    engine = Engine(loaded.bundle, "bench")
    best = {"queue": float("inf"), "inline": float("inf")}
    if args.pooled:
        best["pooled"] = float("inf")
    with tempfile.TemporaryDirectory(prefix="flowctl-inline-") as folder:
        for n in range(args.rounds):
            for kind in best:
                spent = one_round(kind, engine, args.changes, Path(folder))
                best[kind] = min(best[kind], spent)
                print(f"round {n + 1} {kind:6}: {spent * 1e6:,.0f} us per change", flush=True)
    queue, inline = best["queue"] * 1e6, best["inline"] * 1e6
    print(f"cpu per change: queue {queue:,.0f} us, inline {inline:,.0f} us (ratio {inline / queue:.2f})")
    if args.pooled:
        pooled = best["pooled"] * 1e6
        saved = pooled - inline
        print(f"kept connection: inline {inline:,.0f} us, pooled {pooled:,.0f} us ({saved:,.0f} us less per change)")


if __name__ == "__main__":
    main()
