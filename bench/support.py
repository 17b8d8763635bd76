"""What several benches set up the same way: loopback HTTP gateways, a fresh PostgreSQL database,
and the ``order`` configuration the engine benches run.

Benches import it as ``support`` (``python bench/bench_x.py`` puts ``bench/`` first on the path).
"""

from __future__ import annotations

import itertools
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import sqlalchemy as sa

from flowctl.channels.http import HttpSender
from flowctl.spec.model import Channel, Metadata


def gateway(latency: float, hang: float = 0.0, every: int = 0) -> ThreadingHTTPServer:
    """An HTTP gateway on a loopback port that answers every POST ``{}`` after ``latency`` seconds,
    or, with ``every``, after ``hang`` seconds on every ``every``-th request. It serves from a
    daemon thread until ``shutdown()``."""
    count = itertools.count(1)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else each answer waits for a delayed ACK (40 ms)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            n = next(count)
            time.sleep(hang if every and n % every == 0 else latency)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def sender(name: str, server: ThreadingHTTPServer) -> HttpSender:
    """An HTTP channel ``name`` posting ``{to, text}`` to ``/<name>`` on ``server``."""
    url = f"http://127.0.0.1:{server.server_address[1]}/{name}"
    channel = Channel(metadata=Metadata(name=name), type="http", url=url, body={"to": "{{ to }}", "text": "{{ text }}"})
    return HttpSender(channel, {})


def fresh_database(base: str, name: str) -> str:
    """The URL of database ``name`` on the server of ``base``, dropped and made afresh."""
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return sa.make_url(base).set(database=name).render_as_string(hide_password=False)


def order_config(*, timezone: str, statuses: str) -> str:
    """The ``bench`` Config in ``timezone`` and the ``order`` type (name, phone, amount and a
    ``status`` among ``statuses``, a YAML list), ending where the bench's own documents follow."""
    return f"""\
apiVersion: flowctl/v1
kind: Config
metadata: {{name: bench}}
spec: {{timezone: {timezone}}}
---
apiVersion: flowctl/v1
kind: ObjectType
metadata: {{name: order}}
spec:
  fields:
    full_name: {{type: string}}
    phone: {{type: phone}}
    amount: {{type: money}}
    status: {{type: enum, values: {statuses}}}
"""
