"""A local Zalo server that follows the documented ZNS and OA token contract, for tests.

* ``POST /v4/oa/access_token`` (form ``refresh_token``, ``app_id``, ``grant_type=refresh_token``;
  header ``secret_key``): only the newest refresh token is accepted; it is spent, and a new
  ``access_token`` and ``refresh_token`` come back with ``expires_in`` (a string of seconds).
  A spent or unknown token gets ``{"error": -14014, ...}`` (the code is this server's choice: the
  public docs we read do not name the refusal's code).
* ``POST /message/template`` (header ``access_token``; JSON ``phone``, ``template_id``,
  ``template_data``, ``tracking_id``): ``-124`` for an access token that is not the newest or was
  expired with :meth:`ZaloServer.expire`, ``-118`` for a phone in ``no_zalo``, else ``error: 0``.
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

APP_ID = "1234567890"
SECRET_KEY = "zalo-secret-key-1"
FIRST_REFRESH = "rt-0-first"


@dataclass
class ZaloServer:
    url: str = ""
    refresh_token: str = FIRST_REFRESH  # the only one accepted
    access_token: str = ""
    expires_in: int = 90000
    issued: int = 0
    no_zalo: set[str] = field(default_factory=set)
    answer_code: int | None = None  # answer every send with this error code instead
    refreshes: list[str] = field(default_factory=list)  # refresh tokens presented, in order
    refused: list[str] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def zns_url(self) -> str:
        return f"{self.url}/message/template"

    @property
    def token_url(self) -> str:
        return f"{self.url}/v4/oa/access_token"

    def expire(self) -> None:
        """The access token stops working (revoked, or its time ran out on Zalo's side)."""
        with self.lock:
            self.access_token = ""

    def refresh(self, form: dict[str, str], secret_key: str) -> dict[str, Any]:
        with self.lock:
            presented = form.get("refresh_token", "")
            self.refreshes.append(presented)
            if secret_key != SECRET_KEY or form.get("app_id") != APP_ID:
                return {"error": -14002, "error_name": "Invalid app"}
            if form.get("grant_type") != "refresh_token" or presented != self.refresh_token:
                self.refused.append(presented)
                return {"error": -14014, "error_name": "Invalid refresh token", "error_reason": "spent or unknown"}
            self.issued += 1
            self.access_token = f"at-{self.issued}-access"
            self.refresh_token = f"rt-{self.issued}-refresh"
            return {
                "access_token": self.access_token,
                "refresh_token": self.refresh_token,
                "expires_in": str(self.expires_in),
            }

    def message(self, body: dict[str, Any], access_token: str) -> dict[str, Any]:
        with self.lock:
            if not access_token or access_token != self.access_token:
                return {"error": -124, "message": "Access token is invalid"}
            if self.answer_code is not None:
                return {"error": self.answer_code, "message": f"scripted error {self.answer_code}"}
            if body.get("phone") in self.no_zalo:
                return {"error": -118, "message": "Zalo account not existed"}
            self.sent.append(body)
            return {"error": 0, "message": "Success", "data": {"msg_id": f"msg-{len(self.sent)}", "sent_time": "0"}}


@contextmanager
def zalo_server() -> Iterator[ZaloServer]:
    state = ZaloServer()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length).decode()
            if self.path == "/v4/oa/access_token":
                answer = state.refresh(dict(parse_qsl(raw)), self.headers.get("secret_key", ""))
            elif self.path == "/message/template":
                answer = state.message(json.loads(raw or "{}"), self.headers.get("access_token", ""))
            else:
                answer = {"error": -106, "message": "Method unsupported"}
            payload = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serving(Handler) as url:
        state.url = url
        yield state
