"""The composition root: the one place that builds the daemon's parts and wires them together.

From one :class:`~flowctl.runtime.settings.Settings` value, :func:`run` opens the store (with the
SQLite lock), builds the engines, ingest, leases, worker, channels, delivery, care, the SQL
pollers, the engine process and the HTTP app, starts them and serves until a signal. The parts
receive what they use and know nothing of each other's construction; ``flowctl run`` only parses
its options into ``Settings`` and calls :func:`run`. The engine process builds its own part, the
worker loop, with :func:`engine_service`; tests build a whole in-process daemon with
:func:`daemon_service`.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from flowctl.channels import build_senders
from flowctl.channels.base import resolve_env
from flowctl.channels.env import describe, unset_env
from flowctl.engine.core import Engine
from flowctl.gitops.versions import content_hash
from flowctl.ports import Clock, Store
from flowctl.runtime.api.access import listen_allowed
from flowctl.runtime.api.metrics import Metrics
from flowctl.runtime.care.scheduler import CareScheduler
from flowctl.runtime.daemon import heap
from flowctl.runtime.daemon.banner import summary
from flowctl.runtime.daemon.clock import SystemClock
from flowctl.runtime.daemon.engine_process import EngineProcess
from flowctl.runtime.daemon.fetching import fetch_senders
from flowctl.runtime.daemon.ingest import Ingest, StoreHealth
from flowctl.runtime.daemon.inline import InlineWorker
from flowctl.runtime.daemon.leases import AnotherDaemon, LeaseKeeper, lock_sqlite
from flowctl.runtime.daemon.memory_trace import start_from_env
from flowctl.runtime.daemon.recycling import RecycleBinPurge
from flowctl.runtime.daemon.retention import RetentionPurge
from flowctl.runtime.daemon.service import EngineService, Service, StartRefused, owner_of
from flowctl.runtime.daemon.worker import Engines, Worker
from flowctl.runtime.delivery.deliverer import Deliverer
from flowctl.runtime.settings import DEFAULT_LEASE_SECONDS, DEFAULT_RETRY_BASE, Settings, env_seconds
from flowctl.sources.polling import SqlPoller
from flowctl.sources.webhooks import resolve_secret
from flowctl.spec import model as m
from flowctl.spec.config import Loaded
from flowctl.store import open_store

config_log = logging.getLogger("flowctl.config")


class Refused(Exception):
    """The daemon cannot start as asked; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class _Core:
    """What both sides of the daemon run on: the engines of the version, and the worker loop."""

    version: str
    engines: Engines
    metrics: Metrics
    health: StoreHealth
    leases: LeaseKeeper
    worker: Worker
    lease_seconds: float


def _core(
    loaded: Loaded, store: Store, clock: Clock, env: Mapping[str, str], owner: str, version: str, health: StoreHealth
) -> _Core:
    assert loaded.bundle is not None
    version = version or content_hash(loaded)
    engines = Engines(Engine(loaded.bundle, version))
    lease_seconds = env_seconds(env, "FLOWCTL_LEASE_SECONDS", DEFAULT_LEASE_SECONDS)
    leases = LeaseKeeper(store, clock, owner=owner, lease_seconds=lease_seconds, health=health)
    metrics = Metrics()
    worker = Worker(leases, engines, clock, owner=owner, lease_seconds=lease_seconds, metrics=metrics)
    return _Core(version, engines, metrics, health, leases, worker, lease_seconds)


def engine_service(loaded: Loaded, store: Store, version: str) -> EngineService:
    """The engine process's part: the worker loop, its leases and the retention purge, running
    stored ``version``."""
    # the parent sees the same database and reports its outages: this process logs only errors
    quiet = logging.getLogger("flowctl.engine_process.store")
    quiet.setLevel(logging.ERROR)
    clock, env = SystemClock(), dict(os.environ)
    core = _core(loaded, store, clock, env, owner_of(os.getpid()), version, StoreHealth(quiet))
    return EngineService(
        root=loaded.root,
        loaded=loaded,
        store=store,
        clock=clock,
        env=env,
        owner=owner_of(os.getpid()),
        version=core.version,
        engines=core.engines,
        metrics=core.metrics,
        health=core.health,
        leases=core.leases,
        worker=core.worker,
        senders=build_senders(_bundle(loaded), env, store=store, clock=clock),
        lease_seconds=core.lease_seconds,
        stopping=threading.Event(),
        wake=threading.Event(),
        retention=RetentionPurge(store, clock),
    )


