"""``GET /v1/runs?object=deal&record=ID`` over 1,000,000 runs: the server time of a record's runs.

The runs (of 100,000 records, nine each, and a hundred more for every hundredth record) go straight
into the runs table in batches; then the runs of records picked across the table are asked for
through the app in this process (``httpx.ASGITransport``, no socket), first pages and a second
page through ``next``, ``--rounds`` times each, and the median is printed. The query reads the
(object, record_id, seq, id) index: its cost is the page's, not the table's. Target: under 50 ms.

Run: ``python bench/bench_runs_query.py [--runs N] [--rounds N]``; on PostgreSQL with
``FLOWCTL_BENCH_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/postgres`` (its
database ``bench_read_runs`` is made afresh). Last line:

    runs of a record: 1000000 runs, median 3.2 ms (first pages), 3.4 ms (second pages); target < 50 ms
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from read_support import T0, database_url, insert, scratch, server_times, view

from flowctl.runtime.reads import Reads
from flowctl.store.tables import runs

CONFIG = """\
apiVersion: flowctl/v1
kind: Config
metadata: {name: bench}
spec: {timezone: UTC}
---
apiVersion: flowctl/v1
kind: ObjectType
metadata: {name: deal}
spec:
  fields:
    title: {type: string}
"""

TRACE = [
    {"at": T0.isoformat(), "node": "start", "kind": "enter"},
    {"at": T0.isoformat(), "node": "mail", "kind": "effect", "detail": "send_email"},
]


def run_rows(total: int, records: int) -> Iterator[dict[str, Any]]:
    """``total`` runs: nine tenths spread over every record, the last tenth over every hundredth
    record (a record with a long history: a hundred runs more)."""
    base = int(T0.timestamp() * 1000)
    spread = total * 9 // 10
    for i in range(total):
        record = i % records if i < spread else ((i - spread) % (records // 100)) * 100
        yield {
            "id": f"c{i}/run1",
            "automation": ("flow:welcome", "flow:nurture", "rule:sales/new/hello")[i % 3],
            "object": "deal",
            "record_id": f"{record:06d}",
            "status": ("done", "waiting", "failed", "done")[i % 4],
            "node": "mail",
            "waiting_for": "",
            "entry": "",
            "visits": {},
            "steps": 2,
            "started_at": T0.isoformat(),
            "updated_at": T0.isoformat(),
            "config_version": "bench",
            "trace": TRACE,
            "seq": base + i,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=scratch()) as folder:
        tmp = Path(folder)
        url = database_url(tmp, "bench_read_runs")
        svc = view(tmp, {"flowctl.yaml": CONFIG}, url)
        started = time.perf_counter()
        insert(svc.store, runs, run_rows(args.runs, args.records), batch=50_000)
        print(f"set-up: {args.runs} runs in {time.perf_counter() - started:.1f} s on {url.split(':')[0]}")
        step = args.records // 7
        picked = [f"{n * step // 100 * 100 + (n % 2):06d}" for n in range(7)]  # odd n: an ordinary record
        first = [f"/v1/runs?object=deal&record={rid}&limit=50" for rid in picked]
        times = server_times(svc, first, args.rounds)
        reads = Reads(svc)  # type: ignore[arg-type]  # the cursors of the second pages
        second = []
        for rid in picked:
            cursor = reads.runs(object="deal", record_id=rid, limit=50)["next"]
            if cursor:
                second.append(f"/v1/runs?object=deal&record={rid}&limit=50&cursor={cursor}")
        later = server_times(svc, second, args.rounds) if second else {}
        svc.store.close()
    first_ms = statistics.median(t for ts in times.values() for t in ts) * 1000
    second_ms = statistics.median(t for ts in later.values() for t in ts) * 1000 if later else float("nan")
    sizes = ", ".join(f"{p.split('record=')[1].split('&')[0]}" for p in first)
    print(f"records asked: {sizes}; {len(second)} of them have a second page")
    print(
        f"runs of a record: {args.runs} runs, median {first_ms:.1f} ms (first pages), "
        f"{second_ms:.1f} ms (second pages); target < 50 ms"
    )


if __name__ == "__main__":
    main()
