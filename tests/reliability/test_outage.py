"""The outage test: PostgreSQL stopped and started again while clients keep writing.

A real daemon (``flowctl run``) stores on a PostgreSQL cluster of its own and sends email to a
real SMTP server (aiosmtpd) and SMS to a real HTTP server. Client threads keep putting deals, each
with an Idempotency-Key; the cluster is stopped (``pg_ctlcluster … stop -m fast``) for several
seconds and started again. While it is down a write answers 503 with a JSON error and Retry-After
(never 500, never a hang, never 202), /readyz answers 503, and the daemon stays up with one line
in its log instead of a traceback a round. Clients retry their 503s with the same key. Once the
database is back every accepted change is processed and every message arrives exactly once.

The shared ``main`` cluster must never be stopped (other tests and people use it), so the test
makes a private cluster with ``pg_createcluster`` (root only; skipped elsewhere), named after this
pytest process so that two suites on one machine do not stop each other's database, and drops it
afterwards. Leftovers of a killed run (their process is gone) are dropped at the next run.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import sqlalchemy as sa

from flowctl.engine.state import Effect, Step
from flowctl.ports import NewChange, Processed, Store
from flowctl.runtime.compose import daemon_service
from flowctl.runtime.daemon.clock import SystemClock
from flowctl.runtime.daemon.ingest import Backoff, StoreHealth, StoreUnavailable, unavailable
from flowctl.runtime.daemon.leases import LeaseKeeper
from flowctl.runtime.daemon.service import owner_of
from flowctl.spec.config import load_bundle
from flowctl.store import open_store
from flowctl.testing import Daemon, FrozenClock, free_port
from flowctl.testing import wait_for as poll
from tests.conftest import HttpSink, SmtpServer, pg_base
from tests.daemon.configs import THANKS_MAIL, real_channels, sales_pipeline

PREFIX = "flowctl_outage_"
CLIENTS = 4
PACE = 0.05  # seconds between one client's writes
OUTAGE = 6.0  # seconds the database stays down
CLIENT_TIMEOUT = 10.0
LOG_LINES_MAX = 12  # the daemon's log from the stop until everything is delivered

REST = THANKS_MAIL + sales_pipeline("""\
        - {name: mail, action: send_email, template: thanks-mail, to: "{{ record.email }}"}
        - {name: sms, action: send_sms, text: "Cam on {{ record.title }}", to: "{{ record.phone }}"}
        - name: later
          action: send_sms
          delay: 2s
          text: "Nhac {{ record.title }}"
          to: "{{ record.phone }}"
