"""Replicas: several real `flowctl run` processes on one PostgreSQL database share the work.

Each test gets a fresh schema. The changes come in over HTTP, spread over the replicas; the
messages go to a real HTTP server, which counts them by their ``Idempotency-Key``.
"""

from __future__ import annotations

import functools
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from flowctl.testing import Daemon
from flowctl.testing import wait_for as poll
from tests.daemon.configs import deal_config, http_channel, sales_pipeline

# Four sends in flight per replica, as a high-volume deployment would set: these tests are about
# sharing work, not about how many copies a crash may resend (tests/reliability/test_crash.py).
RULES = """\
        - {name: thanks, action: send_sms, text: "Cam on {{ record.title }}", to: "{{ record.phone }}"}
"""


def config(sink: str) -> str:
    fields = "    phone: phone\n    amount: integer\n"
    channel = http_channel("sms", f"{sink}/sms")
    spec = "{timezone: UTC, limits: {sends_in_flight: 4}}"
    return deal_config(fields, spec=spec, then=f"{channel}---\n{sales_pipeline(RULES, final='won')}")


class Sink:
    """An HTTP server that counts requests per Idempotency-Key; ``delay`` slows every answer."""

    def __init__(self, delay: float = 0.0) -> None:
        self.keys: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.delay = delay
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if sink.delay:
                    time.sleep(sink.delay)
                with sink.lock:
                    sink.keys[self.headers.get("Idempotency-Key", "")] += 1
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def total(self) -> int:
        with self.lock:
            return sum(self.keys.values())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def sink() -> Iterator[Sink]:
    made = Sink()
    yield made
    made.close()


@pytest.fixture
def replicas(tmp_path: Path, pg_store_url: str) -> Iterator[Callable[..., list[Daemon]]]:
    started: list[Daemon] = []

    def start(count: int, sink: Sink, env: dict[str, str] | None = None) -> list[Daemon]:
        folder = tmp_path / "config"
        folder.mkdir(exist_ok=True)
        (folder / "flowctl.yaml").write_text(config(sink.url))
        made = [Daemon(folder, pg_store_url, env=env) for _ in range(count)]
        for daemon in made:  # one at a time: the first migrates the schema
            started.append(daemon.start(timeout=60))
        return made

    yield start
    for daemon in started:
        daemon.stop_quietly()


def db(url: str) -> sa.Engine:
    return sa.create_engine(url)


def scalar(engine: sa.Engine, sql: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql)).scalar()


#: ``flowctl.testing.wait_for`` polling every 0.2 s: the conditions count rows in PostgreSQL.
wait_for = functools.partial(poll, every=0.2)


def put_all(daemons: list[Daemon], ids: range, clients: int = 16) -> None:
    """PUT one deal per id, round-robin over the replicas, from ``clients`` threads."""
    http = [httpx.Client(base_url=d.url, timeout=60) for d in daemons]

    def put(i: int) -> int:
        body = {"fields": {"title": f"Don {i}", "phone": f"09{i:08d}", "amount": i}, "stage": "new"}
        # as the API asks of clients: a write cut off in transit is retried with the same key
        headers = {"Idempotency-Key": f"put-{i}"}
        for attempt in range(5):
            try:
                return (
                    http[(i + attempt) % len(http)].put(f"/v1/records/deal/{i}", json=body, headers=headers).status_code
                )
            except httpx.TransportError:
                time.sleep(0.2 * (attempt + 1))
        raise AssertionError(f"PUT {i} failed five times")

    try:
        with ThreadPoolExecutor(clients) as pool:
            codes = Counter(pool.map(put, ids))
    finally:
        for client in http:
            client.close()
    assert set(codes) <= {200, 201, 202}, codes


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("count", [2, 3])
def test_replicas_process_10000_changes_each_effect_once(
    count: int, replicas: Callable[..., list[Daemon]], sink: Sink, pg_store_url: str
) -> None:
    daemons = replicas(count, sink)
    put_all(daemons, range(10_000))
    engine = db(pg_store_url)
    try:
        wait_for(
            lambda: (
                sink.total() >= 10_000 and scalar(engine, "select count(*) from outbox where status <> 'sent'") == 0
            ),
            180,
            "10,000 messages",
        )
        assert scalar(engine, "select count(*) from changes where status = 'done'") == 10_000
        assert scalar(engine, "select count(*) from outbox") == 10_000  # each effect once
        assert scalar(engine, "select count(distinct key) from outbox") == 10_000
        time.sleep(1.0)  # nothing more arrives late
        assert len(sink.keys) == 10_000 and max(sink.keys.values()) == 1  # each message delivered once
        owners = scalar(engine, "select count(distinct split_part(lease_owner, ':', 2)) from outbox") or 0
        assert owners == 0  # leases are cleared on sending
        workers = [httpx.get(f"{d.url}/metrics").text for d in daemons]
        shares = [_metric(text, 'flowctl_deliveries_total{channel="sms",result="sent"}') for text in workers]
        # every delivery is counted once, by the replica that made it (which replica is up to chance)
        assert sum(shares) == 10_000, (shares, [t[-800:] for t in workers])
    finally:
        engine.dispose()


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


