"""The SQLite writer lock waits a bounded time: a frozen holder cannot hold every write for ever."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

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
