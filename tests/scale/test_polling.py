"""The SQL polling source against real second databases: a PostgreSQL database and a SQLite file."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from flowctl.ports import Store
from flowctl.runtime.daemon.ingest import Ingest
from flowctl.sources.polling import SqlPoller
from flowctl.spec.durations import parse_duration
from flowctl.spec.model import Duration, Metadata, Source
from flowctl.store import open_store
from flowctl.testing import Daemon, FrozenClock, wait_for

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


crm = sa.MetaData()
contacts = sa.Table(
    "crm_contacts",
    crm,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("full_name", sa.String(100)),
    sa.Column("phone", sa.String(20)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_crm_contacts_cursor", "updated_at", "id"),
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def source_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'crm.db'}"
    return str(request.getfixturevalue("pg_source_url"))


@pytest.fixture
def crm_db(source_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(source_url)
    crm.create_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path / 'flowctl.db'}")
    yield opened
    opened.close()


@pytest.fixture
def ingest(store: Store) -> Iterator[Ingest]:
    writer = Ingest(store)
    writer.start()
    yield writer
    writer.stop()


def source(url: str, **extra: object) -> Source:
    return Source(
        metadata=Metadata(name="crm"),
        type="sql",
        url="${CRM_URL}",
        table="crm_contacts",
        key="id",
        cursor=("updated_at", "id"),
        object="contact",
        interval=Duration(text="1s", value=parse_duration("1s")),
        **extra,
    )  # type: ignore[arg-type]


OPENED: list[SqlPoller] = []


@pytest.fixture(autouse=True)
def _close_pollers() -> Iterator[None]:
    yield
    while OPENED:
        OPENED.pop().close()


def poller(url: str, store: Store, ingest: Ingest, clock: FrozenClock, owner: str = "a") -> SqlPoller:
    made = SqlPoller(
        source(url), store, ingest, clock, env={"CRM_URL": url}, owner=owner, fields=("full_name", "phone"), page=2
    )
    OPENED.append(made)
    return made


def write(engine: sa.Engine, *rows: tuple[int, str, str, int]) -> None:
    """Insert or update rows (id, name, phone, minute)."""
    with engine.begin() as conn:
        for id_, name, phone, minute in rows:
            values = {"full_name": name, "phone": phone, "updated_at": T0 + timedelta(minutes=minute)}
            if conn.execute(sa.update(contacts).where(contacts.c.id == id_).values(**values)).rowcount == 0:
                conn.execute(sa.insert(contacts).values(id=id_, **values))


def ops(store: Store, after: int = 0) -> list[tuple[str, str, dict[str, object]]]:
    return [(c.op, c.record_id, dict(c.fields)) for c in store.changes_after(after)]


def test_inserts_updates_and_deletes(crm_db: sa.Engine, source_url: str, store: Store, ingest: Ingest) -> None:
    clock = FrozenClock(T0)
    p = poller(source_url, store, ingest, clock)
    write(crm_db, (1, "Lan", "0901", 1), (2, "Minh", "0902", 2), (3, "Tuan", "0903", 3))
    result = p.poll_once(full=True)
    assert (result.created, result.updated, result.deleted) == (3, 0, 0)
    assert ops(store) == [
        ("put", "1", {"full_name": "Lan", "phone": "0901"}),
        ("put", "2", {"full_name": "Minh", "phone": "0902"}),
        ("put", "3", {"full_name": "Tuan", "phone": "0903"}),
    ]
    seen = store.changes_after(0)[-1].seq

    assert p.poll_once() == p.poll_once().__class__()  # nothing changed: nothing read, nothing emitted

    write(crm_db, (2, "Minh", "0999", 4), (2, "Minh Nguyen", "0999", 5))  # changed twice between polls
    write(crm_db, (4, "Hoa", "0904", 6))
    with crm_db.begin() as conn:
        conn.execute(sa.delete(contacts).where(contacts.c.id == 1))
    result = p.poll_once(full=True)
    assert (result.created, result.updated, result.deleted) == (1, 1, 1)
    assert ops(store, seen) == [
        ("patch", "2", {"full_name": "Minh Nguyen", "phone": "0999"}),
        ("put", "4", {"full_name": "Hoa", "phone": "0904"}),
        ("delete", "1", {}),
    ]
    assert store.changes_after(seen)[0].idempotency_key.startswith("crm:2:")


def test_the_cursor_survives_a_restart(crm_db: sa.Engine, source_url: str, store: Store, ingest: Ingest) -> None:
    clock = FrozenClock(T0)
    write(crm_db, (1, "Lan", "0901", 1), (2, "Minh", "0902", 2), (3, "Tuan", "0903", 3))
    first = poller(source_url, store, ingest, clock)
    assert first.poll_once().created == 3
    first.close()
    write(crm_db, (3, "Tuan Le", "0903", 7))
    clock.advance(timedelta(minutes=10))  # the first poller's lease has run out: a restart
    again = poller(source_url, store, ingest, clock, owner="b")
    result = again.poll_once()
    assert (result.read, result.created, result.updated) == (1, 0, 1)  # only the row past the cursor
    assert len(store.changes_after(0)) == 4
    again.close()


def test_one_replica_polls_a_source_at_a_time(crm_db: sa.Engine, source_url: str, store: Store, ingest: Ingest) -> None:
    clock = FrozenClock(T0)
    write(crm_db, (1, "Lan", "0901", 1))
    a, b = poller(source_url, store, ingest, clock, "a"), poller(source_url, store, ingest, clock, "b")
    assert a.poll_once().created == 1
    write(crm_db, (2, "Minh", "0902", 2))
    assert b.poll_once().read == 0  # a holds the lease
    clock.advance(timedelta(seconds=a.lease_seconds + 1))
    assert b.poll_once().created == 1  # a stopped polling: b takes over from the saved cursor
    a.close()
    b.close()


def test_the_daemon_polls_a_source(crm_db: sa.Engine, source_url: str, tmp_path: Path) -> None:
    """End to end: `flowctl run` with a `kind: Source` type sql, records appear through the worker."""
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "flowctl.yaml").write_text(DAEMON_CONFIG)
    write(crm_db, (1, "Lan", "0901", 1), (2, "Minh", "0902", 2))
    daemon = Daemon(folder, f"sqlite:///{tmp_path / 'flowctl.db'}", env={"CRM_URL": source_url}).start()
    try:
        wait_for(lambda: daemon.get("/v1/records/contact/2", timeout=5).status_code == 200, 15, "contact 2", every=0.1)
        write(crm_db, (2, "Minh Nguyen", "0902", 3))
        wait_for(
            lambda: daemon.get("/v1/records/contact/2", timeout=5).json()["fields"]["full_name"] == "Minh Nguyen",
            15,
            "contact 2 renamed",
            every=0.1,
        )
        metrics = daemon.get("/metrics", timeout=5).text
        assert 'flowctl_changes_accepted_total{source="crm"} 3' in metrics
    finally:
        daemon.terminate()


DAEMON_CONFIG = """\
apiVersion: flowctl/v1
kind: Config
metadata: {name: main}
spec: {timezone: UTC}
---
apiVersion: flowctl/v1
kind: ObjectType
metadata: {name: contact}
spec:
  fields:
    full_name: {type: string, required: true}
    phone: phone
