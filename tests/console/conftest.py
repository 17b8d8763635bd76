"""Fixtures: ``make_console(token=...)`` serves the whole app (API and console) over a service of
real parts; the client talks to it as a browser on loopback would."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flowctl.runtime.api.app import create_app
from flowctl.store.memory import MemoryStore

from .support import TOKEN, FakeService, TestClient, config, load


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

    def sign_in(self, token: str = TOKEN) -> None:
        form = self.client.get("/ui/signin")
        csrf = form.cookies.get("flowctl_signin") or self.client.cookies.get("flowctl_signin")
        answer = self.client.post("/ui/signin", data={"token": token, "csrf": csrf, "next": "/ui/boards"})
        assert answer.status_code == 303, answer.text


MakeConsole = Callable[..., Served]


@pytest.fixture
def make_console(tmp_path: Path) -> Iterator[MakeConsole]:
    opened: list[tuple[TestClient, FakeService]] = []

    def make(*, token: bool = True, client_host: str = "127.0.0.1", ui: bool = True) -> Served:
        bundle = load(tmp_path / f"config{len(opened)}", config(token=token))
        svc = FakeService(bundle=bundle, store=MemoryStore(), env={"FLOWCTL_TOKEN": TOKEN})
        svc.ingest.start()
        client = TestClient(
            create_app(svc, commit_timeout=5.0, ui=ui),
            base_url="http://127.0.0.1",
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
