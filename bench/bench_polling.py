"""Polling cost follows what changed: a 1,000,000-row table with 1,000 changed rows polls in about
the time of a 10,000-row table with 1,000 changed rows.

Both tables live in a PostgreSQL database (``flowctl_bench_polling``) with an index on the cursor
(``updated_at, id``). The poller's cursor starts at the end of the table (as after its first
poll); then 1,000 rows spread over the table get a new ``updated_at`` and one ``poll_once``
reads them, hashes them, stores 1,000 changes through the ingest (a SQLite store) and saves
the cursor. Median of ``--repeat`` polls per table; the last line prints both and the ratio.

    python bench/bench_polling.py [--rows 1000000] [--small 10000] [--changed 1000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from support import fresh_database

from flowctl.runtime.daemon.ingest import Ingest
from flowctl.sources.polling import SqlPoller
from flowctl.spec.durations import parse_duration
from flowctl.spec.model import Duration, Metadata, Source
from flowctl.store import open_store

DATABASE = "flowctl_bench_polling"
BASE = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    def now(self) -> datetime:
        return datetime.now(UTC)


def make_table(engine: sa.Engine, name: str, rows: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                f"CREATE TABLE {name} (id bigint PRIMARY KEY, full_name text, phone text, "
                "updated_at timestamptz NOT NULL)"
            )
        )
        conn.execute(
            sa.text(
                f"INSERT INTO {name} SELECT g, 'Khach ' || g, '09' || lpad(g::text, 8, '0'), "
                f":base + g * interval '1 second' FROM generate_series(1, {rows}) g"
            ),
            {"base": BASE},
        )
        conn.execute(sa.text(f"CREATE INDEX ix_{name}_cursor ON {name} (updated_at, id)"))
        conn.execute(sa.text(f"ANALYZE {name}"))


def measure(url: str, name: str, rows: int, changed: int, repeat: int, workdir: Path) -> float:
    store = open_store(f"sqlite:///{workdir / f'{name}.db'}")
    ingest = Ingest(store)
    ingest.start()
    source = Source(
        metadata=Metadata(name=name),
        type="sql",
        url=url,
        table=name,
        key="id",
        cursor=("updated_at", "id"),
        object="contact",
        interval=Duration(text="1s", value=parse_duration("1s")),
    )
    poller = SqlPoller(source, store, ingest, Clock(), env=os.environ, owner="bench")
    end = BASE + timedelta(seconds=rows)
    store.claim_source(name, "bench", Clock().now(), 60)
    store.save_source(name, {"position": [end.isoformat(), rows]}, {}, "bench", Clock().now(), 60)
    engine = sa.create_engine(url)
    times = []
    step = max(rows // changed, 1)
    for n in range(repeat):
        with engine.begin() as conn:  # 1,000 rows spread over the table, each with a new name and time
            conn.execute(
                sa.text(
                    f"UPDATE {name} SET full_name = full_name || '+', "
                    f"updated_at = :at + (id / {step}) * interval '1 microsecond' "
                    f"WHERE id % {step} = {n % step}"
                ),
                {"at": end + timedelta(hours=n + 1)},
            )
        started = time.perf_counter()
        result = poller.poll_once()
        times.append(time.perf_counter() - started)
        assert result.read == changed and result.created == changed, result
    engine.dispose()
    poller.close()
    ingest.stop()
    store.close()
    median = statistics.median(times)
    print(f"{rows:>9,} rows, {changed:,} changed: poll {median * 1000:.1f} ms (median of {repeat})", flush=True)
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--changed", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--base", default=os.environ.get("FLOWCTL_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    )
    args = parser.parse_args()
    url = fresh_database(args.base, DATABASE)
    engine = sa.create_engine(url)
    make_table(engine, "big", args.rows)
    make_table(engine, "small", args.small)
    engine.dispose()
    with tempfile.TemporaryDirectory() as tmp:
        small = measure(url, "small", args.small, args.changed, args.repeat, Path(tmp))
        big = measure(url, "big", args.rows, args.changed, args.repeat, Path(tmp))
    print(
        f"polling {args.changed:,} changed rows: {args.rows:,}-row table {big * 1000:.1f} ms, "
        f"{args.small:,}-row table {small * 1000:.1f} ms, ratio {big / small:.2f}"
    )


if __name__ == "__main__":
    main()
