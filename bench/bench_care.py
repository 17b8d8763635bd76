"""A daily care tick must cost what it finds, not the size of the contact table.

For each database (SQLite, and PostgreSQL when a URL is given) and each size (100,000 and
1,000,000 contacts), bulk-loads contacts with a birthday each (2,740 of them today, the rest
spread over the other days of the year) straight into ``records`` and ``record_dates``, then in a
fresh child process (so its resident memory is the tick's own) runs a tick yesterday at 08:00 (its
runs and outbox rows make the tables realistic), the first tick of today at 07:59 (it takes the
day's count of records without a usable date, two index counts, timed apart) and times the 08:00
tick: the indexed query, the engine (an SMS and an email per contact), the ledger check and the
one commit of the occurrences, runs and outbox rows. Each measurement runs ``--repeat`` times on
the same data (the ledger, runs and outbox emptied in between) and the median counts: the machine
is shared. Prints one line per run and, last, the figure:

    care: tick over 1000000 contacts: 2740 due in 0.31 s (sqlite), 0.35 s (postgres); max RSS 98 MB; 1M/100k ratio 1.1

Run: ``python bench/bench_care.py [--sizes 100000,1000000] [--due 2740] [--repeat 3] [--pg URL]``
(``--pg`` defaults to ``$FLOWCTL_TEST_DATABASE_URL``; without one, SQLite only).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
TODAY = date(2026, 3, 2)
NOW = datetime(2026, 3, 2, 8, 0, tzinfo=TZ)
CHUNK = 50_000

CONFIG = {
    "flowctl.yaml": """
        apiVersion: flowctl/v1
        kind: Config
        metadata: {name: bench}
        spec: {timezone: Asia/Ho_Chi_Minh}
        ---
        apiVersion: flowctl/v1
        kind: ObjectType
        metadata: {name: contact}
        spec:
          fields:
            full_name: {type: string}
            phone: {type: phone}
            email: {type: email}
            birthday: {type: date}
            status: {type: enum, values: [active, inactive]}
        ---
        apiVersion: flowctl/v1
        kind: Template
        metadata: {name: sms-sinh-nhat}
        spec: {channel: sms, text: "ABC chuc mung sinh nhat {{ record.full_name | unaccent }}!"}
        ---
        apiVersion: flowctl/v1
        kind: Template
        metadata: {name: email-sinh-nhat}
        spec: {channel: email, subject: "Chúc mừng sinh nhật {{ record.full_name }}",
               html: "<p>Kính gửi {{ record.full_name }}, chúc mừng sinh nhật!</p>"}
        ---
        apiVersion: flowctl/v1
        kind: CareProcess
        metadata: {name: sinh-nhat}
        spec:
          object: contact
          priority: 1
          when: {anniversary_of: birthday, at: "08:00"}
          if: "record.status != 'inactive'"
          feb29: feb28
          on_missed: catch_up
          grace: 1h
          dst_gap: shift
          dst_overlap: once
          actions:
            - {action: send_sms, template: sms-sinh-nhat, to: "{{ record.phone }}"}
            - {action: send_email, template: email-sinh-nhat, to: "{{ record.email }}"}
    """,
}


def write_config(folder: Path) -> Path:
    root = folder / "config"
    root.mkdir(exist_ok=True)
    for name, text in CONFIG.items():
        (root / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def birthdays(size: int, due: int) -> list[tuple[str, date]]:
    """(id, birthday): ``due`` of them today, the rest on the other 364 days."""
    rng = random.Random(size)
    base = date(2025, 1, 1)
    today = (TODAY.replace(year=2025) - base).days
    out = []
    for i in range(size):
        year = 1950 + rng.randrange(55)
        day = today if i < due else (today + 1 + rng.randrange(364)) % 365
        out.append((f"{i:07}", (base + timedelta(days=day)).replace(year=year)))
    rng.shuffle(out)
    return out


def fill(url: str, size: int, due: int) -> float:
    """Bulk-load contacts and their month-day keys; COPY on PostgreSQL, executemany on SQLite."""
    from flowctl.store import open_store
    from flowctl.store.engines import writer
    from flowctl.store.sql import SqlStore
    from flowctl.store.tables import record_dates, records

    store = open_store(url)
    assert isinstance(store, SqlStore)
    started = time.perf_counter()
    people = birthdays(size, due)
    with writer(store.engine).begin() as conn:  # one transaction (reads autocommit on SQLite)
        for start in range(0, size, CHUNK):
            part = people[start : start + CHUNK]
            recs = [
                {
                    "object": "contact",
                    "id": id_,
                    "fields": {
                        "full_name": f"Nguyễn Văn {id_}",
                        "phone": f"09{id_}1",
                        "email": f"kh{id_}@example.vn",
                        "birthday": born.isoformat(),
                        "status": "active",
                    },
                    "stage": "",
                    "pipeline": "",
                    "owner": "",
                    "version": 1,
                    "deleted": False,
                    "updated_at": None,
                }
                for id_, born in part
            ]
            dates = [
                {
                    "object": "contact",
                    "record_id": id_,
                    "field": "birthday",
                    "month_day": born.month * 100 + born.day,
                    "value": born.isoformat(),
                }
                for id_, born in part
            ]
            if store.dialect == "postgresql":
                raw = conn.connection.driver_connection
                with raw.cursor() as cur:  # type: ignore[union-attr]
                    cols = "object, id, fields, stage, pipeline, owner, version, deleted"
                    with cur.copy(f"COPY records ({cols}) FROM STDIN") as copy:
                        for r in recs:
                            copy.write_row(
                                (
                                    r["object"],
                                    r["id"],
                                    json.dumps(r["fields"], ensure_ascii=False),
                                    "",
                                    "",
                                    "",
                                    1,
                                    False,
                                )
                            )
                    with cur.copy("COPY record_dates (object, record_id, field, month_day, value) FROM STDIN") as copy:
                        for d in dates:
                            copy.write_row((d["object"], d["record_id"], d["field"], d["month_day"], d["value"]))
            else:
                conn.execute(records.insert(), recs)
                conn.execute(record_dates.insert(), dates)
        if store.dialect == "postgresql":
            conn.exec_driver_sql("ANALYZE records")
            conn.exec_driver_sql("ANALYZE record_dates")
    store.close()
    return time.perf_counter() - started


def tick_child(url: str, config: str) -> None:
    """In the child: a warm-up tick yesterday, then the measured tick today; prints JSON."""
    from flowctl.engine.core import Engine
    from flowctl.runtime.care.scheduler import CareScheduler
    from flowctl.runtime.daemon.worker import Engines
    from flowctl.spec.config import load_bundle
    from flowctl.store import open_store

    loaded = load_bundle(Path(config))
    assert loaded.ok and loaded.bundle is not None, loaded.errors
    store = open_store(url)

    class Clock:
        def now(self) -> datetime:
            return NOW

    care = CareScheduler(store, Engines(Engine(loaded.bundle, "bench")), Clock(), owner="bench")
    care.tick(NOW - timedelta(days=1))
    started = time.perf_counter()
    care.tick(NOW - timedelta(minutes=1))  # today's first tick, a minute ago, as in a running daemon
    first = time.perf_counter() - started
    started, cpu = time.perf_counter(), time.process_time()
    report = care.tick(NOW)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    outbox = store.counts()["outbox_pending"]
    rss_mb = peak_rss_mb()
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu": cpu,
                "first": first,
                "found": report.found,
                "committed": report.committed,
                "outbox": outbox,
                "rss_mb": rss_mb,
            }
        )
    )


def reset(url: str, pristine: Path | None) -> None:
    """Undo a measured run: a fresh copy of the SQLite file, or the care tables emptied."""
    if pristine is not None:
        target = Path(sa.make_url(url).database or "")
        for suffix in ("-wal", "-shm"):
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        shutil.copyfile(pristine, target)
        return
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("TRUNCATE care_occurrences, care_days, runs, outbox")
    engine.dispose()


def peak_rss_mb() -> float:
    """This process's peak resident memory. ``ru_maxrss`` survives ``exec`` on Linux (a child would
    report its parent's peak), so read the new address space's own high-water mark."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pg_schema_url(base: str) -> tuple[str, str]:
    schema = f"bench_care_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    admin.dispose()
    return sa.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False
    ), schema


