"""The engine in a process of its own, so that ``flowctl run`` uses two cores.

The HTTP server, the ingest writer and delivery mostly wait on sockets and the disk; the engine
(claim changes and due timers, run the rules, commit runs, timers and outbox rows) is mostly
Python. In one process they share one interpreter lock, and the daemon uses one core however many
the machine has. With ``--processes 2`` (the default) ``flowctl run`` starts this module as a
child that runs the worker loop only; everything else stays in the parent. The two coordinate
through the database as replicas do (leases), plus a pipe each way:

- parent → child: ``w`` after an ingest commit (new changes: do not wait for the poll),
  ``r`` after a reload (switch to the deployed version now); end of file: stop.
- child → parent: a line ``processed failed timers_fired`` when a count changes, for /metrics;
  ``m <json>`` with what its histograms gained (engine batch time, change-to-outbox latency;
  ``metrics.gained``), which the parent adds to its own, so /metrics shows both processes;
  ``v <version>`` once it runs a version (and after each switch); ``w <why>`` while it runs none;
  ``h`` (a heartbeat) at most every quarter second while its worker loop finishes rounds or it
  builds a version.

A watchdog in the parent kills (SIGKILL) and restarts a child that runs a version but has sent
nothing for ``stall_seconds`` (``limits.engine_stall_seconds``) while changes wait: frozen
(SIGSTOP, a hung disk) it may hold the SQLite writer lock, and every write of the daemon with it.

The child runs the version the parent names (``--version``), read from the store by its hash,
else the store's current one; never the working directory, which may hold an edit that was
refused. While the store cannot be reached, or no stored version can be run, it waits and tries
again (``w`` says why, and the parent's /readyz answers 503) instead of exiting.

This module is the parent's side; the child is ``engine_child``. The child dies with the parent
(``PR_SET_PDEATHSIG``) and keeps the parent's SQLite lock file open,
so no other daemon starts on that file while it lives. The parent starts it again if it exits.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from flowctl.runtime.api.metrics import Metrics, add_gained

log = logging.getLogger("flowctl.engine_process")

RESTART_DELAYS = (0.5, 1.0, 2.0, 5.0)  # seconds before starting a child that exited, growing
QUICK_EXIT = 10.0  # a child that exits sooner than this after its start counts towards a crash loop
CRASH_LOOP = 3  # quick exits in a row after which the engine counts as not running at all


class EngineProcess:
    """The parent's handle on the child: start, wake, reload, counts, supervise, stop."""

    def __init__(
        self,
        database: str,
        *,
        log_format: str = "text",
        log_level: str = "info",
        env: Mapping[str, str] | None = None,
        keep_fds: Sequence[int] = (),
    ) -> None:
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
        self.running_version = ""  # the version the child said it runs ('' until it has loaded one)
        self.waiting = ""  # why the child runs no version, as it said
        self.quick_exits = 0  # exits in a row, each within QUICK_EXIT of its start
        self.stall_seconds = 60.0  # the watchdog's bound (limits.engine_stall_seconds)
        self.stalls = 0  # children the watchdog killed
        self.beat_at = 0.0  # time.monotonic() of the child's last status line
        self.pending: Callable[[], bool] = lambda: True  # whether changes wait (set by the service)
        self.on_ran: Callable[[], None] | None = None  # the child reported more changes run or timers fired
        self.metrics: Metrics | None = None  # where the child's histograms are added (set by the service)
        self._stopping = False
        self._lock = threading.Lock()

    # ---- life cycle

    def start(self, version: str) -> None:
        """Start a child that runs the stored ``version`` (the one this daemon runs)."""
        if self._stopping:
            return
        control_read, control_write = os.pipe()
        status_read, status_write = os.pipe()
        os.set_blocking(control_write, False)  # a full pipe already means "wake up"
        command = [
            sys.executable,
            "-m",
            "flowctl.runtime.daemon.engine_child",
            "--version",
            version,
            "--db",
            self.database,
            "--control-fd",
            str(control_read),
            "--status-fd",
            str(status_write),
            "--parent",
            str(os.getpid()),
            "--log-format",
            self.log_format,
            "--log-level",
            self.log_level,
        ]
        try:
            proc = subprocess.Popen(command, pass_fds=(control_read, status_write, *self.keep_fds), env=self.env)
        finally:
            os.close(control_read)
            os.close(status_write)
        with self._lock:
            self._base = tuple(a + b for a, b in zip(self._base, self.counts, strict=True))  # type: ignore[assignment]
            self.counts = (0, 0, 0)
            self.proc, self._control = proc, control_write
            self.started_at = self.beat_at = time.monotonic()
            self.running_version, self.waiting = "", "starting"
        threading.Thread(
            target=self._read_status, args=(status_read,), name="flowctl-engine-status", daemon=True
        ).start()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def running(self) -> bool:
        """A child is alive and runs a version: it takes changes from the queue."""
        return bool(self.running_version) and self.alive()

    def pid(self) -> int | None:
        """The child's pid while it runs (its CPU and memory are on /metrics)."""
        proc = self.proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def problem(self) -> str:
        """Why no engine process can process changes now ('' when one can): none runs, it keeps
        exiting, or it runs no version (starting, the store unreachable, no version it can run)."""
        if not self.alive():
            return "the engine process is not running; it is started again"
        if self.quick_exits >= CRASH_LOOP and time.monotonic() - self.started_at < QUICK_EXIT:
            return f"the engine process keeps exiting ({self.quick_exits} times in a row); see the daemon's log"
        if not self.running_version:
            return f"the engine process runs no version yet: {self.waiting or 'starting'}"
        return ""

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
                kind, _, rest = line.decode("utf-8", "replace").strip().partition(" ")
                self.beat_at = time.monotonic()
                if kind == "m":
                    self._add_metrics(rest)
                    continue
                ran = False
                with self._lock:
                    if kind == "v":
                        self.running_version, self.waiting = rest, ""
                    elif kind == "w":
                        self.running_version, self.waiting = "", rest
                    elif kind.isdigit() and len(parts := rest.split()) == 2 and all(p.isdigit() for p in parts):
                        counts = (int(kind), int(parts[0]), int(parts[1]))
                        ran, self.counts = counts[0] > self.counts[0] or counts[2] > self.counts[2], counts
                if ran and self.on_ran is not None:
                    self.on_ran()

    def _add_metrics(self, text: str) -> None:
        metrics = self.metrics
        if metrics is None:
            return
        try:
            add_gained(metrics, json.loads(text))
        except (ValueError, TypeError) as exc:  # a bug in one report must not stop the status reader
            log.warning("the engine process reported metrics this process cannot read: %s", exc)

    def supervise(
        self, stop: threading.Event, version: Callable[[], str], on_exit: Callable[[int], None] | None = None
    ) -> None:
        """Start the child again whenever it exits, until ``stop`` is set: ``on_exit(pid)`` first
        (it must not raise), then a child on ``version()``. A child started here dies when this
        thread ends (``PR_SET_PDEATHSIG`` follows the thread that forked), so the thread waits for
        its child to exit before it returns: call :meth:`request_stop` first."""
        try:
            self._supervise(stop, version, on_exit)
        finally:
            proc = self.proc
            if self.restarts and proc is not None:
                proc.wait()

    def _supervise(
        self, stop: threading.Event, version: Callable[[], str], on_exit: Callable[[int], None] | None
    ) -> None:
        while not stop.wait(0.2):
            proc = self.proc
            if proc is None or proc.poll() is None:
                if self.quick_exits and time.monotonic() - self.started_at >= QUICK_EXIT:
                    self.quick_exits = 0  # it has run a while: the next exit starts a new count
                if proc is not None:
                    self._watch(proc)
                continue
            if stop.is_set():
                return
            self.quick_exits = self.quick_exits + 1 if time.monotonic() - self.started_at < QUICK_EXIT else 1
            delay = RESTART_DELAYS[min(self.quick_exits, len(RESTART_DELAYS)) - 1]
            log.error(
                "the engine process (pid %d) exited with code %s; starting it again in %.1f s",
                proc.pid,
                proc.returncode,
                delay,
            )
            self._close_control()
            with self._lock:
                self.running_version, self.waiting = "", "it exited"
            if stop.wait(delay):
                return
            if on_exit is not None:
                try:
                    on_exit(proc.pid)
                except Exception:  # a bug there must not stop the restarts
                    log.exception("after the engine process (pid %d) exited", proc.pid)
            try:
                self.start(version())
            except OSError:
                log.exception("could not start the engine process; trying again")
                self.started_at = time.monotonic()
                continue
            self.restarts += 1

    def _watch(self, proc: subprocess.Popen[bytes]) -> None:
        """Kill a child that runs a version but has said nothing for ``stall_seconds`` while changes
        wait; the loop of :meth:`supervise` then starts it again. One that is loading a version or
        waiting for the store says so and is left alone, as is one whose silence the parent cannot
        judge (the store cannot be read: the outage, not the child, is the problem)."""
        silent = time.monotonic() - self.beat_at
        if self._stopping or not self.running_version or silent < self.stall_seconds:
            return
        try:
            waiting = self.pending()
        except Exception:  # noqa: BLE001 - cannot tell: leave it
            return
        if not waiting or proc.poll() is not None:
            return
        log.error(
            "the engine process (pid %d) made no progress for %.0f s while changes wait (limits."
            "engine_stall_seconds: %g); killing it and starting it again",
            proc.pid,
            silent,
            self.stall_seconds,
        )
        self.stalls += 1
        with contextlib.suppress(OSError):
            proc.kill()  # SIGKILL ends a stopped process too; the kernel frees its locks
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)

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
