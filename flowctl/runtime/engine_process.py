"""The engine in a process of its own, so that ``flowctl run`` uses two cores.

The HTTP server, the ingest writer and delivery mostly wait on sockets and the disk; the engine
(claim changes and due timers, run the rules, commit runs, timers and outbox rows) is mostly
Python. In one process they share one interpreter lock, and the daemon uses one core however many
the machine has. With ``--processes 2`` (the default) ``flowctl run`` starts this module as a
child that runs the worker loop only; everything else stays in the parent. The two coordinate
through the database as replicas do (leases), plus a pipe each way:

- parent → child: ``w`` after an ingest commit (new changes: do not wait for the poll),
  ``r`` after a reload (switch to the deployed version now); end of file: stop.
- child → parent: a line ``processed failed timers_fired`` when a count changes, for /metrics.

The child dies with the parent (``PR_SET_PDEATHSIG``) and keeps the parent's SQLite lock file open,
so no other daemon starts on that file while it lives. The parent starts it again if it exits.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flowctl.runtime.service import Service

log = logging.getLogger("flowctl.engine_process")

PR_SET_PDEATHSIG = 1
RESTART_DELAYS = (0.5, 1.0, 2.0, 5.0)  # seconds before starting a child that exited, growing


class EngineProcess:
    """The parent's handle on the child: start, wake, reload, counts, supervise, stop."""

    def __init__(self, root: Path, database: str, *, log_format: str = "text", log_level: str = "info",
                 env: Mapping[str, str] | None = None, keep_fds: Sequence[int] = ()) -> None:  # fmt: skip
        self.root = root
        self.database = database
        self.log_format = log_format
        self.log_level = log_level
        self.env = dict(os.environ if env is None else env)
        self.keep_fds = tuple(keep_fds)
        self.proc: subprocess.Popen[bytes] | None = None
        self._control = -1
        self.counts = (0, 0, 0)  # processed, failed, timers fired: as the child last reported
        self._base = (0, 0, 0)  # what children before this one had counted
        self.restarts = 0
        self.started_at = 0.0
        self._stopping = False
        self._lock = threading.Lock()

    # ---- life cycle

    def start(self) -> None:
        if self._stopping:
            return
        control_read, control_write = os.pipe()
        status_read, status_write = os.pipe()
        os.set_blocking(control_write, False)  # a full pipe already means "wake up"
        command = [sys.executable, "-m", "flowctl.runtime.engine_process", str(self.root), "--db", self.database,
                   "--control-fd", str(control_read), "--status-fd", str(status_write), "--parent", str(os.getpid()),
                   "--log-format", self.log_format, "--log-level", self.log_level]  # fmt: skip
        try:
            proc = subprocess.Popen(command, pass_fds=(control_read, status_write, *self.keep_fds), env=self.env)
        finally:
            os.close(control_read)
            os.close(status_write)
        with self._lock:
            self._base = tuple(a + b for a, b in zip(self._base, self.counts, strict=True))  # type: ignore[assignment]
            self.counts = (0, 0, 0)
            self.proc, self._control = proc, control_write
            self.started_at = time.monotonic()
        threading.Thread(target=self._read_status, args=(status_read,), name="flowctl-engine-status",
                         daemon=True).start()  # fmt: skip

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def totals(self) -> tuple[int, int, int]:
        """Counts over every child this daemon ran (a restarted child starts from zero)."""
        with self._lock:
            return tuple(a + b for a, b in zip(self._base, self.counts, strict=True))  # type: ignore[return-value]

    def wake(self) -> None:
        self._send(b"w")

    def reload(self) -> None:
        self._send(b"r")

    def _send(self, byte: bytes) -> None:
        fd = self._control
        if fd < 0:
            return
        with contextlib.suppress(BlockingIOError, BrokenPipeError, OSError):
            os.write(fd, byte)

    def _read_status(self, fd: int) -> None:
        with os.fdopen(fd, "rb") as stream:
            for line in stream:
                parts = line.split()
                if len(parts) == 3 and all(p.isdigit() for p in parts):
                    with self._lock:
                        self.counts = (int(parts[0]), int(parts[1]), int(parts[2]))

    def supervise(self, stop: threading.Event, on_restart: object = None) -> None:
        """Start the child again whenever it exits, until ``stop`` is set. A child started here
        dies when this thread ends (``PR_SET_PDEATHSIG`` follows the thread that forked), so the
        thread waits for its child to exit before it returns: call :meth:`request_stop` first."""
        try:
            self._supervise(stop, on_restart)
        finally:
            proc = self.proc
            if self.restarts and proc is not None:
                proc.wait()

    def _supervise(self, stop: threading.Event, on_restart: object) -> None:
        failures = 0  # exits in a row, each within 10 s of its start: the wait grows
        while not stop.wait(0.2):
            proc = self.proc
            if proc is None or proc.poll() is None:
                continue
            if stop.is_set():
                return
            failures = failures + 1 if time.monotonic() - self.started_at < 10 else 1
            delay = RESTART_DELAYS[min(failures, len(RESTART_DELAYS)) - 1]
            log.error("the engine process (pid %d) exited with code %s; starting it again in %.1f s",
                      proc.pid, proc.returncode, delay)  # fmt: skip
            self._close_control()
            if stop.wait(delay):
                return
            try:
                if callable(on_restart):
                    on_restart()
                self.start()
            except Exception:
                log.exception("could not start the engine process")
            self.restarts += 1

    def request_stop(self) -> None:
        """Close the control pipe: the child stops claiming, commits its batch in hand and exits."""
        self._stopping = True
        self._close_control()

    def stop(self, timeout: float = 8.0) -> None:
        """Close the control pipe and wait for the child; kill it after ``timeout``."""
        self.request_stop()
        proc = self.proc
        if proc is None:
            return
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("the engine process did not stop within %.0f s; killing it", timeout)
            proc.kill()
            proc.wait(5)

    def _close_control(self) -> None:
        fd, self._control = self._control, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)


