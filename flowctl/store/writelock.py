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

import fcntl
import os
import queue
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
        self._waiter: _Waiter | None = None  # started at the first wait that must be bounded

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
        """A blocking flock, woken the moment the lock is free (unlike polling), taken by this
        lock's waiter thread so the wait can be given up: see :class:`_Waiter`."""
        if self._waiter is None:
            self._waiter = _Waiter(self.path)
        if self._waiter.take(max(remaining, 0.0)):
            return self._waiter.fd
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
            self._thread.release()

    def close(self) -> None:
        if self._waiter is not None:
            self._waiter.close()
            self._waiter = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class _Request:
    """One bounded wait handed to the waiter thread."""

    __slots__ = ("abandoned", "error", "got")

    def __init__(self) -> None:
        self.got = threading.Event()
        self.abandoned = False
        self.error: OSError | None = None


class _Waiter:
    """A thread that takes the flock on an open file description of its own, one wait at a time.

    A blocking ``flock`` cannot be given up, so a bounded wait hands it to this thread and waits
    on an event instead. A wait given up (``abandoned``) must not leave the lock taken for nobody:
    when the thread gets it after all, it lets it go at once. One thread for the lock's life: a
    thread started per contended write cost more than the write (the HTTP and engine processes
    contend on most of theirs)."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        self._requests: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._mutex = threading.Lock()
        threading.Thread(target=self._run, name="flowctl-writelock", daemon=True).start()

    def take(self, wait: float) -> bool:
        """Whether the flock was taken (on :attr:`fd`) within ``wait`` seconds."""
        request = _Request()
        self._requests.put(request)
        request.got.wait(wait)
        with self._mutex:
            if request.error is not None:
                raise request.error
            if request.got.is_set():
                return True
            request.abandoned = True
        return False

    def close(self) -> None:
        """The thread ends after the wait in hand, if any, and closes its descriptor."""
        self._requests.put(None)

    def _run(self) -> None:
        while (request := self._requests.get()) is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX)
            except OSError as exc:
                with self._mutex:
                    request.error = exc
                    request.got.set()
                continue
            with self._mutex:
                if not request.abandoned:
                    request.got.set()  # the lock is the caller's now; it unlocks self.fd
                    continue
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
