"""The engine process's own side: what ``python -m flowctl.runtime.daemon.engine_child`` runs.

``flowctl run`` (``engine_process.EngineProcess``) starts it with the version to run, the database
and two pipes; it builds its part of the daemon through the composition root
(``compose.engine_service``: the engines, the worker loop and its leases) and runs it until the
parent closes the control pipe. See ``engine_process`` for the protocol on the pipes.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence

from flowctl.ports import Store
from flowctl.runtime.api.metrics import HistogramState, gained
from flowctl.runtime.compose import engine_service
from flowctl.runtime.daemon import heap
from flowctl.runtime.daemon.ingest import Backoff, StoreHealth, brief, unavailable
from flowctl.runtime.daemon.logs import setup_logging
from flowctl.runtime.daemon.memory_trace import start_from_env
from flowctl.runtime.daemon.reload import Unusable, load_deployed
from flowctl.runtime.daemon.service import EngineService
from flowctl.store import open_store

log = logging.getLogger("flowctl.engine_process")

PR_SET_PDEATHSIG = 1
#: Seconds at least between two reports: a worker's rounds may come hundreds a second.
REPORT_GAP = 0.05


def _die_with_parent(parent: int) -> None:
    """SIGKILL this process when the parent dies, however it dies (Linux); exit at once if it
    already has."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(0)


class _Control:
    """The parent's end of the control pipe, read by a thread of its own from the start, so that a
    child still waiting for the store or for a version stops when the parent closes the pipe."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.closed = threading.Event()
        self.service: EngineService | None = None  # set once the child runs a version

    def run(self) -> None:
        while True:
            try:
                data = os.read(self.fd, 4096)
            except OSError:
                data = b""
            service = self.service
            if not data:
                self.closed.set()  # the parent stopped (or died): finish the batch in hand and go
                if service is not None:
                    service.wake.set()
                return
            if service is not None:
                if b"r" in data:
                    service.pick_up_soon()
                service.wake.set()


class _Status:
    """The child's end of the status pipe: one line per message, from any thread."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._lock = threading.Lock()
        self.last_wait = ""

    def write(self, line: str) -> None:
        with self._lock, contextlib.suppress(OSError):
            os.write(self.fd, (" ".join(line.split()) + "\n").encode())

    def waiting(self, why: str) -> None:
        if why != self.last_wait:
            self.last_wait = why
            self.write(f"w {why}")


def _load(
    database: str, wanted: str, closed: threading.Event, status: _Status, health: StoreHealth
) -> tuple[Store, EngineService] | None:
    """Open the store and build the engine of the version to run, waiting (with backoff) while
    the store cannot be reached or no stored version can be run; None if the parent stopped first."""
    backoff = Backoff()
    store: Store | None = None
    reported = ""
    while not closed.is_set():
        try:
            store = store or open_store(database)
            loaded, version = load_deployed(store, wanted)
        except Unusable as exc:
            why = f"no stored version can be run ({exc})"
            if why != reported:
                reported = why
                for issue in exc.issues:
                    log.error("version %s: %s", exc.version, issue)
                log.error("engine process: %s; waiting for a version that can be run (flowctl apply)", why)
            status.waiting(why)
        except Exception as exc:
            if not unavailable(exc):
                raise
            health.failed("engine start", exc)
            status.waiting(f"the store is unavailable: {brief(exc)}")
        else:
            health.ok()
            service = engine_service(loaded, store, version)
            return store, service
        closed.wait(backoff.next())
    if store is not None:
        store.close()
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flowctl.runtime.daemon.engine_child",
        description="The engine of 'flowctl run', which starts it.",
    )
    parser.add_argument("--version", default="", help="the stored version to run (default: the current one)")
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

    setup_logging(args.log_format, args.log_level)
    control, status = _Control(args.control_fd), _Status(args.status_fd)
    threading.Thread(target=control.run, name="flowctl-engine-control", daemon=True).start()
    start_from_env(os.environ, control.closed)  # FLOWCTL_TRACEMALLOC: where memory goes, for a diagnosis
    # the parent sees the same database and reports its outages: this process logs only errors
    quiet = logging.getLogger("flowctl.engine_process.store")
    quiet.setLevel(logging.ERROR)
    loaded = _load(args.db, args.version, control.closed, status, StoreHealth(quiet))
    if loaded is None:
        return 0
    store, service = loaded
    control.service = service
    service.start()
    heap.settle()  # start-up is done: the collector leaves what it built alone
    histograms = _Histograms(service)
    ran = threading.Event()
    service.worker.on_committed = ran.set  # report the counts soon: the parent nudges its deliverer on them
    reporter = threading.Thread(
        target=_report, args=(service, status, histograms, ran), name="flowctl-engine-report", daemon=True
    )
    reporter.start()
    try:
        control.closed.wait()
    finally:
        service.stop()
        _write_counts(service, status)
        histograms.report(status)
        store.close()
    return 0


def _counts(service: EngineService) -> tuple[int, int, int]:
    worker = service.worker
    return worker.processed, worker.failed, worker.timers_fired


def _write_counts(service: EngineService, status: _Status) -> None:
    processed, failed, fired = _counts(service)
    status.write(f"{processed} {failed} {fired}")


class _Histograms:
    """What the engine's histograms gained since the last report, for the parent's /metrics."""

    def __init__(self, service: EngineService) -> None:
        self.service = service
        self.sent: dict[str, HistogramState] = {}
        self._lock = threading.Lock()  # the reporter thread, then the last report at the stop

    def report(self, status: _Status) -> None:
        with self._lock:
            now = {name: h.state() for name, h in self.service.metrics.histograms().items()}
            doc = gained(now, self.sent)
            if doc:
                status.write("m " + json.dumps(doc, separators=(",", ":")))
            self.sent = now


def _report(service: EngineService, status: _Status, histograms: _Histograms, ran: threading.Event) -> None:
    """The counts when they change, the version the engine runs (at once, then on a switch), and a
    heartbeat while the worker loop finishes rounds or builds a version (the parent's watchdog).
    Every quarter second, or ``REPORT_GAP`` after a round that ran something (``ran``): the parent
    delivers the messages of that round when it hears of it."""
    last, version, rounds = None, "", -1
    while True:
        histograms.report(status)
        if service.version != version:
            version = service.version
            status.write(f"v {version}")
        now = _counts(service)
        if now != last:
            _write_counts(service, status)
            last = now
        elif service.rounds != rounds or service.building:
            status.write("h")
        rounds = service.rounds
        if service.stopping.wait(REPORT_GAP):
            return
        ran.wait(0.25 - REPORT_GAP)
        ran.clear()


if __name__ == "__main__":
    sys.exit(main())
