"""One SQLite writer at a time, across threads and processes, without SQLite's busy sleeps.

SQLite lets one transaction write at a time; a second ``BEGIN IMMEDIATE`` gets SQLITE_BUSY and
its busy handler sleeps in growing steps (1, 2, 5, 10 … 100 ms) before trying again. Between two
processes that write all the time (the daemon's HTTP process and its engine process) those sleeps
cap throughput far below what the disk commits and put 100 ms stalls in the latency. Writers
queue here instead: a mutex for the threads of one process, then ``flock`` on ``<db>.writer``
for the processes, which the kernel hands to the next waiter the moment it is released.

The wait is bounded (``FLOWCTL_WRITE_WAIT_SECONDS``, default 10): a holder that is frozen (SIGSTOP,
a hung disk) must not hold every write of the daemon for ever. A wait that runs out raises
:class:`WriteLockTimeout` before anything was written, so the caller knows the write is not stored.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from types import TracebackType

#: Seconds a write waits for the writer lock by default (``FLOWCTL_WRITE_WAIT_SECONDS``).
DEFAULT_WAIT = 10.0


class WriteLockTimeout(Exception):
    """The writer lock was not free within the bounded wait; nothing was written."""


def wait_seconds(env: dict[str, str] | None = None) -> float:
    """``FLOWCTL_WRITE_WAIT_SECONDS`` (default 10); 0 or less waits for ever (the old behaviour)."""
    text = (os.environ if env is None else env).get("FLOWCTL_WRITE_WAIT_SECONDS", "")
    try:
        return float(text) if text.strip() else DEFAULT_WAIT
    except ValueError:
        raise ValueError(
            f"FLOWCTL_WRITE_WAIT_SECONDS={text!r} is not a number of seconds; set it to e.g. 10, or unset it"
        ) from None


class WriteLock:
    """Context manager: hold it around every write transaction on the SQLite file ``database``."""

    def __init__(self, database: str, wait: float | None = None) -> None:
        self._thread = threading.Lock()
        self.path = f"{database}.writer"
        self.wait = wait_seconds() if wait is None else wait
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._held = -1  # the descriptor whose open file description holds the flock

    def __enter__(self) -> WriteLock:
        started = time.monotonic()
        if self.wait <= 0:
            self._thread.acquire()
        elif not self._thread.acquire(timeout=self.wait):
            raise self._timeout(time.monotonic() - started)
        try:
            self._held = self._flock(started)
        except BaseException:
            self._thread.release()
            raise
        return self

    def _flock(self, started: float) -> int:
        """Take the flock; return the descriptor that holds it."""
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return self._fd
        except BlockingIOError:
            pass
        if self.wait <= 0:
            fcntl.flock(self._fd, fcntl.LOCK_EX)  # blocks without the GIL
            return self._fd
        return self._flock_bounded(self.wait - (time.monotonic() - started), started)

    def _flock_bounded(self, remaining: float, started: float) -> int:
        """A blocking flock (woken the moment the lock is free, unlike polling) in a helper thread
        on an open file description of its own, so that a wait given up here cannot take the lock
        later for this one: the helper then releases it at once and closes its descriptor."""
        fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        got, lock = threading.Event(), threading.Lock()
        state = {"abandoned": False}

        def take() -> None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError:
                with lock:
                    state["abandoned"] = True
                os.close(fd)
                return
            with lock:
                if not state["abandoned"]:
                    got.set()
                    return
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

        threading.Thread(target=take, name="flowctl-writelock", daemon=True).start()
        got.wait(max(remaining, 0.0))
        with lock:
            if got.is_set():
                return fd
            state["abandoned"] = True
        raise self._timeout(time.monotonic() - started)

    def _timeout(self, waited: float) -> WriteLockTimeout:
        return WriteLockTimeout(
            f"waited {waited:.1f} s for the SQLite writer lock {self.path}: another flowctl "
            "process holds it and does not commit (frozen or hung?); nothing was written. "
            "FLOWCTL_WRITE_WAIT_SECONDS sets the wait"
        )

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        fd, self._held = self._held, -1
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            if fd != self._fd:
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._thread.release()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
