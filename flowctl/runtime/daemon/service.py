"""The daemon's running parts, started and stopped together: the threads around one engine per version.

The parts are built by ``runtime.compose`` and handed in; this module runs them. Threads within a
process: the deliverer blocks on the network, ingest on the disk, the HTTP server is asyncio. The
worker, which is mostly Python, runs either as a thread of the :class:`Service` or in an engine
process of its own (``engine_process`` given), whose child runs an :class:`EngineService`: the
worker loop and its leases only (see ``engine_process``). Shutdown stops claiming new work, lets
the batch in hand commit, and returns within the deadline; anything not yet claimed stays in the
database for next time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from flowctl import __version__ as FLOWCTL_VERSION
from flowctl.channels.base import Sender
from flowctl.channels.env import by_owner, unset_env
from flowctl.engine.pipelines import PipelineRunner
from flowctl.engine.state import Record
from flowctl.gitops.deploy import DeployConflict, deploy
from flowctl.gitops.plan import make_plan
from flowctl.gitops.versions import read_directory, remember
from flowctl.ports import Clock, Store
from flowctl.runtime.api.metrics import Metrics, register_queue_metrics
from flowctl.runtime.care.scheduler import CareScheduler
from flowctl.runtime.daemon.engine_process import EngineProcess
from flowctl.runtime.daemon.ingest import Backoff, Ingest, StoreHealth, unavailable
from flowctl.runtime.daemon.leases import LeaseKeeper
from flowctl.runtime.daemon.logs import RecentErrors, ids
from flowctl.runtime.daemon.recycling import RecycleBinPurge
from flowctl.runtime.daemon.reload import pick_up
from flowctl.runtime.daemon.retention import RetentionPurge
from flowctl.runtime.daemon.worker import Engines, Worker
from flowctl.runtime.delivery.deliverer import Deliverer
from flowctl.sources.polling import SqlPoller
from flowctl.spec import model as m
from flowctl.spec.config import Loaded
from flowctl.spec.loader import yaml_files

log = logging.getLogger("flowctl.service")

READY_COMMIT_SECONDS = 5.0  # a write in a commit longer than this makes /readyz answer 503
WRITE_FAILURE_SECONDS = 30.0  # /readyz answers 503 this long after a write failed (unless one succeeded since)


def owner_of(pid: int) -> str:
    """How the process ``pid`` of this host names itself in leases (``host:pid``)."""
    return f"{os.uname().nodename}:{pid}"


@dataclass(eq=False)
class EngineService:
    """The worker loop and its leases around the engines: all the engine process runs. It follows
    the store's current version (``pick_up``) and, with ``watch`` or on SIGHUP, reloads the
    directory it was started with."""

    root: Path
    loaded: Loaded
    store: Store
    clock: Clock
    env: Mapping[str, str]
    owner: str
    version: str  # the stored version ``loaded`` was built from
    engines: Engines
    metrics: Metrics
    health: StoreHealth  # one view of the database for every thread: an outage is logged once, its end once
    leases: LeaseKeeper
    worker: Worker
    senders: dict[str, Sender]
    lease_seconds: float
    stopping: threading.Event
    wake: threading.Event
    poll_interval: float = 0.2
    watch: bool = False  # reload when the directory's files change
    log_stream: TextIO | None = None
    # the retention purge runs where the worker runs: in the engine process when there is one,
    # away from the HTTP process's threads (there a purge batch waited for the GIL while it held
    # SQLite's writer lock, and the writes waited for it: +26 ms on the p99 at 200/s)
    retention: RetentionPurge | None = None

    def __post_init__(self) -> None:
        assert self.loaded.bundle is not None
        self.bundle: m.Bundle = self.loaded.bundle
        self.threads: list[threading.Thread] = []
        self.reload_requested = threading.Event()
        self.last_reload_ok = True
        self.last_reload_problem = ""
        self.last_reload: dict[str, Any] | None = None  # when, the result, the version after, why not
        self.recent_errors = RecentErrors()
        self.recent_errors.attach()
        self._next_housekeeping = 0.0
        self._leftover_owners: set[str] = set()  # engine processes that exited, whose leases are to end
        self._degraded: tuple[m.Bundle | None, list[str]] = (None, [])  # degraded(), for one bundle
        self._signature = self._watch_signature() if self.watch else ()
        self.rounds = 0  # worker loop rounds finished (failed ones too): the engine process's heartbeat
        self.building = False  # building a newly deployed version (a long round, not a hang)
        self._register_metrics()

    # ------------------------------------------------------------------ what HTTP needs

    def readiness(self) -> list[str]:
        """Why this daemon cannot take and process changes now ([] when it can): stopping, a
        thread down, no engine process running a version, or the database not answering."""
        if self.stopping.is_set():
            return ["the daemon is stopping"]
        problems = [f"the {t.name} thread is not running" for t in self.threads if not t.is_alive()]
        problems += self._process_problems()
        problems += self._write_problems()
        try:
            self.store.current_version()  # one small read: the database answers
            counts = self.store.queue_counts()
        except Exception:  # noqa: BLE001 - any database error means not ready
            problems.append("the store is unreachable")
            return problems
        oldest, bound = counts.get("oldest_received_at"), self.bundle.config.limits.ready_lag_seconds
        lag = (self.clock.now() - oldest).total_seconds() if oldest is not None else 0.0
        if lag > bound:
            problems.append(
                f"the oldest change waits {lag:.0f} s to be processed (limits.ready_lag_seconds: "
                f"{bound}); see flowctl_changes_lag_seconds and the engine's log"
            )
        return problems

    def _process_problems(self) -> list[str]:
        """Why another process this one relies on cannot work (none here)."""
        return []

    def _write_problems(self) -> list[str]:
        """Why writes cannot commit (none here: this side takes no writes)."""
        return []

    def ready(self) -> bool:
        return not self.readiness()

    def degraded(self) -> list[str]:
        """What works only in part while the daemon is ready: channels and sources that need an
        ``${ENV}`` variable that is not set (their messages are held, those sources do not run)."""
        bundle = self.bundle
        if self._degraded[0] is not bundle:
            self._degraded = (bundle, list(by_owner(unset_env(bundle, self.env)).values()))
        return list(self._degraded[1])

    def refuse_move(self, record: Record, stage: str, pipeline: str = "") -> str:
        return self.engines.current.pipelines.refuse_move(record, stage, pipeline)

    def engine_pipelines(self) -> PipelineRunner:
        return self.engines.current.pipelines

    def health_report(self) -> dict[str, Any]:
        """What ``GET /v1/health`` adds to the store's gauges: the engine, the last reload, and the
        last warnings and errors logged (newest first)."""
        return {
            "engine": self._engine_state(),
            "last_reload": self.last_reload,
            "recent_errors": self.recent_errors.items(),
        }

    def _engine_state(self) -> dict[str, Any]:
        alive = any(t.is_alive() for t in self.threads if t.name == "flowctl-worker")
        return {
            "mode": "thread",
            "running": alive and not self.stopping.is_set(),
            "version": self.version,
            "problem": "" if alive else "the worker thread is not running",
            "restarts": 0,
        }

    # ------------------------------------------------------------------ life cycle

    def record_version(self) -> None:
        """Deploy the directory this process was started with, through the same plan and checks as
        ``flowctl apply``; raises ``StartRefused`` when the plan refuses it."""
        if self.deploy(self.root, message="flowctl run") == "refused":
            raise StartRefused(self.last_reload_problem)

    def deploy(self, directory: Path, *, message: str) -> str:
        """Plan ``directory`` against the live state and deploy it: ``unchanged``, ``deployed``,
        ``invalid`` or ``refused`` (why is in ``last_reload_problem``). Never half-applied."""
        snapshot = read_directory(directory)
        if not snapshot.loaded.ok:
            self.last_reload_problem = "; ".join(str(i) for i in snapshot.loaded.errors[:10])
            return "invalid"
        plan = make_plan(self.store, snapshot, self.clock.now(), blast=False)
        if plan.status == "unchanged":
            remember(snapshot)  # the next reload plans against it: no need to build it again
            return "unchanged"
        if plan.status != "changes":
            self.last_reload_problem = "; ".join([*plan.errors, *(f.message for f in plan.refusals)])
            return "refused"
        try:
            deploy(self.store, plan, self.clock.now(), message=message)
        except DeployConflict as exc:
            self.last_reload_problem = str(exc)
            return "refused"
        remember(snapshot)  # switching to it (pick_up) need not build it a second time
        return "deployed"

    def reload(self) -> str:
        """Hot reload from the directory (SIGHUP, ``--watch``): validate, plan, deploy, switch.
        A refused or invalid directory is logged and the running version stays."""
        try:
            result = self.deploy(self.root, message="reload")
        except Exception as exc:
            log.exception("reload failed")
            result, self.last_reload_problem = "failed", str(exc)
        if result in ("invalid", "refused", "failed"):
            log.error("reload %s: %s; still running version %s", result, self.last_reload_problem, self.version)
        elif result == "deployed" and pick_up(self):
            self._switched()
            log.info("reloaded: now running version %s", self.version, extra=ids(config_version=self.version))
        self.metrics.counter("flowctl_reloads_total", "Configuration reloads by result", ["result"]).inc(result=result)
        self.last_reload_ok = result in ("deployed", "unchanged")
        self.last_reload = {
            "at": self.clock.now(),
            "result": result,
            "version": self.version,
            "ok": self.last_reload_ok,
            "error": "" if self.last_reload_ok else self.last_reload_problem,
        }
        return result

    def _switched(self) -> None:
        """After a reload switched this process to a new version: tell whoever else runs it."""

    def _watch_signature(self) -> tuple[tuple[str, float, int], ...]:
        out = []
        for path in yaml_files(self.root):
            with contextlib.suppress(OSError):
                stat = path.stat()
                out.append((str(path), stat.st_mtime, stat.st_size))
        for folder in ("templates",):
            for path in sorted((self.root / folder).rglob("*")) if (self.root / folder).is_dir() else ():
                with contextlib.suppress(OSError):
                    stat = path.stat()
                    out.append((str(path), stat.st_mtime, stat.st_size))
        return tuple(out)

    def _housekeeping(self) -> None:
        """Every couple of seconds: pick up a version deployed by ``flowctl apply`` elsewhere, and
        reload on SIGHUP or when the watched directory changed."""
        if self._leftover_owners:
            self._end_leftover_leases()
        now = time.monotonic()
        if now < self._next_housekeeping and not self.reload_requested.is_set():
            return
        self._next_housekeeping = now + 2.0
        if self.watch:
            signature = self._watch_signature()
            if signature != self._signature:
                self._signature = signature
                self.reload_requested.set()
        self.building = True  # a build of a large version takes a while: not a hang
        try:
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                self.reload()
                return
            try:
                pick_up(self)
            except Exception as exc:
                if unavailable(exc):
                    raise  # the worker loop backs off; the outage is logged once
                log.exception("could not switch to the deployed version; still running %s", self.version)
        finally:
            self.building = False

    def start(self) -> None:
        """The worker loop, the lease heartbeat (the parent reaps expired leases) and the purge."""
        self.threads = [
            threading.Thread(target=self._work_loop, name="flowctl-worker", daemon=True),
            threading.Thread(
                target=self.leases.keep_alive, args=(self.stopping, False), name="flowctl-leases", daemon=True
            ),  # the parent reaps
            *self._retention_thread(),
        ]
        for thread in self.threads:
            thread.start()

    def stop(self, timeout: float = 8.0) -> None:
        """Stop claiming and let the batch in hand commit."""
        self.stopping.set()
        self.wake.set()
        for thread in self.threads:
            thread.join(timeout=timeout / 2)
        self.recent_errors.detach()

    def _retention_thread(self) -> list[threading.Thread]:
        if self.retention is None:
            return []
        purge = threading.Thread(
            target=self.retention.run, args=(self.stopping, lambda: self.bundle), name="flowctl-retention", daemon=True
        )
        return [purge]

    def pick_up_soon(self) -> None:
        """Look for a newly deployed version at the next round (the parent reloaded)."""
        self._next_housekeeping = 0.0
        self.wake.set()

    def _engine_exited(self, pid: int) -> None:
        """Before a new engine process starts: the work the exited one (``pid``) had leased is
        free again. While the database is down that waits (the outage is logged once, with the
        other threads'); housekeeping ends those leases once it is back."""
        self._leftover_owners.add(owner_of(pid))
        self._end_leftover_leases()

    def _end_leftover_leases(self) -> None:
        for owner in sorted(self._leftover_owners):
            try:
                ended = self.store.expire_leases(self.clock.now(), owner=owner)
            except Exception as exc:
                if not unavailable(exc):
                    raise
                self.health.failed("engine restart", exc)
                return
            self._leftover_owners.discard(owner)
            if ended:
                log.info("taking over %d item(s) the engine process had in hand", ended)

    def _round_failed(self, where: str, exc: Exception, backoff: Backoff) -> None:
        """Wait before the next round: the store's outage is logged once (``health``), any other
        error with its traceback; either way the wait grows, so a failing round cannot spin."""
        delay = backoff.next()
        if unavailable(exc):
            self.health.failed(where, exc)
        else:
            log.exception("%s round failed; retrying in %.1fs", where, delay)
        self.stopping.wait(delay)

    def _work_loop(self) -> None:
        with self.store.kept_connection():  # it writes all its life: see Store.kept_connection
            self._work()

    def _work(self) -> None:
        backoff = Backoff()
        while not self.stopping.is_set():
            self.rounds += 1
            try:
                self._housekeeping()
                done = self.worker.run_once()
            except Exception as exc:  # noqa: BLE001 - logged by _round_failed
                self._round_failed("worker", exc, backoff)
                continue
            backoff.reset()
            self.health.ok()
            if done == 0 or not self.worker.more_now:  # no empty round after each batch
                self.wake.wait(self.poll_interval)
                self.wake.clear()

    def _register_metrics(self) -> None:
        register_queue_metrics(self.metrics, self.store, self.clock)
        self.metrics.counter_callback(
            "flowctl_changes_processed_total", "Changes processed by this daemon", lambda: self._worker_counts()[0]
        )
        self.metrics.counter_callback(
            "flowctl_changes_failed_total", "Changes refused or failed in processing", lambda: self._worker_counts()[1]
        )
        self.metrics.gauge_callback(
            "flowctl_build_info",
            "Always 1: the flowctl release and the configuration version this daemon runs",
            self._build_info,
            ("version", "config_version"),
        )
        self.metrics.gauge_callback(
            "flowctl_reload_ok",
            "1 when the last reload succeeded (or none was tried)",
            lambda: int(self.last_reload_ok),
        )
        self.metrics.counter_callback(
            "flowctl_timers_fired_total", "Timers fired by this daemon", lambda: self._worker_counts()[2]
        )
        self.metrics.gauge_callback(
            "flowctl_engine_versions",
            "Configuration versions whose engine this process "
            "holds: the current one, and those open runs or care days use",
            lambda: len(self.engines.by_version),
        )

    def _build_info(self) -> Mapping[tuple[str, ...], int]:
        return {(FLOWCTL_VERSION, self.version): 1}

    def _worker_counts(self) -> tuple[int, int, int]:
        """Processed, failed, timers fired."""
        return self.worker.processed, self.worker.failed, self.worker.timers_fired


@dataclass(eq=False)
class Service(EngineService):
    """The whole daemon in this process: it deploys the directory, takes writes (``ingest``, for the
    HTTP API and the SQL pollers), delivers the outbox, ticks care, and runs the worker loop in a
    thread here or, with ``engine_process``, in a child process it supervises."""

    ingest: Ingest = field(kw_only=True)
    deliverer: Deliverer = field(kw_only=True)
    care: CareScheduler = field(kw_only=True)
    pollers: list[SqlPoller] = field(kw_only=True)
    recycle_bin: RecycleBinPurge = field(kw_only=True)
    engine_process: EngineProcess | None = field(default=None, kw_only=True)

    def _housekeeping(self) -> None:
        super()._housekeeping()
        self.recycle_bin.tick(self.bundle.config.retention.deleted_records)

    def _process_problems(self) -> list[str]:
        if self.engine_process is not None and (why := self.engine_process.problem()):
            return [why]
        return []

    def _write_problems(self) -> list[str]:
        """Writes cannot commit: one has waited READY_COMMIT_SECONDS and more for the database (its
        writer lock held, the disk hung), or the last one failed (disk full, the store down) less
        than WRITE_FAILURE_SECONDS ago with none stored since."""
        out = []
        waited = self.ingest.committing_for()
        if waited > READY_COMMIT_SECONDS:
            out.append(
                f"a write has waited {waited:.0f} s to commit (the database's writer lock is held or the "
                "disk does not answer)"
            )
        failed = self.ingest.last_failure
        if failed and time.monotonic() - failed < WRITE_FAILURE_SECONDS:
            out.append(f"writes cannot commit: {self.ingest.last_failure_why}")
        return out

    def _deliver(self, stop: threading.Event, **kwargs: Any) -> None:
        with self.store.kept_connection():  # it writes all its life: see Store.kept_connection
            self.deliverer.run(stop, **kwargs)

    def _switched(self) -> None:
        if self.engine_process is not None:
            self.engine_process.stall_seconds = float(self.bundle.config.limits.engine_stall_seconds)
            self.engine_process.reload()  # it switches before its next claim

    def start(self) -> None:
        self.record_version()
        self.ingest.start()
        if self.engine_process is None:
            work = threading.Thread(target=self._work_loop, name="flowctl-worker", daemon=True)
        else:
            self.engine_process.stall_seconds = float(self.bundle.config.limits.engine_stall_seconds)
            self.engine_process.pending = self._changes_wait
            self.engine_process.start(self.version)  # after the deploy: it runs that version, from the store
            work = threading.Thread(target=self._housekeeping_loop, name="flowctl-housekeeping", daemon=True)
        self.threads = [
            work,
            threading.Thread(
                target=self._deliver,
                args=(self.stopping,),
                kwargs={"health": self.health},
                name="flowctl-delivery",
                daemon=True,
            ),
            threading.Thread(target=self.leases.keep_alive, args=(self.stopping,), name="flowctl-leases", daemon=True),
            *(self._retention_thread() if self.engine_process is None else []),  # else the child purges
            *(
                threading.Thread(
                    target=poller.run, args=(self.stopping,), daemon=True, name=f"flowctl-poll-{poller.name}"
                )
                for poller in self.pollers
            ),
        ]
        if self.engine_process is not None:
            self.threads.append(
                threading.Thread(
                    target=self.engine_process.supervise,
                    args=(self.stopping, lambda: self.version, self._engine_exited),
                    name="flowctl-engine-supervisor",
                    daemon=True,
                )
            )
        for thread in self.threads:
            thread.start()
        self.care.start()  # one catch-up tick now, then a wake-up at the start of every minute

    def stop(self, timeout: float = 8.0) -> None:
        """Stop claiming, let in-flight batches commit, stop the ingest writer, then the engine."""
        self.care.stop()  # a tick in progress finishes: its commit is one transaction
        self.stopping.set()
        self.wake.set()
        if self.engine_process is not None:
            self.engine_process.request_stop()  # it finishes its batch while the threads here do
        for thread in self.threads:
            thread.join(timeout=timeout / 2)
        self.ingest.stop()
        if self.engine_process is not None:
            self.engine_process.stop(timeout / 2)
        self.recent_errors.detach()

    def _engine_state(self) -> dict[str, Any]:
        if self.engine_process is None:
            return super()._engine_state()
        engine = self.engine_process
        problem = engine.problem()
        return {
            "mode": "process",
            "running": not problem,
            "version": self.version,
            "problem": problem,
            "restarts": engine.restarts,
        }

    def _changes_wait(self) -> bool:
        """Whether work waits for the engine (the watchdog's question; raises if the store cannot
        say): changes not processed yet, or writes of this process held back by SQLite's writer
        lock. An engine frozen holding that lock between batches (a lease renewal, a claim that
        found nothing) leaves no change pending, and every write waits for it."""
        counts = self.store.queue_counts()
        if counts.get("changes_pending") or counts.get("changes_claimed"):
            return True
        return self.ingest.committing_for() > 0 or bool(self.ingest.last_failure and self.ingest.last_failure_lock)

    def _housekeeping_loop(self) -> None:
        """With an engine process, this process has no worker loop to reload in: a thread does."""
        backoff = Backoff()
        while not self.stopping.wait(0.5):
            try:
                self._housekeeping()
            except Exception as exc:  # noqa: BLE001 - logged by _round_failed
                self._round_failed("reload", exc, backoff)
                continue
            backoff.reset()

    def _register_metrics(self) -> None:
        super()._register_metrics()
        if self.engine_process is not None:
            engine = self.engine_process
            engine.metrics = self.metrics  # the engine process's histograms are added to this process's
            self.metrics.add_process("flowctl_engine", engine.pid)
            self.metrics.counter_callback(
                "flowctl_engine_restarts_total",
                "Times the engine process was started again after it exited",
                lambda: engine.restarts,
            )
            self.metrics.gauge_callback(
                "flowctl_engine_ready",
                "1 while the engine process runs a version and can process changes",
                lambda: int(not engine.problem()),
            )
            self.metrics.counter_callback(
                "flowctl_engine_stalls_total",
                "Times the watchdog killed an engine process "
                "that made no progress while changes waited (limits.engine_stall_seconds)",
                lambda: engine.stalls,
            )
        self.metrics.gauge_callback(
            "flowctl_write_commit_seconds",
            "How long the write commit in progress has taken so far (0: none in progress)",
            self.ingest.committing_for,
        )

    def _worker_counts(self) -> tuple[int, int, int]:
        """Processed, failed, timers fired: by this process and the engine process if there is one."""
        here = super()._worker_counts()  # what this process ran: the worker loop's, or inline
        if self.engine_process is None:
            return here
        child = self.engine_process.totals()
        return child[0] + here[0], child[1] + here[1], child[2] + here[2]


class StartRefused(Exception):
    """The directory may not replace the deployed version (see ``flowctl plan``)."""


def to_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)
