"""The hot path (``daemon/inline.py``): a change of a record with nothing open is run in the
commit that stores it, its SMS in the outbox when the write is answered; whatever a worker may be
holding back (an earlier change, a due timer it claimed) waits for the worker, in order. The same
on SQLite and on PostgreSQL, where another replica claims nothing of the record while it runs."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from flowctl.engine.core import Engine
from flowctl.ports import NewChange, Processed, Store, StoredChange
from flowctl.runtime.compose import daemon_service
from flowctl.runtime.daemon.engine_process import EngineProcess
from flowctl.runtime.daemon.ingest import Ingest
from flowctl.runtime.daemon.inline import InlineWorker
from flowctl.runtime.daemon.worker import Engines, Worker
from flowctl.spec.config import load_bundle
from flowctl.store import open_store
from flowctl.store.sql.base import PG_APPEND_LOCK
from flowctl.testing import Daemon, FrozenClock, wait_for
from tests.daemon.configs import deal_config
from tests.daemon.test_worker_rounds import PIPELINE
from tests.engine.conftest import T0, make_bundle


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = f"sqlite:///{tmp_path / 'flowctl.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    opened = open_store(url)
    yield opened
    opened.close()


def deal(id_: str, key: str = "", name: str = "An") -> NewChange:
    return NewChange(
        object="deal",
        record_id=id_,
        op="put",
        idempotency_key=key or id_,
        fields={"title": "Sofa", "client_name": name, "phone": "0912000001"},
        received_at=T0,
    )


def welcomes(store: Store) -> list[str]:
    return sorted(row.payload["text"] for row in store.list_outbox(50) if row.payload["text"].startswith("hello"))


def worker_on(store: Store, tmp_path: Path, clock: FrozenClock) -> Worker:
    return Worker(store, Engines(Engine(make_bundle(tmp_path, {"sales.yaml": PIPELINE}))), clock, owner="w1")


def test_a_change_with_nothing_open_is_done_with_its_sms_when_the_commit_answers(store: Store, tmp_path: Path) -> None:
    worker = worker_on(store, tmp_path, FrozenClock(T0))
    (result,) = store.append_changes([deal("d1")], InlineWorker(worker, limit=100))
    change = store.change(result.seq)
    assert change is not None
    assert result.processed and change.status == "done"
    assert worker.processed == 1  # counted where /metrics reads it
    assert welcomes(store) == ["hello An"]
    assert worker.run_once() == 0  # nothing left to claim
    (run,) = [r for r in store.list_runs(10) if r.automation.endswith("remind")]
    assert [t.due for t in store.timers_of(run.id)] == [T0 + timedelta(minutes=30)]


def test_a_record_with_an_earlier_open_change_waits_for_the_worker_in_order(store: Store, tmp_path: Path) -> None:
    worker = worker_on(store, tmp_path, FrozenClock(T0))
    store.append_changes([deal("d1", "k1", name="first")])  # no inline: pending
    results = store.append_changes(
        [deal("d1", "k2", name="second"), deal("d2", "k3", name="other")], InlineWorker(worker, limit=100)
    )
    assert [r.processed for r in results] == [False, True]
    worker.run_once()
    record = store.record("deal", "d1")
    assert record is not None and record.fields["client_name"] == "second"  # seq order kept
    assert welcomes(store) == ["hello first", "hello other"]  # a put of the same stage moves nothing


def test_a_record_whose_due_timer_a_worker_holds_waits(store: Store, tmp_path: Path) -> None:
    clock = FrozenClock(T0)
    worker = worker_on(store, tmp_path, clock)
    store.append_changes([deal("d1", "k1"), deal("d2", "k2")])
    worker.run_once()
    clock.advance(timedelta(minutes=31))
    held = store.claim_due_timers(clock.now(), 1, "another-worker", 60.0)  # d1's or d2's reminder
    assert len(held) == 1
    other = "d2" if held[0].record_id == "d1" else "d1"
    results = store.append_changes(
        [deal(held[0].record_id, "k3", name="held"), deal(other, "k4", name="free")], InlineWorker(worker, limit=100)
    )
    assert [r.processed for r in results] == [False, True]


def test_duplicates_are_not_run_again(store: Store, tmp_path: Path) -> None:
    worker = worker_on(store, tmp_path, FrozenClock(T0))
    inline = InlineWorker(worker, limit=100)
    store.append_changes([deal("d1")], inline)
    worker.run_once()
    (again,) = store.append_changes([deal("d1")], inline)
    assert again.duplicate and not again.processed
    assert worker.run_once() == 0
    assert welcomes(store) == ["hello An"]


class Failing(InlineWorker):
    def run(self, changes: Sequence[StoredChange], now: datetime) -> list[Processed]:
        raise RuntimeError("a bug in the engine")


def test_a_run_that_fails_leaves_the_changes_stored_for_the_worker(store: Store, tmp_path: Path) -> None:
    worker = worker_on(store, tmp_path, FrozenClock(T0))
    (result,) = store.append_changes([deal("d1")], Failing(worker, limit=100))
    assert not result.processed and not result.duplicate
    change = store.change(result.seq)
    assert change is not None and change.status == "pending"
    assert welcomes(store) == []
    assert worker.run_once() == 1
    assert welcomes(store) == ["hello An"]


def test_the_ingest_runs_a_commit_of_one_change_inline_and_leaves_larger_ones_to_the_worker(
    store: Store, tmp_path: Path
) -> None:
    worker = worker_on(store, tmp_path, FrozenClock(T0))
    ran: list[int] = []  # the daemon nudges its deliverer here: the run's SMS is in the outbox
    worker.on_committed = lambda: ran.append(len(welcomes(store)))
    ingest = Ingest(store, inline=InlineWorker(worker))
    both = ingest.submit_many([deal("d1"), deal("d2")])  # queued before it starts: one commit
    ingest.start()
    try:
        assert [future.result(10).processed for future in both] == [False, False]
        assert ran == []
        (alone,) = ingest.submit_many([deal("d3")])
        assert alone.result(10).processed
        assert ran == [1]
        (again,) = ingest.submit_many([deal("d3")])  # a duplicate runs nothing
        assert again.result(10).duplicate and ran == [1]
    finally:
        ingest.stop()
    assert worker.run_once() == 2


@pytest.mark.parametrize("engine_running", [False, True])
def test_while_no_engine_process_runs_a_version_the_ingest_runs_larger_commits_inline_too(
    tmp_path: Path, engine_running: bool
) -> None:
    """The engine process starting (or restarting): nobody else would run the changes, so a commit
    of several is run inline too, instead of piling up for the engine process to work off once up.
    Once it runs a version, such a commit is its work again."""
    root = tmp_path / "config"
    root.mkdir()
    (root / "flowctl.yaml").write_text(daemon_config())
    database = f"sqlite:///{tmp_path / 'flowctl.db'}"
    store = open_store(database)
    engine = EngineProcess(database)  # not started: it runs no version
    if engine_running:  # as the parent sees a child that said "v <version>"
        engine.proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        engine.running_version = "v1"
    service = daemon_service(root, load_bundle(root / "flowctl.yaml"), store, env={}, engine_process=engine)
    both = service.ingest.submit_many([deal("d1"), deal("d2")])  # queued before it starts: one commit
    service.ingest.start()
    try:
        assert [future.result(10).processed for future in both] == [not engine_running] * 2
        texts = sorted(row.payload["text"] for row in store.list_outbox(10))
        assert texts == ([] if engine_running else ["hello Sofa", "hello Sofa"])
        assert len(store.open_changes("deal", "d1") + store.open_changes("deal", "d2")) == 2 * engine_running
    finally:
        service.ingest.stop()
        store.close()
        if engine.proc is not None:
            engine.proc.kill()
            engine.proc.wait()


def daemon_config() -> str:
    """A deal pipeline whose stage rule sends ``hello <title>`` through a ``log`` channel."""
    return (
        deal_config("    phone: {type: phone}\n")
        + "---\n"
        + "apiVersion: flowctl/v1\nkind: Channel\nmetadata: {name: sms}\nspec: {type: log}\n---"
        + PIPELINE.replace("client_name", "title")
    )


class Replica(InlineWorker):
    """Runs like the daemon's, and meanwhile lets another replica (``other``) try to claim."""

    def __init__(self, worker: Worker, other: Store) -> None:
        super().__init__(worker, limit=100)
        self.other = other
        self.seen: tuple[list[StoredChange], list[str]] | None = None

    def run(self, changes: Sequence[StoredChange], now: datetime) -> list[Processed]:
        claimed = self.other.claim_changes(10, "replica-2", now, 60.0)
        timers = self.other.claim_due_timers(now, 10, "replica-2", 60.0)
        self.seen = (claimed, [timer.record_id for timer in timers])
        return super().run(changes, now)