@pytest.mark.postgres
def test_order_per_record_holds_across_replicas(
    replicas: Callable[..., list[Daemon]], sink: Sink, pg_store_url: str
) -> None:
    daemons = replicas(2, sink)
    records, writes = 100, 6

    def write_record(i: int) -> None:
        with httpx.Client(timeout=30) as http:
            for n in range(writes):  # each write on the other replica, each acknowledged before the next
                body = {"fields": {"title": f"Don {i}", "phone": "0901234567", "amount": n}}
                method = http.put if n == 0 else http.patch
                assert method(f"{daemons[n % 2].url}/v1/records/deal/{i}", json=body).status_code in (200, 201, 202)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(write_record, range(records)))
    engine = db(pg_store_url)
    try:
        wait_for(lambda: scalar(engine, "select count(*) from changes where status <> 'done'") == 0, 60, "changes")
        with engine.connect() as conn:
            last = dict(conn.execute(sa.text("select id, (fields->>'amount')::int from records")).all())
            order = conn.execute(
                sa.text("select record_id, seq, processed_at from changes order by record_id, seq")
            ).all()
    finally:
        engine.dispose()
    assert last == {str(i): writes - 1 for i in range(records)}
    by_record: dict[str, list[Any]] = {}
    for record_id, _, processed_at in order:
        by_record.setdefault(record_id, []).append(processed_at)
    assert all(times == sorted(times) for times in by_record.values())  # processed in seq order


@pytest.mark.postgres
def test_a_killed_replica_has_its_leases_recovered(replicas: Callable[..., list[Daemon]], pg_store_url: str) -> None:
    slow = Sink(delay=0.3)
    try:
        [first] = replicas(1, slow, env={"FLOWCTL_LEASE_SECONDS": "2"})
        put_all([first], range(60), clients=8)
        engine = db(pg_store_url)
        try:
            wait_for(
                lambda: (scalar(engine, "select count(*) from outbox where status = 'sending'") or 0) >= 5,
                30,
                "the first replica to be sending",
            )
            first.kill()  # SIGKILL mid-round: its claimed rows keep their leases
            taken = scalar(engine, "select count(*) from outbox where status = 'sending'")
            assert taken >= 5
            [second] = replicas(1, slow, env={"FLOWCTL_LEASE_SECONDS": "2"})
            wait_for(
                lambda: scalar(engine, "select count(*) from outbox where status <> 'sent'") == 0,
                90,
                "every message to be sent",
            )
            assert scalar(engine, "select count(*) from outbox where attempts >= 2") >= taken - 1
            assert scalar(engine, "select count(*) from changes where status <> 'done'") == 0
            assert len(slow.keys) == 60  # every message arrived (those cut off, maybe twice, same key)
            assert second.alive()
        finally:
            engine.dispose()
    finally:
        slow.close()


def test_sqlite_refuses_a_second_daemon(tmp_path: Path, sink: Sink) -> None:
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "flowctl.yaml").write_text(config(sink.url))
    database = tmp_path / "flowctl.db"
    first = Daemon(folder, f"sqlite:///{database}").start()
    try:
        second = subprocess.run(
            [
                sys.executable,
                "-m",
                "flowctl",
                "run",
                str(folder),
                "--db",
                f"sqlite:///{database}",
                "--listen",
                "127.0.0.1:0",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 1
        assert (
            f"another flowctl run is using {database} (pid {first.proc.pid if first.proc else '?'}); "
            "SQLite supports one daemon; use PostgreSQL for replicas"
        ) in second.stderr
    finally:
        first.terminate()
    again = Daemon(folder, f"sqlite:///{database}").start()  # the lock went with the first process
    again.terminate()
