"""The store's cost of one small batch: the worker's claim and commit, in CPU of the calling thread.

At one client the worker's batches hold about three changes, so what each batch pays once (the
claim's reads and UPDATE, the commit's statements, BEGIN and COMMIT) is most of its work. This
appends ``--batch`` changes, claims them, and commits them with their records, ``--rounds``
times, and times each step with ``time.thread_time`` (the fsync's wait is not CPU; its kernel
work is). It also times a claim that finds nothing (the pre-read of a worker's idle round).

    python bench/bench_claim_commit.py                      # SQLite in a temporary folder, batches of 3
    python bench/bench_claim_commit.py --batch 256
    python bench/bench_claim_commit.py --db postgresql+psycopg://postgres@127.0.0.1:5432/test

The last line: ``claim of N: X us, commit of N: Y us, empty claim: Z us``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from flowctl.engine.state import Record
from flowctl.ports import NewChange, Processed
from flowctl.store import open_store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=3, help="changes per batch (default 3, as at one client)")
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--db", help="store URL (default: SQLite in a temporary folder)")
    args = parser.parse_args()
    url = args.db or f"sqlite:///{Path(tempfile.mkdtemp(prefix='flowctl-claim-')) / 'flowctl.db'}"
    store = open_store(url)
    run = f"bench-{time.time_ns()}"  # keys of their own, should --db name a store used before
    now = datetime.now(UTC)
    claim = commit = empty = 0.0
    try:
        for n in range(args.rounds + 100):  # the first 100 warm the caches up
            keys = [f"{run}-{n}-{i}" for i in range(args.batch)]
            store.append_changes(
                [
                    NewChange(object="deal", record_id=key, op="put", idempotency_key=key, fields={"title": "Sofa"})
                    for key in keys
                ]
            )
            started = time.thread_time()
            claimed = store.claim_changes(args.batch, "bench", now, 60)
            claimed_at = time.thread_time()
            items = [
                Processed(change=c, record=Record(object="deal", id=c.record_id, fields={"title": "Sofa"}))
                for c in claimed
            ]
            store.commit_batch(items, now, owner="bench")
            committed = time.thread_time()
            store.claim_changes(args.batch, "bench", now, 60)
            if n >= 100:
                claim += claimed_at - started
                commit += committed - claimed_at
                empty += time.thread_time() - committed
    finally:
        store.close()

    def us(total: float) -> str:
        return f"{total / args.rounds * 1e6:.0f} us"

    print(f"claim of {args.batch}: {us(claim)}, commit of {args.batch}: {us(commit)}, empty claim: {us(empty)}")


if __name__ == "__main__":
    main()
