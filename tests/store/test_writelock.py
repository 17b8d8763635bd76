"""The SQLite writer lock waits a bounded time: a frozen holder cannot hold every write for ever."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from flowctl.store import open_store
from flowctl.store.engines import BUSY_TIMEOUT_MS
from flowctl.store.writelock import WriteLock, WriteLockTimeout, wait_seconds


def test_a_wait_for_a_held_lock_ends_and_a_given_up_wait_does_not_take_it_later(tmp_path: Path) -> None:
    database = str(tmp_path / "flowctl.db")
    holder, waiter, later = WriteLock(database, wait=5), WriteLock(database, wait=0.3), WriteLock(database, wait=5)
    timed_out = r"writer lock .*flowctl\.db\.writer.*nothing was written"
    with holder, pytest.raises(WriteLockTimeout, match=timed_out), waiter:
        pass
    # the given-up wait's helper may take the lock once free, but lets it go at once
    done = threading.Event()

    def take() -> None:
        with later:
            done.set()

    threading.Thread(target=take, daemon=True).start()
    assert done.wait(10)
    with waiter:  # and the lock that timed out works again
        pass
    for lock in (holder, waiter, later):
        lock.close()


def test_the_wait_is_read_from_the_environment() -> None:
    assert wait_seconds({}) == 10
    assert wait_seconds({"FLOWCTL_WRITE_WAIT_SECONDS": "2.5"}) == 2.5
    with pytest.raises(ValueError, match="FLOWCTL_WRITE_WAIT_SECONDS='soon' is not a number"):
        wait_seconds({"FLOWCTL_WRITE_WAIT_SECONDS": "soon"})


def test_a_reader_opened_while_a_write_transaction_is_open_reads_at_once(tmp_path: Path) -> None:
    # the hot path reads through new pooled connections while its own write transaction is open:
    # a connection's set-up must not wait for that writer (it waited 10 s, then failed)
    url = f"sqlite:///{tmp_path / 'flowctl.db'}"
    store = open_store(url)
    try:
        with store.engine.connect() as writer:  # type: ignore[attr-defined]
            writer.exec_driver_sql("BEGIN IMMEDIATE")
            writer.exec_driver_sql("DELETE FROM records")
            started = time.monotonic()
            reader = open_store(url)
            try:
                assert reader.record("deal", "7") is None
            finally:
                reader.close()
            assert time.monotonic() - started < BUSY_TIMEOUT_MS / 1000 / 2
            writer.exec_driver_sql("ROLLBACK")
    finally:
        store.close()


def test_contended_waits_share_one_waiter_thread_and_each_gets_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the HTTP and engine processes contend for most writes: a thread started per wait cost more
    # than the write itself
    started: list[str] = []
    start = threading.Thread.start

    def counted(thread: threading.Thread) -> None:
        started.append(thread.name)
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", counted)
    database = str(tmp_path / "flowctl.db")
    other, mine = WriteLock(database, wait=5), WriteLock(database, wait=5)
    got = 0
    try:
        for _ in range(20):
            other.__enter__()  # held as by the other process (an open file description of its own)
            released = threading.Timer(0.01, other.__exit__, (None, None, None))
            released.start()
            with mine:  # waits until the timer lets go
                got += 1
            released.join()
    finally:
        other.close()
        mine.close()
    assert got == 20
    assert started.count("flowctl-writelock") == 1