def daemon_service(
    root: Path,
    loaded: Loaded,
    store: Store,
    *,
    clock: Clock | None = None,
    env: Mapping[str, str] | None = None,
    owner: str = "",
    log_stream: TextIO | None = None,
    poll_interval: float = 0.2,
    watch: bool = False,
    engine_process: EngineProcess | None = None,
    version: str = "",
) -> Service:
    """The whole daemon of this process over ``store``: not started (``Service.start`` deploys
    ``root`` and starts the threads). ``env`` defaults to the process's environment."""
    clock = clock or SystemClock()
    env = dict(os.environ) if env is None else env
    owner = owner or owner_of(os.getpid())
    bundle = _bundle(loaded)
    core = _core(loaded, store, clock, env, owner, version, StoreHealth())
    wake = threading.Event()

    def on_commit(count: int) -> None:
        wake.set()  # new changes: the worker need not wait for its poll interval
        if engine_process is not None:
            engine_process.wake()

    inline = None
    if env.get("FLOWCTL_INLINE", "1") != "0":  # 0: every change through the queue (see daemon/inline.py)
        # larger commits inline too while the engine process runs no version (starting, restarting)
        alone = (lambda: not engine_process.running()) if engine_process is not None else (lambda: False)
        inline = InlineWorker(core.worker, alone=alone)
    ingest = Ingest(store, on_commit=on_commit, health=core.health, inline=inline, hold=store.kept_connection)
    senders = build_senders(bundle, env, log_stream=log_stream, store=store, clock=clock)
    senders.update(fetch_senders(bundle, env, ingest, clock))  # webhook Sources' pending fetches
    care = CareScheduler(store, core.engines, clock, owner=owner, health=core.health)
    deliverer = Deliverer(
        core.leases,
        senders,
        clock,
        owner=owner,
        rng=random.Random(),
        base_delay=env_seconds(env, "FLOWCTL_RETRY_BASE", DEFAULT_RETRY_BASE),
        lease_seconds=core.lease_seconds,
        policies={name: ch.policy for name, ch in bundle.channels.items()},
        timezone=bundle.config.timezone,
        metrics=core.metrics,
        in_flight=bundle.config.limits.sends_in_flight,
    )
    # a commit that queued messages starts a delivery round (the deliverer spaces them out): the
    # worker's (inline, or its loop when it runs here) and, through its counts, the engine process's
    core.worker.on_committed = deliverer.nudge
    if engine_process is not None:
        engine_process.on_ran = deliverer.nudge
    return Service(
        root=root,
        loaded=loaded,
        store=store,
        clock=clock,
        env=env,
        owner=owner,
        version=core.version,
        engines=core.engines,
        metrics=core.metrics,
        health=core.health,
        leases=core.leases,
        worker=core.worker,
        senders=senders,
        lease_seconds=core.lease_seconds,
        stopping=threading.Event(),
        wake=wake,
        poll_interval=poll_interval,
        watch=watch,
        log_stream=log_stream,
        ingest=ingest,
        deliverer=deliverer,
        care=care,
        pollers=pollers(loaded, store, ingest, clock, env, owner, core.metrics),
        recycle_bin=RecycleBinPurge(store, clock),
        retention=RetentionPurge(store, clock),
        engine_process=engine_process,
    )


