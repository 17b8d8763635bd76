"""Run ``flowctl run`` as a real subprocess that tests can stop, kill and restart."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def real_channels(smtp_port: int, sink: str, extra_fields: str = "") -> str:
    """The documents the daemon tests start from: UTC, a ``deal`` (title, email, phone and
    ``extra_fields``, YAML lines indented four spaces), the ``email`` channel on an SMTP server and
    the ``sms`` channel on an HTTP sink. Append the templates and the pipeline of the test."""
    return f"""\
apiVersion: flowctl/v1
kind: Config
metadata: {{name: main}}
spec: {{timezone: UTC}}
---
apiVersion: flowctl/v1
kind: ObjectType
metadata: {{name: deal}}
spec:
  fields:
    title: {{type: string, required: true}}
    email: email
    phone: phone
{extra_fields}---
apiVersion: flowctl/v1
kind: Channel
metadata: {{name: email}}
spec: {{type: smtp, host: 127.0.0.1, port: {smtp_port}, security: none, from: shop@example.com}}
---
apiVersion: flowctl/v1
kind: Channel
metadata: {{name: sms}}
spec:
  type: http
  url: "{sink}/sms"
  body: {{to: "{{{{ to }}}}", text: "{{{{ text }}}}"}}
---
"""


class Daemon:
    def __init__(self, config: Path, database: str, env: dict[str, str] | None = None,
                 args: tuple[str, ...] = ()) -> None:  # fmt: skip
        self.config = config
        self.database = database
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "FLOWCTL_RETRY_BASE": "0.2", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = config.parent / f"daemon-{self.port}.log"
        self.starts = 0
        self.args = args

    def start(self, timeout: float = 20.0) -> Daemon:
        self.starts += 1
        with self.log.open("ab") as out:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "flowctl", "run", str(self.config), "--db", self.database,
                 "--listen", f"127.0.0.1:{self.port}", *self.args],
                stdout=out, stderr=subprocess.STDOUT, env=self.env,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"daemon not ready after {timeout}s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def terminate(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def put(self, object: str, id: str, fields: dict[str, Any], **extra: Any) -> httpx.Response:
        return httpx.put(f"{self.url}/v1/records/{object}/{id}", json={"fields": fields, **extra}, timeout=30)

    def stop_quietly(self) -> None:
        if self.alive():
            self.kill()
