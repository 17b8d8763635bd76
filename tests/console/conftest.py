"""Fixtures: ``make_console(token=...)`` serves the whole app (API and console) over a service of
real parts; the client talks to it as a browser on loopback would."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from httpx import Response

from flowctl.runtime.api.app import create_app
from flowctl.store.memory import MemoryStore

from .support import ENV, TOKEN, FakeService, TestClient, config, load


@dataclass
class Served:
    svc: FakeService
    client: TestClient

    def put(self, id: str, fields: dict[str, Any], stage: str = "") -> None:
        body: dict[str, Any] = {"fields": fields, **({"stage": stage} if stage else {})}
        headers = {"Authorization": f"Bearer {TOKEN}"}
        answer = self.client.put(f"/v1/records/deal/{id}", json=body, headers=headers)
        assert answer.status_code == 202, answer.text
        self.svc.process()

    def move(self, id: str, stage: str) -> None:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        answer = self.client.post(f"/v1/records/deal/{id}/stage", json={"stage": stage}, headers=headers)
        assert answer.status_code == 202, answer.text
        self.svc.process()

    def sign_in(self, token: str = TOKEN) -> Response:
        """Sign in through the form as a browser does (its CSRF value from the form's cookie)."""
        form = self.client.get("/ui/signin")
        assert form.status_code == 200, form.text
        csrf = self.client.cookies.get("flowctl_signin")
        return self.client.post("/ui/signin", data={"token": token, "csrf": csrf, "next": "/ui/outbox"})

    def csrf(self, path: str) -> str:
        """The CSRF value of the first form on ``path``."""
        found = re.search(r'name="csrf" value="([^"]+)"', self.client.get(path).text)
        assert found, f"no form with a CSRF value on {path}"
        return found.group(1)

    def dead_message(self) -> int:
        """Make the first pending message die as the deliverer does after a permanent failure."""
        store, now = self.svc.store, self.svc.clock.now()
        (row,) = store.claim_outbox(now, 1, "test", 60.0)
        assert store.mark_failed(row.id, "HTTP 400 from the gateway: bad number", None, now)
        return row.id


MakeConsole = Callable[..., Served]


@pytest.fixture
def make_console(tmp_path: Path) -> Iterator[MakeConsole]:
    opened: list[tuple[TestClient, FakeService]] = []

    def make(
        *,
        token: bool = True,
        client_host: str = "127.0.0.1",
        ui: bool = True,
        base_url: str = "http://127.0.0.1",
        channels: str = "",
    ) -> Served:
        bundle = load(tmp_path / f"config{len(opened)}", config(token=token, channels=channels))
        svc = FakeService(bundle=bundle, store=MemoryStore(), env=ENV)
        svc.ingest.start()
        client = TestClient(
            create_app(svc, commit_timeout=5.0, ui=ui),
            base_url=base_url,
            client=(client_host, 50000),
            follow_redirects=False,
        )
        client.__enter__()
        opened.append((client, svc))
        return Served(svc, client)

    yield make
    for client, svc in opened:
        client.__exit__(None, None, None)
        svc.ingest.stop()
