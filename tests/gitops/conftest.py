"""GitOps tests drive the real commands (``CliRunner``) against SQLite and PostgreSQL stores.

PostgreSQL needs ``FLOWCTL_TEST_DATABASE_URL``; each test gets a fresh schema, dropped after.
Live state is made the way the daemon makes it: changes appended, then a ``Worker`` runs them
on the deployed version at a frozen time.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from flowctl.cli.main import cli
from flowctl.engine.core import Engine
from flowctl.gitops.versions import from_version
from flowctl.ports import NewChange, Store
from flowctl.runtime.daemon.worker import Engines, Worker
from flowctl.store import open_store
from flowctl.testing import FrozenClock

ICT = timezone(timedelta(hours=7))
NOW = datetime(2026, 3, 10, 10, 0, tzinfo=ICT)

BASE = {
    "flowctl.yaml": """\
apiVersion: flowctl/v1
kind: Config
metadata: {name: main}
spec: {timezone: Asia/Ho_Chi_Minh, users: {lan: {full_name: Lan}}}
""",
    "objects/contact.yaml": """\
apiVersion: flowctl/v1
kind: ObjectType
metadata: {name: contact}
spec:
  fields:
    full_name: {type: string}
    phone: {type: phone}
    birthday: {type: date}
    note: {type: string}
""",
    "pipelines/sales.yaml": """\
apiVersion: flowctl/v1
kind: Pipeline
metadata: {name: sales}
spec:
  object: contact
  stages:
    - id: new
    - id: documents
      rules:
        - {name: nudge, delay: 1d, action: create_task, title: "Nudge {{ record.full_name }}", assignee: {user: lan}}
    - id: spare
    - {id: won, final: success}
""",
    "flows/welcome.yaml": """\
apiVersion: flowctl/v1
kind: Flow
metadata: {name: welcome}
spec:
  object: contact
  trigger: {on: created}
  start: hello
  nodes:
    hello: {type: send_sms, to: "{{ record.phone }}", text: "Xin chao {{ record.full_name }}", next: wait}
    wait: {type: delay, for: 2d, next: bye}
    bye: {type: send_sms, to: "{{ record.phone }}", text: "Tam biet", next: done}
    done: {type: stop}
""",
    "care/birthday.yaml": """\
apiVersion: flowctl/v1
kind: CareProcess
metadata: {name: birthday}
spec:
  object: contact
  when: {anniversary_of: birthday, at: "08:00"}
  feb29: feb28
  on_missed: skip
  actions:
    - {action: send_sms, to: "{{ record.phone }}", text: "Chuc mung sinh nhat {{ record.full_name }}"}
""",
}


def invoke(*args: Any) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def write(root: Path, files: dict[str, str | None]) -> Path:
    """Write ``files`` under ``root`` (None deletes one); returns ``root``."""
    for name, text in files.items():
        path = root / name
        if text is None:
            path.unlink(missing_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'live.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write(tmp_path / "config", dict(BASE))


@dataclass
class Live:
    """The live system: a store and a worker on whatever version is deployed."""

    url: str
    store: Store
    clock: FrozenClock

    def work(self, *changes: NewChange) -> None:
        current = self.store.current_version()
        assert current is not None, "apply a version first"
        bundle = from_version(current).loaded.bundle
        assert bundle is not None
        if changes:
            stamped = [c if c.received_at else _stamp(c, self.clock.now()) for c in changes]
            self.store.append_changes(stamped)
        worker = Worker(self.store, Engines(Engine(bundle, current.id)), self.clock, owner="test")
        while worker.run_once():
            pass

    def put(self, id: str, stage: str = "", **fields: Any) -> None:
        self.work(
            NewChange(
                object="contact",
                record_id=id,
                op="put",
                idempotency_key=f"put-{id}-{uuid.uuid4()}",
                fields=fields,
                stage=stage,
                pipeline="sales" if stage else "",
            )
        )

    def move(self, id: str, stage: str) -> None:
        self.work(
            NewChange(
                object="contact",
                record_id=id,
                op="move",
                idempotency_key=f"mv-{id}-{uuid.uuid4()}",
                stage=stage,
                pipeline="sales",
            )
        )


def _stamp(change: NewChange, at: datetime) -> NewChange:
    from dataclasses import replace

    return replace(change, received_at=at)


@pytest.fixture
def live(db: str) -> Iterator[Live]:
    store = open_store(db)
    yield Live(url=db, store=store, clock=FrozenClock(NOW))
    store.close()


@pytest.fixture
def plan_json() -> Callable[..., tuple[int, dict[str, Any]]]:
    import json

    def run(*args: Any) -> tuple[int, dict[str, Any]]:
        result = invoke("plan", *args, "--format", "json", "--now", NOW.isoformat())
        return result.exit_code, json.loads(result.output)

    return run
