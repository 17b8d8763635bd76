"""Helpers of the HTTP tests: a small service made of real parts (a config loaded from
``tmp_path``, the real ``Ingest`` over ``MemoryStore``, the real engine's move rules, a frozen
clock), and webhook signing."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.exceptions import StarletteDeprecationWarning

from flowctl.engine.core import Engine
from flowctl.engine.state import Record
from flowctl.ports import NewChange, StoredChange
from flowctl.runtime.api.metrics import Metrics
from flowctl.runtime.daemon.ingest import Ingest
from flowctl.runtime.daemon.worker import Engines, Worker
from flowctl.spec import model as m
from flowctl.spec.config import load_bundle
from flowctl.store.memory import MemoryStore
from flowctl.testing import FrozenClock
from flowctl.testing import write_config as write_files

# Starlette 1.x wants httpx2 for its TestClient and warns (an error under filterwarnings=error)
# when only httpx is installed; the client works the same, so the warning is ignored here only.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
SECRET = "hook-secret"

CONFIG = """
apiVersion: flowctl/v1
kind: Config
metadata: {name: test}
spec:
  timezone: Asia/Ho_Chi_Minh
  limits: {request_bytes: 4096, fields_per_record: 20}
"""

OBJECTS = """
apiVersion: flowctl/v1
kind: ObjectType
metadata: {name: deal}
spec:
  fields:
    title: {type: string, required: true}
    amount: {type: money}
    quantity: {type: integer}
    phone: {type: phone}
    contract_no: {type: string}
    delivery_address: {type: string}
    details: {type: json}
"""

PIPELINE = """
apiVersion: flowctl/v1
kind: Pipeline
metadata: {name: sales}
spec:
  object: deal
  stages:
    - id: new
    - id: documents
      fields: [contract_no, delivery_address]
    - {id: won, final: success}
"""

SOURCES = """
apiVersion: flowctl/v1
kind: Source
metadata: {name: crm}
spec:
  type: webhook
  path: /hooks/crm
  secret: "${HOOK_SECRET}"
  max_bytes: 2048
  map:
    object: "{{ payload.entity }}"
    id: "{{ payload.id }}"
    fields: "{{ payload.data }}"
    event_id: "{{ payload.delivery }}"
---
apiVersion: flowctl/v1
kind: Source
metadata: {name: form}
spec:
  type: webhook
  path: /hooks/form
  auth: bearer
  secret: "${HOOK_SECRET}"
  map:
    object: deal
    id: "form-{{ payload.request_id }}"
    op: put
    fields:
      title: "Website: {{ payload.product }}"
      amount: "{{ payload.amount }}"
      phone: "{{ payload.phone }}"
"""


@dataclass
class FakeService:
    """What ``create_app`` needs (``ServiceView``), built from real parts."""

    bundle: m.Bundle
    store: MemoryStore
    env: Mapping[str, str]
    clock: FrozenClock = field(default_factory=lambda: FrozenClock(T0))
    metrics: Metrics = field(default_factory=Metrics)
    is_ready: bool = True

    def __post_init__(self) -> None:
        self.engine = Engine(self.bundle)
        self.ingest = Ingest(self.store)

    def readiness(self) -> list[str]:
        return [] if self.is_ready else ["the workers are not running"]

    def degraded(self) -> list[str]:
        return []

    def refuse_move(self, record: Record, stage: str, pipeline: str = "") -> str:
        return self.engine.pipelines.refuse_move(record, stage, pipeline)

    def health_report(self) -> dict[str, Any]:
        return {
            "engine": {"mode": "thread", "running": self.is_ready, "version": "test", "problem": "", "restarts": 0},
            "last_reload": None,
            "recent_errors": [],
        }


class FailingStore(MemoryStore):
    """A store whose database is gone for writes."""

    def append_changes(self, changes: Any, inline: Any = None) -> Any:
        raise ConnectionError("database is down")


@dataclass
class Api:
    svc: FakeService
    client: TestClient

    def process(self) -> int:
        """Run the real worker until nothing is left, so records are readable."""
        worker = Worker(self.svc.store, Engines(self.svc.engine), self.svc.clock)
        total = 0
        while done := worker.process_changes():
            total += done
        return total

    def changes(self) -> list[StoredChange]:
        """Every change stored so far, in order."""
        out = []
        seq = 1
        while (change := self.svc.store.change(seq)) is not None:
            out.append(change)
            seq += 1
        return out


class Background:
    """The real worker in a thread of its own, as the daemon runs it, until stopped."""

    def __init__(self, api: Api) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, args=(api,), daemon=True)

    def run(self, api: Api) -> None:
        worker = Worker(api.svc.store, Engines(api.svc.engine), api.svc.clock)
        while not self.stop.wait(0.02):
            worker.run_once()

    def __enter__(self) -> Background:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def write_config(root: Path, files: Mapping[str, str]) -> m.Bundle:
    """Write ``files`` under ``root`` and load them; the config must be valid."""
    loaded = load_bundle(write_files(root, files))
    assert loaded.ok, "\n".join(str(issue) for issue in loaded.errors)
    assert loaded.bundle is not None
    return loaded.bundle


def sign(body: bytes, secret: str = SECRET, timestamp: str | None = None) -> str:
    signed = body if timestamp is None else timestamp.encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


MakeApi = Callable[..., Api]


def new_change(**values: Any) -> NewChange:
    return NewChange(**{"object": "deal", "record_id": "1", "op": "patch", "idempotency_key": "k", **values})
