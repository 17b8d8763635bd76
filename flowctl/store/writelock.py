"""One SQLite writer at a time, across threads and processes, without SQLite's busy sleeps.

SQLite lets one transaction write at a time; a second ``BEGIN IMMEDIATE`` gets SQLITE_BUSY and
its busy handler sleeps in growing steps (1, 2, 5, 10 … 100 ms) before trying again. Between two
processes that write all the time (the daemon's HTTP process and its engine process) those sleeps
cap throughput far below what the disk commits and put 100 ms stalls in the latency. Writers
queue here instead: a mutex for the threads of one process, then ``flock`` on ``<db>.writer``
for the processes, which the kernel hands to the next waiter the moment it is released.
"""

from __future__ import annotations

import fcntl
import os
import threading
from types import TracebackType


class WriteLock:
    """Context manager: hold it around every write transaction on the SQLite file ``database``."""

    def __init__(self, database: str) -> None:
        self._thread = threading.Lock()
        self.path = f"{database}.writer"
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def __enter__(self) -> WriteLock:
        self._thread.acquire()
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)  # blocks without the GIL
        except BaseException:
            self._thread.release()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread.release()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
