"""A real HTTP SMS gateway for daemon tests: records every request, and can be told to hold
requests (until released), to hang on some of them, or to answer 503 a number of times."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.conftest import serving


@dataclass
class Request:
    path: str
    key: str  # the Idempotency-Key header
    at: float  # time.monotonic() when it arrived


@dataclass
class Gateway:
    url: str = ""
    requests: list[Request] = field(default_factory=list)
    answered: list[Request] = field(default_factory=list)  # 200, in the order answered
    fail: int = 0  # the next requests answered 503
    hang_every: int = 0  # every Nth request (of any path) hangs ``hang_seconds`` before its answer
    hang_seconds: float = 0.0
    open: threading.Event = field(default_factory=threading.Event)  # cleared: requests wait
    lock: threading.Lock = field(default_factory=threading.Lock)

    def keys(self, prefix: str = "") -> list[str]:
        """The Idempotency-Keys answered 200 whose path starts with ``prefix``."""
        with self.lock:
            return [r.key for r in self.answered if r.path.startswith(prefix)]

    def handle(self, path: str, key: str) -> int:
        request = Request(path, key, time.monotonic())
        with self.lock:
            self.requests.append(request)
            count = len(self.requests)
            failing = self.fail > 0
            if failing:
                self.fail -= 1
        self.open.wait(120)
        if self.hang_every and count % self.hang_every == 0:
            time.sleep(self.hang_seconds)
        if failing:
            return 503
        with self.lock:
            self.answered.append(request)
        return 200


@contextmanager
def serve() -> Iterator[Gateway]:
    gateway = Gateway()
    gateway.open.set()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status = gateway.handle(self.path, self.headers.get("Idempotency-Key", ""))
            body = b'{"ok": true}' if status == 200 else b'{"error": "busy"}'
            try:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass  # the client gave up waiting (its timeout): nothing to answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serving(Handler) as url:
        gateway.url = url
        try:
            yield gateway
        finally:
            gateway.open.set()  # a held request must not keep the server from stopping