# ------------------------------------------------------------------------------------ the child


def _die_with_parent(parent: int) -> None:
    """SIGKILL this process when the parent dies, however it dies (Linux); exit at once if it
    already has."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flowctl.runtime.engine_process",
                                     description="The engine of 'flowctl run', which starts it.")  # fmt: skip
    parser.add_argument("directory", type=Path)
    parser.add_argument("--db", required=True)
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--status-fd", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--log-format", default="text")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    _die_with_parent(args.parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

    from flowctl.cli.run import setup_logging
    from flowctl.runtime.reload import pick_up
    from flowctl.runtime.service import Service
    from flowctl.spec.config import load_bundle
    from flowctl.store import open_store

    setup_logging(args.log_format, args.log_level)
    loaded = load_bundle(args.directory)
    if not loaded.ok or loaded.bundle is None:
        log.error("engine process: %s does not validate", args.directory)
        return 1
    store = open_store(args.db)
    service = Service(root=loaded.root, loaded=loaded, store=store, role="engine")
    pick_up(service)  # the parent deployed: run what the database says is current
    service.start()
    reporter = threading.Thread(target=_report, args=(service, args.status_fd), name="flowctl-engine-report",
                                daemon=True)  # fmt: skip
    reporter.start()
    try:
        while True:
            data = os.read(args.control_fd, 4096)
            if not data:
                break  # the parent stopped (or died): finish the batch in hand and go
            if b"r" in data:
                service.pick_up_soon()
            service.wake.set()
    finally:
        service.stop()
        _write_counts(service, args.status_fd)
        store.close()
    return 0


def _counts(service: Service) -> tuple[int, int, int]:
    worker = service.worker
    return worker.processed, worker.failed, worker.timers_fired


def _write_counts(service: Service, fd: int) -> None:
    with contextlib.suppress(OSError):
        processed, failed, fired = _counts(service)
        os.write(fd, f"{processed} {failed} {fired}\n".encode())


def _report(service: Service, fd: int) -> None:
    last = None
    while not service.stopping.wait(0.25):
        now = _counts(service)
        if now != last:
            _write_counts(service, fd)
            last = now


if __name__ == "__main__":
    sys.exit(main())
