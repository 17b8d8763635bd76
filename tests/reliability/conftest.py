"""``make_daemon(files, env=..., database=...)``: the real daemon (``Service``: store, ingest,
worker, delivery) in this process, its HTTP app behind a client, and a way to count what the
store holds. Hostile-input tests use it to show what a request stored, sent and logged."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.exceptions import StarletteDeprecationWarning

from flowctl.ports import Store
from flowctl.runtime.api.app import create_app
from flowctl.runtime.compose import daemon_service
from flowctl.runtime.daemon.service import Service
from flowctl.spec.config import load_bundle
from flowctl.store import open_store
from flowctl.testing import write_config

# Starlette 1.x warns that its TestClient wants httpx2; the client works the same with httpx.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient


@dataclass
class Daemon:
    svc: Service
    client: TestClient
    store: Store

    def changes(self) -> int:
        """How many changes the store holds (every accepted write is one)."""
        return len(self.store.changes_after(0, limit=1_000_000))

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until the worker has processed every change and the outbox has nothing pending."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            counts = self.store.queue_counts()
            busy = counts["changes_pending"] + counts["changes_claimed"] + counts["outbox_pending"]
            if not busy and not counts.get("outbox_sending", 0):
                return
            time.sleep(0.05)
        raise AssertionError(f"the daemon did not settle within {timeout}s: {self.store.queue_counts()}")


class Daemons:
    """Starts daemons on configs under ``folder`` and stops them all in :meth:`close`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.opened: list[Daemon] = []
        self.started = 0

    def __call__(
        self,
        files: Mapping[str, str],
        *,
        env: Mapping[str, str] | None = None,
        database: str = "",
        log_stream: Any = None,
        **service: Any,
    ) -> Daemon:
        """Start ``Service`` on a config made of ``files`` (name -> YAML), over SQLite unless
        ``database`` names another store; ``service`` are more ``compose.daemon_service`` arguments (``clock``)."""
        self.started += 1
        n = self.started
        root = write_config(self.folder / f"config-{n}", files)
        loaded = load_bundle(root)
        assert loaded.ok, "\n".join(str(issue) for issue in loaded.errors)
        store = open_store(database or f"sqlite:///{self.folder / f'flowctl-{n}.db'}")
        svc = daemon_service(
            root, loaded, store, env=dict(env or {}), log_stream=log_stream, poll_interval=0.02, **service
        )
        svc.start()
        client = TestClient(create_app(svc, commit_timeout=10.0), raise_server_exceptions=True)
        client.__enter__()
        daemon = Daemon(svc=svc, client=client, store=store)
        self.opened.append(daemon)
        return daemon

    def close(self) -> None:
        while self.opened:
            daemon = self.opened.pop()
            daemon.client.__exit__(None, None, None)
            daemon.svc.stop()
            daemon.store.close()


MakeDaemon = Callable[..., Daemon]


@pytest.fixture
def make_daemon(tmp_path: Path) -> Iterator[MakeDaemon]:
    """``make_daemon(files, env=..., database=...)``: a started daemon, stopped after the test."""
    daemons = Daemons(tmp_path)
    yield daemons
    daemons.close()