@pytest.mark.postgres
def test_postgres_another_replica_claims_nothing_of_a_record_while_its_change_runs(pg_url: str, tmp_path: Path) -> None:
    clock = FrozenClock(T0)
    first, second = open_store(pg_url), open_store(pg_url)
    try:
        worker = worker_on(first, tmp_path, clock)
        first.append_changes([deal("d1", "k1"), deal("d2", "k2")])
        worker.run_once()  # each waits on its 30-minute reminder
        clock.advance(timedelta(minutes=31))
        replica = Replica(worker, second)
        (result,) = first.append_changes([deal("d1", "k3", name="again")], replica)
        assert result.processed
        assert replica.seen == ([], ["d2"])  # the change is not visible; d1's due reminder is locked
        assert sorted(t.record_id for t in second.claim_due_timers(clock.now(), 10, "replica-2", 60.0)) == ["d1"]
    finally:
        first.close()
        second.close()


@pytest.mark.postgres
def test_postgres_a_replica_that_waits_for_its_turn_to_append_leaves_the_change_to_the_queue(
    pg_url: str, tmp_path: Path
) -> None:
    store = open_store(pg_url)
    other = sa.create_engine(pg_url)
    try:
        worker = worker_on(store, tmp_path, FrozenClock(T0))
        with ThreadPoolExecutor(1) as pool, other.connect() as conn, conn.begin():
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(PG_APPEND_LOCK)))  # another replica appends
            appended = pool.submit(store.append_changes, [deal("d1")], InlineWorker(worker, limit=100))
            wait_for(lambda: waiting_for_a_lock(other), what="the append to wait for its turn")
        (result,) = appended.result(30)  # its turn came once the other append committed
        assert not result.processed
        assert worker.run_once() == 1 and welcomes(store) == ["hello An"]
        (alone,) = store.append_changes([deal("d2", name="Binh")], InlineWorker(worker, limit=100))
        assert alone.processed  # nobody else appending: the hot path
    finally:
        store.close()
        other.dispose()


def waiting_for_a_lock(engine: sa.Engine) -> bool:
    with engine.connect() as conn:
        query = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        return bool(conn.execute(sa.text(query)).scalar())


def test_the_daemon_answers_a_write_with_its_sms_already_in_the_outbox(tmp_path: Path) -> None:
    root = tmp_path / "config"
    root.mkdir()
    (root / "flowctl.yaml").write_text(daemon_config())
    database = f"sqlite:///{tmp_path / 'flowctl.db'}"
    daemon = Daemon(root / "flowctl.yaml", database)
    store = open_store(database)
    try:
        daemon.start()
        answer = daemon.put("deal", "d1", {"title": "Sofa", "phone": "0912000001"})
        assert answer.status_code == 202, answer.text
        # no waiting: the commit that answered the write ran the stage rule
        assert [row.payload["text"] for row in store.list_outbox(10)] == ["hello Sofa"]
        assert store.open_changes("deal", "d1") == []
        assert daemon.metric("flowctl_changes_processed_total") == 1
    finally:
        store.close()
        daemon.stop_quietly()
