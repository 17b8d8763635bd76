"""Limits on a request's head (request line and header fields), enforced before any handler runs.

uvicorn's httptools protocol buffers a head for as long as the client sends it: eight connections
sending 64 MiB of unfinished headers each took the daemon to 755 MiB, before anything could check
a token. :class:`LimitedHttpTools` counts what a head has taken and answers
``431 Request Header Fields Too Large`` (then closes) once it exceeds ``MAX_HEAD_BYTES`` or holds
more than ``MAX_HEADERS`` fields. Without httptools uvicorn uses h11, bounded by
``h11_max_incomplete_event_size`` (see :func:`server_options`).

The limits are fixed: no client of the API needs more (nginx allows 32 KiB by default, Apache 100
fields). Slow heads, many connections and TLS are a reverse proxy's job: see docs/operations.md.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any

MAX_HEAD_BYTES = 64 * 1024  # request line and every header field, per request
MAX_HEADERS = 100  # header fields per request

log = logging.getLogger("flowctl.http")
_logged = {"at": -math.inf, "unlogged": 0}  # at most one line a minute, however many heads are refused


def _note(client: tuple[str, int] | None, why: str) -> None:
    _logged["unlogged"] += 1
    now = time.monotonic()
    if now - _logged["at"] < 60:
        return
    count, _logged["unlogged"], _logged["at"] = _logged["unlogged"], 0, now
    where = f"{client[0]}:{client[1]}" if client else "a client"
    log.warning(
        "refused %d request head(s) with 431 since the last such line, the latest from %s: %s "
        "(put a reverse proxy in front when the API is exposed: docs/operations.md)",
        count,
        where,
        why,
    )


def _answer(message: str) -> bytes:
    body = json.dumps({"error": {"code": "headers_too_large", "message": message, "details": []}}).encode()
    return (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
    )


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is not installed: uvicorn runs h11, limited by its own option
    LimitedHttpTools: type[Any] | None = None
else:

    class _LimitedHttpTools(HttpToolsProtocol):
        """uvicorn's httptools protocol with a bounded head. Bytes are counted as they arrive
        while a head is incomplete; fields as the parser reports them. After a refusal every
        parser callback of the connection does nothing: no request reaches the app."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._in_head = True
            self._head_bytes = 0
            self._fields = 0
            self._refused = False

        def _refuse(self, why: str) -> None:
            self._refused = True
            _note(self.client, why)
            self.transport.write(_answer(f"{why}; send a smaller request head"))
            self.transport.close()

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            if self._in_head:
                self._head_bytes += len(data)
            super().data_received(data)
            if self._in_head and self._head_bytes > MAX_HEAD_BYTES and not self._refused:
                self._refuse(f"the request line and header fields take more than {MAX_HEAD_BYTES} bytes")

        def on_message_begin(self) -> None:
            if self._refused:
                return
            self._in_head, self._fields = True, 0
            super().on_message_begin()

        def on_url(self, url: bytes) -> None:
            if not self._refused:
                super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            if self._refused:
                return
            self._fields += 1
            if self._fields > MAX_HEADERS:
                self._refuse(f"the request has more than {MAX_HEADERS} header fields")
                return
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            if self._refused:
                return
            self._in_head, self._head_bytes = False, 0
            super().on_headers_complete()

        def on_body(self, body: bytes) -> None:
            if not self._refused:
                super().on_body(body)

        def on_message_complete(self) -> None:
            if self._refused:
                return
            self._in_head, self._head_bytes = True, 0  # what follows is the next request's head
            super().on_message_complete()

    LimitedHttpTools = _LimitedHttpTools


def server_options() -> dict[str, Any]:
    """The ``uvicorn.Config`` options that bound request heads, whichever parser is installed."""
    return {"http": LimitedHttpTools or "h11", "h11_max_incomplete_event_size": MAX_HEAD_BYTES}
