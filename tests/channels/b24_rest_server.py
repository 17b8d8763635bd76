"""A local Bitrix24 portal's inbound REST webhook, following the documented contract, for tests.

* ``/rest/<user>/<token>/crm.deal.get.json`` and ``crm.contact.get.json`` by GET (query ``id``) or
  POST (JSON or form body ``id``): ``200 {"result": {…}, "time": {…}}`` with the record's fields in
  capitals and numbers as text, as Bitrix24 answers
  (https://dev.1c-bitrix.ru/rest_help/crm/cdeals/crm_deal_get.php).
* A wrong user or token: ``401 {"error": "NO_AUTH_FOUND", …}``; an unknown method: ``404
  ERROR_METHOD_NOT_FOUND``; no ``id``: ``400 {"error": "", "error_description": "ID is not defined
  or invalid."}``; an unknown record: ``400 {"error": "", "error_description": "Not found"}``
  (the error shape is https://apidocs.bitrix24.com/error-codes.html; the status and texts of these
  three are as reported by users, not on the pages read: a live portal should confirm them).
* Scripted trouble, consumed one call at a time: ``limit`` answers ``503 QUERY_LIMIT_EXCEEDED``
  (https://apidocs.bitrix24.ru/limits.html), ``slow`` waits ``slow_seconds`` before answering,
  ``down`` answers ``500 INTERNAL_SERVER_ERROR``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.conftest import serving

USER = "1"
TOKEN = "q1w2e3r4t5y6u7i8"


@dataclass
class Portal:
    url: str = ""
    deals: dict[str, dict[str, Any]] = field(default_factory=dict)
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    trouble: list[str] = field(default_factory=list)  # "limit", "slow", "down": one per call, in order
    slow_seconds: float = 3.0
    calls: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)  # (http method, REST method, params)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def webhook(self) -> str:
        """The inbound webhook's base URL, as Bitrix24 shows it: ends in ``/``."""
        return f"{self.url}/rest/{USER}/{TOKEN}/"

    def answer(self, verb: str, path: str, params: dict[str, str]) -> tuple[int, dict[str, Any], float]:
        parts = path.strip("/").split("/")
        with self.lock:
            method = parts[-1].removesuffix(".json") if parts else ""
            self.calls.append((verb, method, params))
            trouble = self.trouble.pop(0) if self.trouble else ""
        if len(parts) != 4 or parts[0] != "rest" or parts[1] != USER or parts[2] != TOKEN:
            return 401, {"error": "NO_AUTH_FOUND", "error_description": "Wrong authorization data"}, 0
        if trouble == "limit":
            return 503, {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}, 0
        if trouble == "down":
            return 500, {"error": "INTERNAL_SERVER_ERROR", "error_description": "Internal server error"}, 0
        delay = self.slow_seconds if trouble == "slow" else 0.0
        table = {"crm.deal.get": self.deals, "crm.contact.get": self.contacts}.get(method)
        if table is None:
            return 404, {"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"}, delay
        record_id = params.get("id") or params.get("ID") or ""
        if not record_id.isdigit():
            return 400, {"error": "", "error_description": "ID is not defined or invalid."}, delay
        record = table.get(record_id)
        if record is None:
            return 400, {"error": "", "error_description": "Not found"}, delay
        now = time.time()
        timing = {"start": now, "finish": now, "duration": 0.01, "processing": 0.0, "date_start": "", "date_finish": ""}
        return 200, {"result": {"ID": record_id, **record}, "time": timing}, delay


@contextmanager
def b24_portal() -> Iterator[Portal]:
    portal = Portal()

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, verb: str, params: dict[str, str]) -> None:
            status, body, delay = portal.answer(verb, urlsplit(self.path).path, params)
            if delay:
                time.sleep(delay)
            payload = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:  # the client gave up waiting (a timeout test)
                pass

        def do_GET(self) -> None:
            self._reply("GET", dict(parse_qsl(urlsplit(self.path).query)))

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            if "json" in self.headers.get("Content-Type", ""):
                params = {str(k): str(v) for k, v in (json.loads(raw or "{}") or {}).items()}
            else:
                params = dict(parse_qsl(raw))
            self._reply("POST", params)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serving(Handler) as url:
        portal.url = url
        yield portal