def pollers(
    loaded: Loaded, store: Store, ingest: Ingest, clock: Clock, env: Mapping[str, str], owner: str, metrics: Metrics
) -> list[SqlPoller]:
    """A poller per ``type: sql`` source whose ``${ENV}`` is set (the others are named at start and
    in /readyz); across replicas, one polls each source at a time."""
    bundle = _bundle(loaded)
    unset = {u.owner for u in unset_env(bundle, env)}
    found = []
    for source in bundle.sources.values():
        if source.type == "sql" and f"source {source.name}" not in unset:
            object_type = bundle.objects.get(source.object)
            found.append(
                SqlPoller(
                    source,
                    store,
                    ingest,
                    clock,
                    env=env,
                    owner=owner,
                    metrics=metrics,
                    fields=object_type.fields if object_type else (),
                )
            )
    return found


def _bundle(loaded: Loaded) -> m.Bundle:
    assert loaded.bundle is not None
    return loaded.bundle


def run(settings: Settings, say: Callable[[str, Mapping[str, object]], None]) -> int:
    """Run the daemon until SIGTERM or SIGINT: 0 after a clean stop, 1 if the server never started.
    Raises :class:`Refused` when it cannot start; ``say(text, fields)`` prints the operator's lines
    (stderr), ``fields`` the ids they name, for a JSON log."""
    loaded, env = settings.loaded, settings.env
    config = _bundle(loaded).config
    unset = unset_env(_bundle(loaded), env)
    if unset:  # all of them at once, before anything depends on them
        config_log.warning(
            "not set in the environment: %s. Until flowctl run is restarted with %s set, the messages of those "
            "channels are held (not sent, not dead-lettered), those sources do not run and those access tokens "
            "are refused",
            describe(unset),
            "it" if len(unset) == 1 else "them",
        )
    token = ""
    if config.api_token:
        try:
            token = resolve_env(config.api_token, env)
        except Exception as exc:
            raise Refused(f"api_token: {exc}") from exc
    # an access entry whose variable is unset is named above and refused; the others still open the API
    refusal = listen_allowed(settings.listen, token, *(resolve_secret(a.token, env) for a in config.access))
    if refusal:
        raise Refused(refusal)
    try:
        lock = lock_sqlite(settings.database)  # held (open) until the process ends
    except AnotherDaemon as exc:
        raise Refused(str(exc)) from exc
    try:
        store = open_store(settings.database)
        if lock is not None:  # the lock proves every earlier daemon on this file is gone: take its work now
            ended = store.expire_leases(SystemClock().now())
            if ended:
                say(f"flowctl: resuming {ended} item(s) a stopped daemon had in hand", {})
    except Exception as exc:
        raise Refused(f"cannot open the store {settings.database}: {exc}") from exc
    engine_process = None
    if settings.processes == 2:
        # the child keeps the SQLite lock open: no other daemon starts on the file while it lives
        engine_process = EngineProcess(
            settings.database,
            log_format=settings.log_format,
            log_level=settings.log_level,
            keep_fds=(lock.fileno(),) if lock is not None else (),
        )
    service = daemon_service(settings.root, loaded, store, watch=settings.watch, engine_process=engine_process)
    try:
        service.start()
    except StartRefused as exc:
        store.close()
        raise Refused(
            f"{settings.directory} may not replace the deployed configuration: {exc} "
            f"(see 'flowctl plan {settings.directory}')"
        ) from exc
    say(summary(service, settings.listen, settings.database, ui=settings.ui), {"config_version": service.version})
    start_from_env(os.environ, threading.Event())  # FLOWCTL_TRACEMALLOC: this process too, by its pid
    from flowctl.runtime.api.app import create_app  # lazy: start-up time (the engine process serves no HTTP)
    from flowctl.runtime.api.server import make_server  # lazy: start-up time (the engine process serves no HTTP)

    server = make_server(create_app(service, ui=settings.ui), settings.host, settings.port)
    heap.settle()  # start-up is done: the collector leaves what it built alone

    def request_exit(signum: int, frame: object) -> None:
        server.should_exit = True  # uvicorn stops accepting, finishes requests in flight

    signal.signal(signal.SIGTERM, request_exit)
    signal.signal(signal.SIGINT, request_exit)
    signal.signal(signal.SIGHUP, lambda signum, frame: service.reload_requested.set())
    try:
        server.run()
    finally:
        service.stop()
        store.close()
        say("flowctl: stopped", {"config_version": service.version})
    return 0 if server.started else 1
