"""The console's test configuration and a small service of real parts (a config loaded from a
directory, the real ``Ingest`` and worker over ``MemoryStore``, a frozen clock), like the HTTP
tests', so pages render what the real engine stored."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.exceptions import StarletteDeprecationWarning

from flowctl.engine.core import Engine
from flowctl.engine.state import Record
from flowctl.runtime.api.metrics import Metrics
from flowctl.runtime.daemon.ingest import Ingest
from flowctl.runtime.daemon.worker import Engines, Worker
from flowctl.spec import model as m
from flowctl.spec.config import load_bundle
from flowctl.store.memory import MemoryStore
from flowctl.testing import FrozenClock
from flowctl.testing import write_config as write_files

with warnings.catch_warnings():  # Starlette 1.x warns when only httpx (not httpx2) is installed
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
TOKEN = "console-test-token-3f9a"  # api_token: admin
VIEWER = "console-viewer-token-77c1"
OPERATOR = "console-operator-token-5d20"
GATEWAY_KEY = "gateway-key-9b1e44"
ENV = {"FLOWCTL_TOKEN": TOKEN, "VIEWER_TOKEN": VIEWER, "OPERATOR_TOKEN": OPERATOR, "GATEWAY_KEY": GATEWAY_KEY}

SECRET_CHANNEL = """\
apiVersion: flowctl/v1
kind: Channel
metadata: {name: sms}
spec:
  type: http
  url: "http://127.0.0.1:9/sms"
  headers: {Authorization: "Bearer ${GATEWAY_KEY}"}
  body: {to: "{{ to }}", text: "{{ text }}"}
"""
XSS = "<img src=x onerror=alert(1)>"


def config(*, token: bool, channels: str = "") -> dict[str, str]:
    """The console's test configuration: deals in a four-stage pipeline whose first stage sends an
    SMS; with ``token``, ``api_token`` from ``${FLOWCTL_TOKEN}``."""
    api_token = (
        '  api_token: "${FLOWCTL_TOKEN}"\n'
        "  access:\n"
        '    - {name: ci, token: "${VIEWER_TOKEN}", role: viewer}\n'
        '    - {name: support, token: "${OPERATOR_TOKEN}", role: operator}\n'
        if token
        else ""
    )
    return {
        "flowctl.yaml": f"""\
apiVersion: flowctl/v1
kind: Config
metadata: {{name: console}}
spec:
  timezone: UTC
{api_token}  users:
    lan: {{full_name: Nguyễn Thị Lan, email: lan@example.com}}
    minh: {{full_name: Lê Quang Minh, email: minh@example.com}}
---
apiVersion: flowctl/v1
kind: ObjectType
metadata: {{name: deal}}
spec:
  label: Cơ hội
  fields:
    title: {{type: string, required: true, label: Tên cơ hội}}
    amount: {{type: money, label: Giá trị}}
    phone: {{type: phone}}
    owner: {{type: user}}
    renewal: {{type: date}}
    referred_by: {{type: ref, object: deal}}
---
apiVersion: flowctl/v1
kind: CareProcess
metadata: {{name: renewal-call}}
spec:
  object: deal
  when: {{anniversary_of: renewal, at: "09:00"}}
  actions:
    - {{action: send_sms, template: thanks, to: "{{{{ record.phone }}}}"}}
""",
        "pipelines/sales.yaml": """\
apiVersion: flowctl/v1
kind: Pipeline
metadata: {name: sales}
spec:
  object: deal
  stages:
    - id: new
      name: New
      rules:
        - name: thank
          action: send_sms
          template: thanks
          to: "{{ record.phone }}"
    - id: proposal
      name: Proposal
      rules:
        - name: remind
          delay: 2d
          action: notify
          to: owner
          text: "Quote {{ record.title }} sent 2 days ago"
    - id: won
      name: Won
      final: success
      rules:
        - {name: celebrate, action: add_note, text: "Won {{ record.title }} <b>{{ record.amount }}</b>"}
    - {id: lost, name: Lost, final: failure}
---
apiVersion: flowctl/v1
kind: Template
metadata: {name: thanks}
spec:
  channel: sms
  text: "Cam on {{ record.title }}"
""",
        "flows/follow.yaml": """\
apiVersion: flowctl/v1
kind: Flow
metadata: {name: follow-up}
spec:
  object: deal
  trigger: {on: created}
  start: check
  nodes:
    check:
      type: branch
      branches:
        - {if: "record.amount", next: wait}
      default: done
    wait: {type: delay, for: 1d, next: again}
    again:
      type: goto
      node: check
      max_visits: 2
      next: done
    done: {type: stop}
""",
        **({"channels/sms.yaml": channels} if channels else {}),
    }


@dataclass
class FakeService:
    """What ``create_app`` needs (``ServiceView``), built from real parts."""

    bundle: m.Bundle
    store: MemoryStore
    env: Mapping[str, str]
    clock: FrozenClock = field(default_factory=lambda: FrozenClock(T0))
    metrics: Metrics = field(default_factory=Metrics)

    def __post_init__(self) -> None:
        self.engine = Engine(self.bundle)
        self.ingest = Ingest(self.store)

    def readiness(self) -> list[str]:
        return []

    def degraded(self) -> list[str]:
        return []

    def refuse_move(self, record: Record, stage: str, pipeline: str = "") -> str:
        return self.engine.pipelines.refuse_move(record, stage, pipeline)

    def health_report(self) -> dict[str, Any]:
        return {
            "engine": {"mode": "thread", "running": True, "version": "test", "problem": "", "restarts": 0},
            "last_reload": None,
            "recent_errors": [],
        }

    def process(self) -> None:
        """Run the real worker until nothing is left."""
        worker = Worker(self.store, Engines(self.engine), self.clock)
        while worker.process_changes():
            pass


def load(root: Path, files: Mapping[str, str]) -> m.Bundle:
    loaded = load_bundle(write_files(root, files))
    assert loaded.ok, "\n".join(str(issue) for issue in loaded.errors)
    assert loaded.bundle is not None
    return loaded.bundle


__all__ = [
    "ENV",
    "OPERATOR",
    "SECRET_CHANNEL",
    "T0",
    "TOKEN",
    "VIEWER",
    "XSS",
    "FakeService",
    "TestClient",
    "config",
    "load",
]
