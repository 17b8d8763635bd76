"""A frozen engine process (SIGSTOP) must not hold the daemon's writes: the watchdog kills and
restarts it, a write waits a bounded time for the SQLite writer lock and answers 503 only when it
was not stored, and /readyz answers 503 while writes cannot commit or the change lag passes
``limits.ready_lag_seconds``. Real daemon, real engine process, SQLite."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from flowctl.ports import NewChange
from flowctl.runtime.compose import daemon_service
from flowctl.runtime.daemon.ingest import StoreUnavailable
from flowctl.spec.config import load_bundle
from flowctl.store.memory import MemoryStore
from flowctl.testing import Daemon, gone, wait_for, write_config
from tests.daemon.configs import deal_config

#: Every change through the queue, so the engine process is what processes them (not the hot
#: path of ``daemon/inline.py``, which runs a quiet daemon's changes in the HTTP process).
QUEUED = {"FLOWCTL_INLINE": "0"}


def config(folder: Path, stall: int, lag: int) -> Path:
    limits = f"{{engine_stall_seconds: {stall}, ready_lag_seconds: {lag}}}"
    return write_config(folder, {"flowctl.yaml": deal_config(spec=f"{{timezone: UTC, limits: {limits}}}")})


def holds_writer_lock(pid: int, database: Path) -> bool:
    """Whether ``pid`` holds the flock on ``<db>.writer`` (Linux /proc/locks)."""
    inode = Path(f"{database}.writer").stat().st_ino
    for line in Path("/proc/locks").read_text().splitlines():
        parts = line.split()
        if len(parts) > 5 and parts[1] == "FLOCK" and parts[4] == str(pid) and parts[5].endswith(f":{inode}"):
            return True
    return False


def stored(database: Path) -> Counter[str]:
    """How many changes the database holds per record id."""
    engine = sa.create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as conn:
            return Counter(row[0] for row in conn.exec_driver_sql("SELECT record_id FROM changes"))
    finally:
        engine.dispose()


def open_changes(database: Path) -> int:
    """Changes pending or claimed: what the watchdog counts as waiting for the engine."""
    engine = sa.create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as conn:
            query = "SELECT count(*) FROM changes WHERE status IN ('pending', 'claimed')"
            return int(conn.exec_driver_sql(query).scalar_one())
    finally:
        engine.dispose()


class Writers:
    """Threads that PUT records with ids of their own (no Idempotency-Key, as the client in the
    issue), each answer kept: id -> status (0: no answer)."""

    def __init__(self, daemon: Daemon, prefix: str, threads: int = 4) -> None:
        self.daemon, self.prefix = daemon, prefix
        self.answers: dict[str, int] = {}
        self.stop = threading.Event()
        self.serial = iter(range(1_000_000))
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]
        for thread in self.threads:
            thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            with self.lock:
                id = f"{self.prefix}{next(self.serial)}"
            try:
                status = httpx.put(
                    f"{self.daemon.url}/v1/records/deal/{id}", json={"fields": {"title": id}}, timeout=120
                ).status_code
            except httpx.HTTPError:
                status = 0
            self.answers[id] = status
            time.sleep(0.01)

    def finish(self) -> dict[str, int]:
        self.stop.set()
        for thread in self.threads:
            thread.join(150)
        return dict(self.answers)


def stopped(pid: int) -> bool:
    """Whether every thread of ``pid`` has stopped (state ``T``: SIGSTOP has taken effect)."""
    states = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            states.append((task / "stat").read_text().rsplit(")", 1)[1].split()[0])
    return bool(states) and all(state in ("T", "t") for state in states)


def freeze(daemon: Daemon, database: Path, *, holding: bool, tries: int = 400) -> int:
    """SIGSTOP the engine process at a moment it holds the writer lock (``holding``) or does not."""
    for _ in range(tries):
        pid = daemon.engine_pid()
        os.kill(pid, signal.SIGSTOP)
        # the signal is delivered asynchronously: until every thread has stopped, the engine can
        # still release the lock it was seen holding (then it is frozen without it, every write
        # commits, and the test waits for 503s that cannot come)
        wait_for(lambda pid=pid: stopped(pid), timeout=5, what=f"the engine process {pid} to stop")
        if holds_writer_lock(pid, database) == holding:
            return pid
        os.kill(pid, signal.SIGCONT)
        time.sleep(0.005 if holding else 0.05)
    raise AssertionError(f"could not stop the engine process {'with' if holding else 'without'} the writer lock")


def assert_answers_match_the_store(answers: dict[str, int], database: Path) -> dict[str, int]:
    counts = stored(database)
    for id, status in answers.items():
        if status == 202:
            assert counts[id] == 1, f"{id} answered 202 but stored {counts[id]} times"
        elif status == 503:
            assert counts[id] == 0, f"{id} answered 503 but stored {counts[id]} times"
    statuses = Counter(answers.values())
    return {
        "answered_202": statuses[202],
        "answered_503": statuses[503],
        "no_answer": statuses[0],
        "stored_despite_503": 0,
        "stored_twice": 0,
    }


def test_a_frozen_engine_holding_the_writer_lock_is_restarted_and_503_means_not_stored(
    tmp_path: Path, figures: Callable[..., None]
) -> None:
    database = tmp_path / "flowctl.db"
    daemon = Daemon(
        # the engine stays frozen for several write waits: the readiness probe and the write in
        # flight can each take one, and the watchdog's clock may start before the freeze
        config(tmp_path / "config", stall=6, lag=100_000),
        f"sqlite:///{database}",
        env={"FLOWCTL_WRITE_WAIT_SECONDS": "1", **QUEUED},
    )
    try:
        daemon.start()
        writers = Writers(daemon, "w")
        wait_for(lambda: len(writers.answers) > 20, timeout=60, what="the first writes")
        frozen = freeze(daemon, database, holding=True)
        started = time.monotonic()
        readiness: list[int] = []
        # while the engine is frozen with the lock, the daemon says it cannot take writes
        wait_for(
            lambda: readiness.append(daemon.ready()) or readiness[-1] == 503,
            timeout=30,
            what="/readyz 503 while writes cannot commit",
        )
        not_ready = time.monotonic() - started
        # the watchdog kills it (a stopped process dies of SIGKILL) and starts another
        wait_for(lambda: gone(frozen), timeout=60, what="the watchdog to kill the frozen engine process")
        killed = time.monotonic() - started
        wait_for(lambda: daemon.engine_pid_or_none() not in (None, frozen), timeout=60, what="a new engine process")
        wait_for(lambda: daemon.ready() == 200, timeout=60, what="/readyz 200 again")
        ready_again = time.monotonic() - started
        assert daemon.metric("flowctl_engine_stalls_total") >= 1
        count = len(writers.answers)
        wait_for(lambda: len(writers.answers) > count + 20, timeout=60, what="writes after the restart")
        answers = writers.finish()
        assert 503 in answers.values(), "no write waited out the bounded lock wait"
        assert "made no progress" in daemon.output()
        daemon.terminate()
        outcome = assert_answers_match_the_store(answers, database)
        figures(
            stall_bound_seconds=6,
            write_wait_seconds=1,
            readyz_503_after_seconds=round(not_ready, 1),
            killed_after_seconds=round(killed, 1),
            ready_again_seconds=round(ready_again, 1),
            **outcome,
        )
    finally:
        with contextlib.suppress(Exception):
            os.kill(daemon.engine_pid_or_none() or 0, signal.SIGCONT)
        daemon.stop_quietly()


def test_a_frozen_engine_is_restarted_when_no_change_waits_but_writes_wait_for_the_writer_lock(
    tmp_path: Path,
) -> None:
    # frozen between batches (a lease renewal, a claim that found nothing) with the writer lock,
    # the engine leaves no change pending or claimed: the writes it holds back are the work that
    # waits. Here the lock is held by another process (this test, as a stuck CLI command would),
    # so the frozen engine is the only one not making progress, and nothing is pending.
    database = tmp_path / "flowctl.db"
    daemon = Daemon(
        config(tmp_path / "config", stall=3, lag=100_000),
        f"sqlite:///{database}",
        env={"FLOWCTL_WRITE_WAIT_SECONDS": "1"},
    )
    lock = -1
    frozen = 0
    try:
        daemon.start()
        assert daemon.put("deal", "before", {"title": "before"}).status_code == 202
        wait_for(lambda: open_changes(database) == 0, timeout=30, what="the change to be processed")
        frozen = freeze(daemon, database, holding=False)
        lock = os.open(f"{database}.writer", os.O_RDWR)
        fcntl.flock(lock, fcntl.LOCK_EX)
        answers = [daemon.put("deal", f"held{i}", {"title": "x"}).status_code for i in range(3)]
        assert answers == [503, 503, 503]  # not stored: the writer lock is held
        wait_for(lambda: gone(frozen), timeout=60, what="the watchdog to kill the frozen engine process")
        frozen = 0
        fcntl.flock(lock, fcntl.LOCK_UN)
        wait_for(lambda: daemon.ready() == 200, timeout=60, what="/readyz 200 again")
        assert daemon.put("deal", "after", {"title": "after"}).status_code == 202
        assert "made no progress" in daemon.output()
    finally:
        if lock >= 0:
            os.close(lock)
        if frozen:
            with contextlib.suppress(OSError):
                os.kill(frozen, signal.SIGCONT)
        daemon.stop_quietly()


def test_readyz_answers_503_while_the_change_lag_passes_its_bound(tmp_path: Path) -> None:
    database = tmp_path / "flowctl.db"
    daemon = Daemon(config(tmp_path / "config", stall=100_000, lag=2), f"sqlite:///{database}", env=QUEUED)
    frozen = 0
    try:
        daemon.start()
        frozen = freeze(daemon, database, holding=False)
        answers = {id: daemon.put("deal", id, {"title": id}).status_code for id in ("a", "b", "c")}
        assert set(answers.values()) == {202}  # the engine does not hold the lock: writes commit
        wait_for(lambda: daemon.ready() == 503, timeout=30, what="/readyz 503 while the lag passes 2 s")
        body = daemon.get("/readyz").json()
        assert "ready_lag_seconds" in str(body), body
        os.kill(frozen, signal.SIGCONT)
        frozen = 0
        wait_for(lambda: daemon.ready() == 200, timeout=60, what="/readyz 200 once the changes are processed")
        daemon.terminate()
        assert_answers_match_the_store(answers, database)
    finally:
        if frozen:
            with contextlib.suppress(OSError):
                os.kill(frozen, signal.SIGCONT)
        daemon.stop_quietly()


class FullDisk(MemoryStore):
    """A store whose disk is full until ``freed`` is set: every write fails as SQLite's does."""

    def __init__(self) -> None:
        super().__init__()
        self.freed = threading.Event()

    def append_changes(self, changes: Any, inline: Any = None) -> Any:
        if not self.freed.is_set():
            raise sa.exc.OperationalError("INSERT INTO changes", {}, Exception("database or disk is full"))
        return super().append_changes(changes, inline)


def test_readiness_says_writes_cannot_commit_while_they_fail_and_recovers_after_one_succeeds(tmp_path: Path) -> None:
    loaded = load_bundle(config(tmp_path / "config", stall=60, lag=300))
    store = FullDisk()
    service = daemon_service(loaded.root, loaded, store, env={})
    service.ingest.start()
    try:
        assert service.readiness() == []
        with pytest.raises(StoreUnavailable):
            service.ingest.submit(
                NewChange(object="deal", record_id="1", op="put", idempotency_key="k1", fields={"title": "A"})
            ).result(10)
        assert service.readiness() == ["writes cannot commit: Exception: database or disk is full"]
        store.freed.set()
        service.ingest.submit(
            NewChange(object="deal", record_id="2", op="put", idempotency_key="k2", fields={"title": "B"})
        ).result(10)
        assert service.readiness() == []
    finally:
        service.ingest.stop()
