"""Fixtures: ``make_api(config=..., env=..., store=...)`` builds the app over a ``FakeService``
(see ``http_support``); ``api`` is the default one. ``Api.process()`` runs the real worker so a
test can read back what the API stored."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from http_support import (
    CONFIG,
    OBJECTS,
    PIPELINE,
    SECRET,
    SOURCES,
    Api,
    FakeService,
    MakeApi,
    TestClient,
    write_config,
)

from flowctl.runtime.api.app import create_app
from flowctl.runtime.daemon.ingest import Ingest
from flowctl.store.memory import MemoryStore


@pytest.fixture
def make_api(tmp_path: Path) -> Iterator[MakeApi]:
    """``make_api(config=..., env=..., store=...)``: a running app; closed after the test."""
    opened: list[tuple[TestClient, Ingest]] = []

    def make(
        config: str = CONFIG, env: Mapping[str, str] | None = None, store: MemoryStore | None = None, **extra: str
    ) -> Api:
        files = {
            "flowctl.yaml": config,
            "objects/deal.yaml": OBJECTS,
            "pipelines/sales.yaml": PIPELINE,
            "sources/hooks.yaml": SOURCES,
            **extra,
        }
        bundle = write_config(tmp_path, files)
        svc = FakeService(
            bundle=bundle, store=store or MemoryStore(), env={"HOOK_SECRET": SECRET} if env is None else env
        )
        svc.ingest.start()
        client = TestClient(create_app(svc, commit_timeout=5.0), raise_server_exceptions=True)
        client.__enter__()
        opened.append((client, svc.ingest))
        return Api(svc=svc, client=client)

    yield make
    for client, ingest in opened:
        client.__exit__(None, None, None)
        ingest.stop()


@pytest.fixture
def api(make_api: MakeApi) -> Api:
    return make_api()
