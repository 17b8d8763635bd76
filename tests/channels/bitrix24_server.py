"""A local Bitrix24 portal that follows the documented REST contract of an inbound webhook, for tests.

* a method is called as ``POST /rest/<user>/<token>/<method>.json`` with its parameters as JSON
  (dev.1c-bitrix.ru/rest_help/rest_sum/index.php); a wrong token is answered 401
  ``INVALID_CREDENTIALS``, a method it does not know 404 ``ERROR_METHOD_NOT_FOUND``
  (apidocs.bitrix24.com/error-codes.html);
* ``crm.deal.update {id, fields}`` answers ``{"result": true}``, 400 ``ERROR_CORE`` ("Not found")
  for a deal it does not have; ``crm.deal.add {fields}`` answers the new id;
  ``crm.timeline.comment.add {fields: {ENTITY_ID, ENTITY_TYPE, COMMENT}}`` the comment's id;
  ``tasks.task.add {fields: {TITLE, …}}`` ``{"result": {"task": {"id": …}}}``;
* ``crm.deal.get`` (GET with query ``id`` or POST ``{id}``) answers ``{"result": {"ID": …, …}}``
  with the deal as the writes left it, 400 "Not found" for one it does not have; these reads are
  kept in ``reads``, apart from ``calls``, so a test counts the writes alone;
* :meth:`Bitrix24Server.busy` makes the next calls answer 503 ``QUERY_LIMIT_EXCEEDED`` ("Too many
  requests"), as the portal does when its request bucket is full (apidocs.bitrix24.com/limits.html).

Every call that reached a method is kept in ``calls`` (refused ones too, in ``refused``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl

from tests.conftest import serving

USER = "1"
TOKEN = "b24hooktoken123"
METHODS = ("crm.deal.update", "crm.deal.add", "crm.timeline.comment.add", "tasks.task.add")


@dataclass
class Bitrix24Server:
    url: str = ""
    deals: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (method, error code)
    reads: list[str] = field(default_factory=list)  # the ids crm.deal.get was asked for
    rate_limited: int = 0  # how many of the next calls get QUERY_LIMIT_EXCEEDED
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def webhook(self) -> str:
        """The inbound webhook URL an administrator copies from the portal."""
        return f"{self.url}/rest/{USER}/{TOKEN}/"

    def busy(self, times: int = 1) -> None:
        with self.lock:
            self.rate_limited += times

    def methods(self) -> list[str]:
        with self.lock:
            return [method for method, _ in self.calls]

    def answer(self, path: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        parts = path.strip("/").split("/")
        if len(parts) != 4 or parts[0] != "rest" or not parts[3].endswith(".json"):
            return 404, {"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"}
        method = parts[3].removesuffix(".json")
        with self.lock:
            if parts[1] != USER or parts[2] != TOKEN:
                self.refused.append((method, "INVALID_CREDENTIALS"))
                return 401, {"error": "INVALID_CREDENTIALS", "error_description": "Invalid request credentials"}
            if self.rate_limited:
                self.rate_limited -= 1
                self.refused.append((method, "QUERY_LIMIT_EXCEEDED"))
                return 503, {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}
            if method == "crm.deal.get":
                return self._read(str(params.get("id") or params.get("ID") or ""))
            if method not in METHODS:
                self.refused.append((method, "ERROR_METHOD_NOT_FOUND"))
                return 404, {"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"}
            fields = params.get("fields")
            if not isinstance(fields, dict):
                self.refused.append((method, "INVALID_ARG_VALUE"))
                return 400, {"error": "INVALID_ARG_VALUE", "error_description": "fields is required"}
            if method == "crm.deal.update" and str(params.get("id")) not in self.deals:
                self.refused.append((method, "ERROR_CORE"))
                return 400, {"error": "ERROR_CORE", "error_description": "Not found"}
            self.calls.append((method, params))
            return 200, {"result": self._perform(method, params, fields), "time": {"start": 0, "finish": 0}}

    def _read(self, deal_id: str) -> tuple[int, dict[str, Any]]:
        self.reads.append(deal_id)
        deal = self.deals.get(deal_id)
        if deal is None:
            return 400, {"error": "", "error_description": "Not found"}
        return 200, {"result": {"ID": deal_id, **deal}, "time": {"start": 0, "finish": 0}}

    def _perform(self, method: str, params: dict[str, Any], fields: dict[str, Any]) -> Any:
        if method == "crm.deal.update":
            deal = self.deals.setdefault(str(params.get("id")), {})
            deal.update(fields)
            return True
        if method == "crm.deal.add":
            new_id = str(1000 + len(self.deals))
            self.deals[new_id] = dict(fields)
            return int(new_id)
        if method == "tasks.task.add":
            return {"task": {"id": str(len(self.calls)), "title": fields.get("TITLE", "")}}
        return len(self.calls)  # crm.timeline.comment.add: the comment's id


@contextmanager
def bitrix24_server() -> Iterator[Bitrix24Server]:
    state = Bitrix24Server()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            self._reply(*state.answer(path, dict(parse_qsl(query))))

        def _reply(self, status: int, answer: dict[str, Any]) -> None:
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode()
            try:
                params = json.loads(raw or "{}")
            except ValueError:
                params = {}
            self._reply(*state.answer(self.path, params if isinstance(params, dict) else {}))

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serving(Handler) as url:
        state.url = url
        yield state
