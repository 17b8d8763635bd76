"""``flowctl run`` runs the engine in a second process: it dies with the daemon, comes back when
it exits on its own, reports its counts to /metrics, and ``--processes 1`` runs without it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from flowctl.gitops.versions import read_directory
from flowctl.runtime.daemon.engine_process import EngineProcess
from flowctl.testing import Daemon, children, gone, wait_for
from tests.conftest import HttpSink, pg_base
from tests.daemon.test_daemon import sms_hits

MakeDaemon = Callable[..., Daemon]


@pytest.fixture
def make_daemon(tmp_path: Path, config_dir: Path) -> Iterator[MakeDaemon]:
    """``make_daemon(*args)``: a daemon on its own SQLite file, started; killed after the test."""
    made: list[Daemon] = []

    def make(*args: str) -> Daemon:
        daemon = Daemon(config_dir, f"sqlite:///{tmp_path / f'd{len(made)}.db'}", args=args)
        made.append(daemon)
        return daemon.start()

    yield make
    for daemon in made:
        daemon.stop_quietly()


def test_the_engine_process_dies_with_the_daemon_and_a_new_daemon_takes_the_file(
    make_daemon: MakeDaemon, http_sink: HttpSink
) -> None:
    daemon = make_daemon()
    engine = daemon.engine_pid()
    assert daemon.put("deal", "1", {"title": "A", "phone": "0901234567"}).status_code == 202
    wait_for(lambda: any(h["text"] == "Cảm ơn A" for h in sms_hits(http_sink)), what="first SMS")
    daemon.kill()  # SIGKILL: no chance to stop its child
    wait_for(lambda: gone(engine), timeout=5, what="the engine process to die with the daemon")
    daemon.start()  # the SQLite lock is free again: no "another flowctl run" refusal
    assert daemon.put("deal", "2", {"title": "B", "phone": "0901234567"}).status_code == 202
    wait_for(lambda: any(h["text"] == "Cảm ơn B" for h in sms_hits(http_sink)), what="SMS after restart")


def test_an_engine_process_that_exits_is_started_again_and_the_counts_go_on(
    make_daemon: MakeDaemon, http_sink: HttpSink
) -> None:
    daemon = make_daemon()
    assert daemon.put("deal", "1", {"title": "A", "phone": "0901234567"}).status_code == 202
    wait_for(lambda: daemon.metric("flowctl_changes_processed_total") == 1, what="one change processed")
    first = daemon.engine_pid()
    os.kill(first, signal.SIGKILL)
    wait_for(
        lambda: "engine process (pid" in daemon.output() and "starting it again" in daemon.output(),
        what="the restart in the log",
    )
    wait_for(lambda: daemon.get("/readyz", timeout=5).status_code == 200, what="ready again")
    assert daemon.engine_pid() != first
    assert daemon.put("deal", "2", {"title": "B", "phone": "0901234567"}).status_code == 202
    wait_for(lambda: any(h["text"] == "Cảm ơn B" for h in sms_hits(http_sink)), what="SMS after the restart")
    wait_for(lambda: daemon.metric("flowctl_changes_processed_total") == 2, what="counts across engines")
    second = daemon.engine_pid()
    assert daemon.terminate() == 0  # the restarted engine stops as gently as the first would
    assert gone(second)
    assert "did not stop within" not in daemon.output()


def test_readyz_is_503_while_the_engine_process_is_down(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon()
    os.kill(daemon.engine_pid(), signal.SIGKILL)
    wait_for(lambda: daemon.get("/readyz", timeout=5).status_code == 503, timeout=5, what="not ready without an engine")


def test_one_process_runs_the_engine_in_a_thread(make_daemon: MakeDaemon, http_sink: HttpSink) -> None:
    daemon = make_daemon("--processes", "1")
    assert daemon.proc is not None and daemon.alive() and children(daemon.proc.pid) == []
    assert daemon.put("deal", "1", {"title": "A", "phone": "0901234567"}).status_code == 202
    wait_for(lambda: any(h["text"] == "Cảm ơn A" for h in sms_hits(http_sink)), what="SMS")
    assert daemon.metric("flowctl_changes_processed_total") == 1
    assert daemon.terminate() == 0


def test_sigterm_stops_both_processes(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon()
    engine = daemon.engine_pid()
    started = time.monotonic()
    assert daemon.terminate() == 0
    assert time.monotonic() - started < 10
    assert gone(engine)


@pytest.mark.postgres
def test_an_engine_process_started_while_the_store_is_unreachable_waits_for_it(config_dir: Path) -> None:
    base = sa.make_url(pg_base())
    name = f"flowctl_wait_{uuid.uuid4().hex[:10]}"  # no such database yet: every connection is refused
    url = base.set(database=name).render_as_string(hide_password=False)
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    version = read_directory(config_dir).id
    engine = EngineProcess(url)
    engine.start(version)
    try:
        wait_for(lambda: "store" in engine.waiting or not engine.alive(), what="the engine to try the store")
        assert engine.alive(), "the engine process exited instead of waiting for the store"
        assert engine.running_version == "" and "unavailable" in engine.problem()
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        applied = subprocess.run(
            [sys.executable, "-m", "flowctl", "apply", str(config_dir), "--db", url],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert applied.returncode == 0, applied.stdout + applied.stderr
        wait_for(lambda: engine.running_version == version, timeout=30, what="the engine to run the deployed version")
        assert engine.alive() and engine.problem() == ""
    finally:
        engine.stop(10)
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    assert engine.proc is not None and engine.proc.returncode == 0


def test_the_child_reporting_more_changes_run_or_timers_fired_calls_on_ran() -> None:
    """The daemon nudges its deliverer there: the child's runs queued messages (see ``_report``)."""
    engine = EngineProcess("sqlite:///unused.db")
    ran: list[tuple[int, int, int]] = []
    engine.on_ran = lambda: ran.append(engine.counts)
    read, write = os.pipe()
    os.write(write, b"v abc\n1 0 0\nh\n1 0 0\n1 1 0\n2 1 0\n2 1 3\n")
    os.close(write)
    engine._read_status(read)
    assert ran == [(1, 0, 0), (2, 1, 0), (2, 1, 3)]  # not for a heartbeat, a repeat or a failure
    assert engine.running_version == "abc"
