"""What the read benches share: a store at a URL (a fresh SQLite file, or a PostgreSQL database
made afresh), bulk inserts straight into its tables, the daemon's app over that store without
the daemon's threads, and the median server time of a GET through ``httpx.ASGITransport``.

Benches import it as ``read_support`` (``python bench/bench_x.py`` puts ``bench/`` first on the path).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from support import fresh_database

from flowctl.engine.core import Engine
from flowctl.engine.state import Record
from flowctl.ports import Store
from flowctl.runtime.api.app import create_app
from flowctl.runtime.api.metrics import Metrics
from flowctl.runtime.daemon.ingest import Ingest
from flowctl.spec import model as m
from flowctl.spec.config import load_bundle
from flowctl.store import open_store
from flowctl.testing import FrozenClock, write_config

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)


def database_url(tmp: Path, name: str) -> str:
    """``FLOWCTL_BENCH_DATABASE_URL`` (a PostgreSQL server: database ``name`` on it is made afresh),
    else a new SQLite file under ``tmp``."""
    base = os.environ.get("FLOWCTL_BENCH_DATABASE_URL", "")
    if base:
        return fresh_database(base, name)
    return f"sqlite:///{tmp / (name + '.db')}"


def insert(store: Store, table: sa.Table, rows: Iterable[Mapping[str, Any]], batch: int = 20_000) -> int:
    """Insert ``rows`` into ``table`` of ``store``'s database, ``batch`` rows per executemany."""
    engine: sa.Engine = store.engine  # type: ignore[attr-defined]
    total = 0
    chunk: list[Mapping[str, Any]] = []
    with engine.begin() as conn:
        for row in rows:
            chunk.append(row)
            if len(chunk) >= batch:
                conn.execute(table.insert(), chunk)
                total += len(chunk)
                chunk = []
        if chunk:
            conn.execute(table.insert(), chunk)
            total += len(chunk)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text(f"ANALYZE {table.name}"))
    return total


@dataclass
class ReadView:
    """What ``create_app`` needs of the service (``ServiceView``), for reads: no worker, no ingest thread."""

    bundle: m.Bundle
    store: Store
    env: Mapping[str, str] = field(default_factory=dict)
    clock: FrozenClock = field(default_factory=lambda: FrozenClock(T0))
    metrics: Metrics = field(default_factory=Metrics)

    def __post_init__(self) -> None:
        self.ingest = Ingest(self.store)
        self.engine = Engine(self.bundle)

    def readiness(self) -> list[str]:
        return []

    def degraded(self) -> list[str]:
        return []

    def refuse_move(self, record: Record, stage: str, pipeline: str = "") -> str:
        return self.engine.pipelines.refuse_move(record, stage, pipeline)

    def health_report(self) -> dict[str, Any]:
        return {"engine": {}, "last_reload": None, "recent_errors": []}


def view(tmp: Path, files: Mapping[str, str], url: str) -> ReadView:
    loaded = load_bundle(write_config(tmp / "config", files))
    assert loaded.ok and loaded.bundle is not None, [str(i) for i in loaded.errors]
    return ReadView(bundle=loaded.bundle, store=open_store(url))


def server_times(svc: ReadView, paths: Sequence[str], rounds: int, warmup: int = 3) -> dict[str, list[float]]:
    """Seconds each GET of ``paths`` takes through the app in this process (``httpx.ASGITransport``:
    no socket), ``rounds`` times each after ``warmup``, the paths taking turns. Every answer must be 200."""
    app = create_app(svc)  # type: ignore[arg-type]

    async def run() -> dict[str, list[float]]:
        out: dict[str, list[float]] = {path: [] for path in paths}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for n in range(warmup + rounds):
                for path in paths:
                    started = time.perf_counter()
                    response = await client.get(path)
                    took = time.perf_counter() - started
                    assert response.status_code == 200, response.text[:500]
                    if n >= warmup:
                        out[path].append(took)
        return out

    return asyncio.run(run())


def median_ms(times: Sequence[float]) -> float:
    return statistics.median(times) * 1000