---
apiVersion: flowctl/v1
kind: Source
metadata: {name: crm}
spec: {type: sql, url: "${CRM_URL}", table: crm_contacts, key: id, cursor: [updated_at, id], interval: 1s,
       object: contact}
"""


def test_a_source_that_keeps_failing_logs_one_traceback_then_a_line_per_poll(
    tmp_path: Path, store: Store, ingest: Ingest, caplog: pytest.LogCaptureFixture
) -> None:
    missing = f"sqlite:///{tmp_path / 'no-such-dir' / 'crm.db'}"  # cannot even be created
    fast = Source(
        metadata=Metadata(name="crm"),
        type="sql",
        url="${CRM_URL}",
        table="crm_contacts",
        key="id",
        cursor=("updated_at", "id"),
        object="contact",
        interval=Duration(text="50ms", value=timedelta(milliseconds=50)),
    )
    failing = SqlPoller(
        fast, store, ingest, FrozenClock(T0), env={"CRM_URL": missing}, owner="a", fields=("full_name",)
    )
    OPENED.append(failing)
    stop = threading.Event()
    with caplog.at_level("INFO", logger="flowctl.polling"):
        thread = threading.Thread(target=failing.run, args=(stop,))
        thread.start()
        deadline = datetime.now(UTC) + timedelta(seconds=10)
        while len([r for r in caplog.records if "poll failed" in r.getMessage()]) < 4 and datetime.now(UTC) < deadline:
            stop.wait(0.05)
        stop.set()
        thread.join(5)
    failures = [r for r in caplog.records if "poll failed" in r.getMessage()]
    assert len(failures) >= 4
    assert failures[0].exc_info is not None  # the first says everything
    assert all(r.exc_info is None for r in failures[1:])  # then one line each, counting
    assert "(2 in a row)" in failures[1].getMessage()
