"""Helpers for care tests: a small config directory, stores on every backend, a settable clock."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from flowctl.engine.core import Engine
from flowctl.engine.state import Record, Step
from flowctl.ports import Processed, Store
from flowctl.runtime.care.scheduler import CareScheduler
from flowctl.runtime.daemon.worker import Engines
from flowctl.spec import model as m
from flowctl.spec.config import load_bundle
from flowctl.testing import FrozenClock
from tests.store.conftest import BACKENDS

CONFIG = """
apiVersion: flowctl/v1
kind: Config
metadata: {{name: care-test}}
spec:
  timezone: {tz}
  users:
    lan:  {{full_name: Nguyễn Thị Lan, email: lan@example.com, phone: "0901000001", supervisor: hoa}}
    minh: {{full_name: Lê Quang Minh, email: minh@example.com, phone: "0901000002", supervisor: hoa}}
    tuan: {{full_name: Phạm Văn Tuấn, email: tuan@example.com, phone: "0901000003", supervisor: hoa}}
    hoa:  {{full_name: Trần Thu Hoa, email: hoa@example.com, phone: "0901000004"}}
---
apiVersion: flowctl/v1
kind: ObjectType
metadata: {{name: contact}}
spec:
  fields:
    full_name: {{type: string}}
    phone: {{type: phone}}
    email: {{type: email}}
    birthday: {{type: date}}
    renewal: {{type: date}}
    status: {{type: enum, values: [active, inactive]}}
    note: {{type: string}}
    owner: {{type: user}}
"""


def care_yaml(
    name: str = "birthday", when: str = '{anniversary_of: birthday, at: "08:00"}', *, extra: str = "", actions: str = ""
) -> str:
    actions = (
        actions
        or '    - {action: send_sms, text: "Chuc mung sinh nhat {{ record.full_name | unaccent }}", '
        'to: "{{ record.phone }}"}'
    )
    return (
        f"apiVersion: flowctl/v1\nkind: CareProcess\nmetadata: {{name: {name}}}\nspec:\n  object: contact\n"
        f"  when: {when}\n  feb29: feb28\n  on_missed: catch_up\n  grace: 24h\n  dst_gap: shift\n"
        f"  dst_overlap: once\n{textwrap.indent(textwrap.dedent(extra), '  ')}  actions:\n{actions}\n"
    )


def make_bundle(root: Path, care: str, tz: str = "Asia/Ho_Chi_Minh", files: dict[str, str] | None = None) -> m.Bundle:
    root.mkdir(parents=True, exist_ok=True)
    (root / "flowctl.yaml").write_text(CONFIG.format(tz=tz), encoding="utf-8")
    (root / "care.yaml").write_text(care, encoding="utf-8")
    for name, text in (files or {}).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text), encoding="utf-8")
    loaded = load_bundle(root)
    assert loaded.ok, "\n".join(str(i) for i in loaded.errors)
    assert loaded.bundle is not None
    return loaded.bundle


def put_records(store: Store, *records: Record) -> None:
    """Write records as the worker would (commit_batch keeps the date index)."""
    store.commit_batch(
        [Processed(record=r, step=Step()) for r in records], datetime.fromisoformat("2026-01-01T00:00:00+00:00")
    )


def contact(id: str, **fields: Any) -> Record:
    fields.setdefault("full_name", f"Khách {id}")
    fields.setdefault("phone", f"09000000{id}")
    return Record(object="contact", id=id, fields=fields, owner=str(fields.get("owner", "")), version=1)


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'flowctl.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def open_stores(store_url: str) -> Iterator[Callable[[], Store]]:
    from flowctl.store import open_store

    opened: list[Store] = []
    shared: Store | None = None

    def more() -> Store:
        nonlocal shared
        if store_url == "memory://":
            shared = shared or open_store(store_url)
            return shared
        opened.append(open_store(store_url))
        return opened[-1]

    yield more
    for store in opened:
        store.close()


def scheduler(
    store: Store, bundle: m.Bundle, at: datetime, version: str = "v1", owner: str = "a", engines: Engines | None = None
) -> CareScheduler:
    return CareScheduler(store, engines or Engines(Engine(bundle, version)), FrozenClock(at), owner=owner)