def drop_schema(base: str, schema: str) -> None:
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--due", type=int, default=2740)
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the median counts")
    parser.add_argument("--pg", default=os.environ.get("FLOWCTL_TEST_DATABASE_URL", ""))
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        tick_child(*args.child)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[tuple[str, int], dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = write_config(folder)
        for db in ["sqlite", *(["postgres"] if args.pg else [])]:
            for size in sizes:
                schema = ""
                if db == "sqlite":
                    url = f"sqlite:///{folder / f'care-{size}.db'}"
                else:
                    url, schema = pg_schema_url(args.pg)
                runs: list[dict[str, float]] = []
                try:
                    loaded_in = fill(url, size, args.due)
                    pristine = None
                    if db == "sqlite":
                        pristine = folder / f"care-{size}.pristine.db"
                        shutil.copyfile(folder / f"care-{size}.db", pristine)
                    for n in range(args.repeat):
                        if n:
                            reset(url, pristine)
                        out = subprocess.run(
                            [sys.executable, __file__, "--child", url, str(config)],
                            check=True,
                            capture_output=True,
                            text=True,
                        ).stdout
                        run = json.loads(out.strip().splitlines()[-1])
                        runs.append(run)
                        print(
                            f"{db:8} {size:>9} contacts (loaded in {loaded_in:5.1f} s): {run['found']} due, "
                            f"{run['committed']} committed, {run['outbox']} outbox rows in {run['seconds']:.3f} s "
                            f"(cpu {run['cpu']:.3f} s; the day's first tick {run['first']:.3f} s); "
                            f"max RSS {run['rss_mb']:.0f} MB",
                            flush=True,
                        )
                finally:
                    if schema:
                        drop_schema(args.pg, schema)
                    for leftover in folder.glob(f"care-{size}.*"):
                        leftover.unlink()
                result = {
                    **runs[0],
                    "seconds": statistics.median(r["seconds"] for r in runs),
                    "rss_mb": max(r["rss_mb"] for r in runs),
                }
                results[(db, size)] = result
    big, small = max(sizes), min(sizes)
    dbs = sorted({db for db, _ in results})
    per_db = ", ".join(f"{results[(db, big)]['seconds']:.2f} s ({db})" for db in dbs)
    rss = max(r["rss_mb"] for r in results.values())
    ratios = ", ".join(f"{results[(db, big)]['seconds'] / results[(db, small)]['seconds']:.2f} ({db})" for db in dbs)
    print(
        f"care: tick over {big} contacts: {results[(dbs[0], big)]['found']} due in {per_db} "
        f"(median of {args.repeat}); "
        f"max RSS {rss:.0f} MB; {big // 1000}k/{small // 1000}k ratio {ratios}"
    )


if __name__ == "__main__":
    main()