""")


# --- the private cluster ----------------------------------------------------------------------------


@dataclass
class Cluster:
    version: str
    name: str
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def ctl(self, action: str, *options: str) -> None:
        _run("pg_ctlcluster", self.version, self.name, action, *options)

    def running(self) -> bool:
        return any(c["name"] == self.name and c["running"] for c in _clusters(self.version))

    def wait_ready(self, timeout: float = 30.0) -> None:
        engine = sa.create_engine(self.url, poolclass=sa.pool.NullPool)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    with engine.connect() as conn:
                        conn.execute(sa.text("select 1"))
                    return
                except sa.exc.OperationalError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        finally:
            engine.dispose()


def _run(*command: str) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return done.stdout


def _clusters(version: str) -> list[dict[str, Any]]:
    return [
        {"name": c["cluster"], "running": bool(c.get("running"))}
        for c in json.loads(_run("pg_lsclusters", "-j"))
        if str(c.get("version")) == version
    ]


def _version() -> str:
    """The newest PostgreSQL of this machine (``/etc/postgresql/<version>``), as pg_createcluster knows it."""
    root = Path("/etc/postgresql")
    versions = (
        sorted((p.name for p in root.iterdir() if p.name.replace(".", "").isdigit()), key=float)
        if root.is_dir()
        else []
    )
    if not versions:
        pytest.skip("no PostgreSQL server installed here (/etc/postgresql is empty)")
    return versions[-1]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A private PostgreSQL cluster on a free loopback port, trust auth, dropped afterwards."""
    pg_base()  # only where the PostgreSQL tests run
    if shutil.which("pg_createcluster") is None or shutil.which("pg_ctlcluster") is None:
        pytest.skip("needs pg_createcluster/pg_ctlcluster (Debian's postgresql-common) to make a cluster to stop")
    if os.geteuid() != 0:
        pytest.skip("pg_createcluster needs root; the outage test never stops a shared cluster")
    version = _version()
    _drop_leftovers(version)
    name = f"{PREFIX}{os.getpid()}"
    if all(c["name"] != name for c in _clusters(version)):
        _run(
            "pg_createcluster",
            version,
            name,
            "--port",
            str(free_port()),
            "--start-conf",
            "manual",
            "--",
            "--auth=trust",
        )
    config = Path("/etc/postgresql") / version / name
    (config / "conf.d").mkdir(exist_ok=True)
    (config / "conf.d" / "flowctl-outage.conf").write_text(
        "listen_addresses = '127.0.0.1'\nshared_buffers = 16MB\nmax_connections = 60\n"
    )
    (config / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
    port = int(
        next(
            line.split("=")[1].split("#")[0]
            for line in (config / "postgresql.conf").read_text().splitlines()
            if line.strip().startswith("port")
        )
    )
    made = Cluster(version, name, port)
    try:
        if not made.running():
            made.ctl("start")
        made.wait_ready()
        yield made
    finally:
        _drop(version, name)


def _drop(version: str, name: str) -> None:
    """Drop the cluster; pg_dropcluster leaves the config directory behind (its conf.d)."""
    if any(c["name"] == name for c in _clusters(version)):
        _run("pg_dropcluster", version, name, "--stop")
    shutil.rmtree(Path("/etc/postgresql") / version / name, ignore_errors=True)


def _drop_leftovers(version: str) -> None:
    """The clusters of runs killed before their teardown (their pytest process is gone)."""
    names = {c["name"] for c in _clusters(version)} | {p.name for p in (Path("/etc/postgresql") / version).iterdir()}
    for leftover in sorted(names):
        suffix = leftover.removeprefix(PREFIX)
        if leftover.startswith(PREFIX) and suffix.isdigit() and not _alive(int(suffix)):
            _drop(version, leftover)


# --- the load ---------------------------------------------------------------------------------------


@dataclass
class Answer:
    deal: str
    status: int
    sent: float  # monotonic
    took: float
    body: dict[str, Any]
    retry_after: str | None


@dataclass
class Feed:
    """What the clients were answered. ``accepted``: deal → the 202's body (seq, duplicate)."""

    url: str
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    answers: list[Answer] = field(default_factory=list)
    accepted: dict[str, dict[str, Any]] = field(default_factory=dict)
    timeouts: list[tuple[str, float]] = field(default_factory=list)
    cut_off: int = 0  # transport errors other than timeouts (retried)

    def client(self, index: int) -> None:
        """Put new deals until told to stop; a 503 is retried with the same key until it is 202."""
        with httpx.Client(base_url=self.url, timeout=CLIENT_TIMEOUT) as http:
            n = 0
            while not self.stop.is_set():
                number = index * 100_000 + n
                n += 1
                deal = str(number)
                body = {
                    "fields": {"title": f"Don {number}", "email": f"d{number}@example.com", "phone": f"09{number:08d}"},
                    "stage": "new",
                }
                give_up = time.monotonic() + 90
                while time.monotonic() < give_up:
                    sent = time.monotonic()
                    try:
                        response = http.put(
                            f"/v1/records/deal/{deal}", json=body, headers={"Idempotency-Key": f"outage-{number}"}
                        )
                    except httpx.TimeoutException:
                        with self.lock:
                            self.timeouts.append((deal, time.monotonic() - sent))
                        continue
                    except httpx.TransportError:
                        with self.lock:
                            self.cut_off += 1
                        time.sleep(0.2)
                        continue
                    try:
                        parsed = response.json()
                    except ValueError:
                        parsed = {"unparsed": response.text[:200]}
                    answer = Answer(
                        deal,
                        response.status_code,
                        sent,
                        time.monotonic() - sent,
                        parsed,
                        response.headers.get("retry-after"),
                    )
                    with self.lock:
                        self.answers.append(answer)
                        if response.status_code == 202:
                            self.accepted[deal] = parsed
                    if response.status_code != 503:
                        break
                    time.sleep(min(float(answer.retry_after or 1), 2.0))  # as Retry-After asks
                time.sleep(PACE)

    def count(self, status: int) -> int:
        with self.lock:
            return sum(1 for a in self.answers if a.status == status)


@dataclass
class Readiness:
    """/readyz every quarter second: (monotonic time, status; 0 for no answer)."""

    url: str
    seen: list[tuple[float, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def watch(self) -> None:
        with httpx.Client(timeout=CLIENT_TIMEOUT) as http:
            while not self.stop.wait(0.25):
                try:
                    status = http.get(f"{self.url}/readyz").status_code
                except httpx.HTTPError:
                    status = 0
                self.seen.append((time.monotonic(), status))

    def last(self) -> int:
        return self.seen[-1][1] if self.seen else 0


#: ``flowctl.testing.wait_for`` polling every 0.1 s: some conditions query the recovering database.
wait_for = functools.partial(poll, every=0.1)


def scalar(engine: sa.Engine, sql: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql)).scalar()


# --- the test ---------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.postgres
def test_a_database_outage_under_load_loses_nothing(
    cluster: Cluster, tmp_path: Path, smtp_server: SmtpServer, http_sink: HttpSink, figures: Callable[..., None]
) -> None:
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "flowctl.yaml").write_text(real_channels(smtp_server.port, http_sink.url) + REST)
    # a short lease: the heartbeat (every third of it) runs during the outage too
    daemon = Daemon(folder, cluster.url, env={"FLOWCTL_LEASE_SECONDS": "6"})
    feed = Feed(daemon.url)
    ready = Readiness(daemon.url)
    threads = [threading.Thread(target=feed.client, args=(i,), daemon=True) for i in range(CLIENTS)]
    watcher = threading.Thread(target=ready.watch, daemon=True)
    engine = sa.create_engine(cluster.url)
    try:
        daemon.start(timeout=120)  # a loaded CI machine imports slowly
        for thread in [*threads, watcher]:
            thread.start()
        wait_for(lambda: len(feed.accepted) >= 40, 30, "the first accepted writes")

        mark = len(daemon.output())
        stopped_at = time.monotonic()
        try:
            cluster.ctl("stop", "-m", "fast")
            down_at = time.monotonic()
            wait_for(lambda: ready.last() == 503, 10, "/readyz to say not ready")
            wait_for(lambda: feed.count(503) >= CLIENTS, 10, "writes answered 503")
            time.sleep(max(0.0, down_at + OUTAGE - time.monotonic()))
            assert daemon.alive(), daemon.output()[-3000:]
        finally:
            started_at = time.monotonic()  # the server answers before pg_ctlcluster returns
            if not cluster.running():
                cluster.ctl("start")
        wait_for(lambda: ready.last() == 200, 60, "/readyz to say ready again", lambda: ready.seen[-5:])
        back_at = time.monotonic()
        time.sleep(2.0)  # the clients keep writing on the recovered daemon
        feed.stop.set()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(thread.is_alive() for thread in threads), "a client never got its write accepted"
        ready.stop.set()
        watcher.join()

        accepted = set(feed.accepted)
        expected = len(accepted)

        def settled() -> bool:
            return (
                scalar(engine, "select count(*) from changes where status <> 'done'") == 0
                and scalar(engine, "select count(*) from timers") == 0
                and scalar(engine, "select count(*) from outbox where status <> 'sent'") == 0
                and scalar(engine, "select count(*) from outbox") == 3 * expected
                and len(smtp_server.handler.messages) >= expected
                and len(http_sink.hits) >= 2 * expected
            )

        wait_for(
            settled,
            120,
            "every change processed and every message delivered",
            lambda: (len(smtp_server.handler.messages), len(http_sink.hits), expected),
        )
        time.sleep(1.0)  # nothing more arrives late
        log = daemon.output()[mark:]

        # --- the answers while it was down
        answers = list(feed.answers)
        refused = [a for a in answers if a.status == 503]
        assert refused, "no write was refused: the outage did not happen under load"
        assert {a.status for a in answers} <= {202, 503}, Counter(a.status for a in answers)
        assert not feed.timeouts, f"writes hung past the client's {CLIENT_TIMEOUT:g} s: {feed.timeouts[:5]}"
        for answer in refused:
            assert answer.body.get("error", {}).get("code") == "unavailable", answer
            assert "retry" in answer.body["error"]["message"], answer
            assert answer.retry_after and answer.retry_after.isdigit(), answer
            during = stopped_at <= answer.sent + answer.took and answer.sent <= back_at
            assert during, ("a 503 outside the outage", answer, stopped_at, back_at)
        assert not [a for a in answers if a.status == 202 and down_at < a.sent and a.sent + a.took < started_at], (
            "a write was accepted while the database was stopped"
        )
        down = [status for at, status in ready.seen if down_at < at < started_at]
        assert down and set(down) == {503}, down
        assert ready.seen[-1][1] == 200

        # --- the daemon: alive, one line per outage, no traceback flood
        assert daemon.alive()
        assert "Traceback" not in log, log[-5000:]
        # httpx logs every request the SMS channel makes at INFO: not about the outage, left out
        lines = [line for line in log.splitlines() if line.strip() and " httpx: " not in line]
        assert len(lines) <= LOG_LINES_MAX, "\n".join(lines[:60])
        assert sum("store unavailable" in line for line in lines) == 1, "\n".join(lines)
        assert sum("store available again" in line for line in lines) == 1, "\n".join(lines)

        # --- nothing lost: the accepted set against the store and the sinks
        with engine.connect() as conn:
            stored = dict(conn.execute(sa.text("select idempotency_key, seq from changes")).all())
            records = {r for (r,) in conn.execute(sa.text("select id from records where object = 'deal'"))}
            failed = conn.execute(sa.text("select count(*) from changes where status = 'failed'")).scalar()
        # once each, as answered (API keys are stored as api/<key>)
        assert stored == {f"api/outage-{deal}": feed.accepted[deal]["seq"] for deal in accepted}
        assert records == accepted and failed == 0
        mails = Counter(str(m.message["Message-ID"]) for m in smtp_server.handler.messages)
        mailed = Counter(str(m.message["To"]) for m in smtp_server.handler.messages)
        assert len(mails) == expected and max(mails.values()) == 1, mails.most_common(3)
        assert set(mailed) == {f"d{deal}@example.com" for deal in accepted} and max(mailed.values()) == 1
        keys = Counter(
            next(v for k, v in hit.headers.items() if k.lower() == "idempotency-key") for hit in http_sink.hits
        )
        assert len(keys) == 2 * expected and max(keys.values()) == 1, keys.most_common(3)
        texts = Counter((hit.json()["to"], hit.json()["text"].split()[0]) for hit in http_sink.hits)
        assert set(texts) == {(f"09{int(deal):08d}", word) for deal in accepted for word in ("Cam", "Nhac")}
        retried = {a.deal for a in refused}
        assert retried <= accepted  # every client that was refused got its change in, once (above)
        lost = len(accepted - records) + (3 * expected - len(mails) - len(keys))

        figures(
            changes_accepted=expected,
            answered_503=len(refused),
            retried_changes=len(retried),
            stored_despite_503=sum(1 for deal in retried if feed.accepted[deal].get("duplicate")),
            outage_seconds=round(started_at - stopped_at, 1),
            ready_again_seconds=round(back_at - stopped_at, 1),
            slowest_503_seconds=round(max(a.took for a in refused), 2),
            emails=len(mails),
            sms=len(keys),
            copies=sum(mails.values()) + sum(keys.values()) - len(mails) - len(keys),
            lost=lost,
            log_lines=len(lines),
            cut_off=feed.cut_off,
        )
    finally:
        feed.stop.set()
        ready.stop.set()
        engine.dispose()
        daemon.stop_quietly()


# --- the pieces, without a database to stop ------------------------------------------------------------

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def _down() -> sa.exc.OperationalError:
    return sa.exc.OperationalError("INSERT …", {}, ConnectionRefusedError("connection refused"))


class Flaky:
    """The store, except that the methods named in ``failing`` raise "connection refused" once."""

    def __init__(self, store: Store, *failing: str) -> None:
        self.store = store
        self.failing = set(failing)

    def __getattr__(self, name: str) -> Any:
        if name in self.failing:
            self.failing.discard(name)

            def fail(*args: Any, **kwargs: Any) -> Any:
                raise _down()

            return fail
        return getattr(self.store, name)


@pytest.fixture
def memory() -> Iterator[Store]:
    store = open_store("memory://")
    yield store
    store.close()


def test_a_batch_the_outage_cut_off_is_claimed_again_at_once_not_a_lease_later(memory: Store) -> None:
    memory.append_changes(
        [
            NewChange(
                object="deal",
                record_id=str(n),
                op="put",
                fields={"title": "x"},
                idempotency_key=f"k{n}",
                received_at=T0,
            )
            for n in range(2)
        ]
    )
    keeper = LeaseKeeper(cast(Store, Flaky(memory, "commit_batch")), SystemClock(), owner="w", lease_seconds=60)
    assert len(keeper.claim_changes(10, "w", T0, 60)) == 2
    assert keeper.claim_changes(10, "w", T0, 60) == []  # left without a failure: it waits for its lease
    claimed = keeper.claim_changes(10, "w", T0 + timedelta(seconds=61), 60)
    with pytest.raises(sa.exc.OperationalError) as cut:  # the database went away before the commit
        keeper.commit_batch([Processed(change=c) for c in claimed], T0)
    keeper.health.failed("worker", cut.value)  # as the worker's loop reports it
    again = keeper.claim_changes(10, "w", T0 + timedelta(seconds=62), 60)  # it is back, the lease still runs
    assert [(c.seq, c.attempts) for c in again] == [(c.seq, 3) for c in claimed]


def test_a_message_sent_whose_record_failed_is_recorded_before_the_next_claim_not_sent_again(memory: Store) -> None:
    effect = Effect(
        key="e1",
        action="send_sms",
        run_id="r",
        object="deal",
        record_id="1",
        channel="sms",
        params={"to": "0901234567", "text": "x"},
    )
    memory.commit_batch([Processed(step=Step(effects=[effect]))], T0)
    keeper = LeaseKeeper(cast(Store, Flaky(memory, "mark_sent_many")), SystemClock(), owner="d", lease_seconds=60)
    [row] = keeper.claim_outbox(T0, 10, "d", 60)
    with pytest.raises(sa.exc.OperationalError):  # the channel took it; the database did not record it
        keeper.mark_sent_many([row.id], T0)
    assert keeper.held()[2] == [row.id]  # still ours: the heartbeat keeps it from other replicas
    assert keeper.claim_outbox(T0 + timedelta(seconds=1), 10, "d", 60) == []  # not handed out to send again
    [stored] = memory.list_outbox()
    assert stored.status == "sent" and keeper.held()[2] == []


def test_an_outage_is_one_warning_and_its_end_one_info(caplog: pytest.LogCaptureFixture) -> None:
    health = StoreHealth(settle=0.2)
    with caplog.at_level(logging.DEBUG, logger="flowctl.store"):
        threads = [threading.Thread(target=lambda: [health.failed("t", _down()) for _ in range(50)]) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        health.ok()  # one answer right after a failure: the database may be flapping on its way down
        assert health.down
        time.sleep(0.25)
        health.ok()
        health.ok()
    loud = [(r.levelname, r.getMessage()) for r in caplog.records if r.levelno >= logging.INFO]
    assert [level for level, _ in loud] == ["WARNING", "INFO"], loud
    assert "connection refused" in loud[0][1] and "SQL" not in loud[0][1]  # the driver's line, not the statement
    assert "200 failed attempts" in loud[1][1] and health.outages == 1 and not health.down


def test_backoff_doubles_to_its_cap_and_starts_over_after_a_success() -> None:
    backoff = Backoff(first=0.5, cap=5.0)
    waits = [backoff.next() for _ in range(8)]
    for wait, ceiling in zip(waits, [0.5, 1, 2, 4, 5, 5, 5, 5], strict=True):
        assert 0.75 * ceiling <= wait <= ceiling
    backoff.reset()
    assert backoff.next() <= 0.5


def test_what_counts_as_the_store_being_unavailable() -> None:
    assert unavailable(_down()) and unavailable(StoreUnavailable("x"))
    assert unavailable(sa.exc.InterfaceError("SELECT 1", {}, Exception("connection closed")))
    assert not unavailable(sa.exc.IntegrityError("INSERT …", {}, Exception("duplicate key")))  # a bug, not an outage
    assert not unavailable(ValueError("x"))


def test_a_statement_sqlite_refuses_is_a_bug_and_a_locked_or_unreadable_file_an_outage(tmp_path: Path) -> None:
    def raised(conn: sqlite3.Connection, sql: str) -> sa.exc.OperationalError:
        with pytest.raises(sqlite3.OperationalError) as caught:
            conn.execute(sql)
        return sa.exc.OperationalError(sql, {}, caught.value)

    path = tmp_path / "flowctl.db"
    first = sqlite3.connect(path, timeout=0, isolation_level=None)
    second = sqlite3.connect(path, timeout=0, isolation_level=None)
    first.execute("CREATE TABLE t (a)")
    for sql in (
        "SELEC 1",
        "SELECT b FROM t",
        "INSERT INTO t (b) VALUES (1)",
        "SELECT a FROM nowhere",
        "SELECT abs(1, 2)",
    ):
        assert not unavailable(raised(first, sql)), sql  # waiting does not cure these: logged as a bug
    first.execute("BEGIN IMMEDIATE")
    assert unavailable(raised(second, "BEGIN IMMEDIATE"))  # database is locked: waited out
    first.close()
    second.close()
    (tmp_path / "folder").mkdir()
    with pytest.raises(sqlite3.OperationalError) as cannot_open:
        sqlite3.connect(tmp_path / "folder")
    assert unavailable(sa.exc.OperationalError("connect", {}, cannot_open.value))  # unable to open the file


def test_the_engine_restart_waits_out_an_outage_to_free_the_dead_engines_work(
    memory: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "flowctl.yaml").write_text(real_channels(25, "http://127.0.0.1:9") + REST)
    loaded = load_bundle(tmp_path)
    assert loaded.ok, loaded.errors
    memory.append_changes(
        [NewChange(object="deal", record_id="1", op="put", fields={"title": "x"}, idempotency_key="k1", received_at=T0)]
    )
    dead = owner_of(4242)  # the engine process that exited held this change
    assert len(memory.claim_changes(10, dead, T0, 600)) == 1
    service = daemon_service(
        tmp_path, loaded, cast(Store, Flaky(memory, "expire_leases")), clock=FrozenClock(T0 + timedelta(seconds=1))
    )
    with caplog.at_level(logging.INFO):
        service._engine_exited(4242)  # the database is down at that moment: no traceback, no exception
        assert service.health.down
        assert memory.claim_changes(10, "other", T0 + timedelta(seconds=2), 60) == []  # still leased
        service._housekeeping()  # a later round, the database back: the lease is ended then
    assert [c.record_id for c in memory.claim_changes(10, "other", T0 + timedelta(seconds=2), 60)] == ["1"]
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]
    assert sum("store unavailable" in r.getMessage() for r in caplog.records) == 1
