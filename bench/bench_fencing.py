"""What fencing costs ``commit_batch``: changes committed per second with and without the lease check.

A worker's commit checks, in its transaction, that it still holds the lease of every change of
the batch (``commit_batch(..., owner=...)``: one ``SELECT … FOR UPDATE`` on PostgreSQL, a plain
``SELECT`` under SQLite's write lock). This claims batches of ``--batch`` changes (one record each,
a patch) and times only the commits, fenced and unfenced batches taking turns so that both see
the same table sizes. SQLite in a temporary file; PostgreSQL too when ``--base`` (or
FLOWCTL_TEST_DATABASE_URL) names a server (a database ``flowctl_bench_fencing`` is made afresh).
The last line prints the rates and the ratio fenced/unfenced (1.0: no cost) for each backend.

    python bench/bench_fencing.py [--batches 40] [--batch 256] [--base postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from support import fresh_database

from flowctl.engine.state import Record
from flowctl.ports import NewChange, Processed, Store
from flowctl.store import open_store

DATABASE = "flowctl_bench_fencing"
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def measure(store: Store, batches: int, batch: int) -> tuple[float, float]:
    """(fenced, unfenced) changes committed per second."""
    seconds = {True: 0.0, False: 0.0}
    done = {True: 0, False: 0}
    for n in range(batches):
        fenced = n % 2 == 0
        store.append_changes(
            [
                NewChange(
                    object="deal",
                    record_id=f"{n}-{i}",
                    op="patch",
                    idempotency_key=f"{n}-{i}",
                    fields={"note": f"v{n}"},
                    received_at=T0,
                )
                for i in range(batch)
            ]
        )
        claimed = store.claim_changes(batch, "bench", T0, 60)
        items = [
            Processed(change=c, record=Record(object="deal", id=c.record_id, fields={"note": f"v{n}"})) for c in claimed
        ]
        started = time.perf_counter()
        store.commit_batch(items, T0, owner="bench" if fenced else None)
        seconds[fenced] += time.perf_counter() - started
        done[fenced] += len(items)
    return done[True] / seconds[True], done[False] / seconds[False]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--base", default=os.environ.get("FLOWCTL_TEST_DATABASE_URL", ""))
    args = parser.parse_args()
    results: list[str] = []
    with tempfile.TemporaryDirectory() as folder:
        urls = [("sqlite", f"sqlite:///{Path(folder) / 'bench.db'}")]
        if args.base:
            urls.append(("postgresql", fresh_database(args.base, DATABASE)))
        for name, url in urls:
            store = open_store(url)
            try:
                measure(store, 4, args.batch)  # warm up: statements compiled, caches filled
                fenced, plain = measure(store, args.batches, args.batch)
            finally:
                store.close()
            print(f"{name}: fenced {fenced:,.0f} changes/s, unfenced {plain:,.0f} changes/s")
            results.append(f"{name} fenced/unfenced {fenced / plain:.2f} ({fenced:,.0f} vs {plain:,.0f} changes/s)")
    print("commit_batch with fencing: " + "; ".join(results))


if __name__ == "__main__":
    main()
