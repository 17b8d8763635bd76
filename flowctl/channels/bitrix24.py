"""The ``bitrix24`` channel: write-back effects as calls to a Bitrix24 portal's REST API.

What the public documentation describes, and this follows (checked against the documentation
only, not a live portal; see docs/channels.md "Bitrix24"):

* an inbound webhook is a URL ``https://<portal>/rest/<user>/<token>/``; a method is called as
  ``POST <url><method>.json`` with its parameters as the JSON body
  (dev.1c-bitrix.ru/rest_help/rest_sum/index.php);
* the answer is ``{"result": …}`` when the call succeeded, and ``{"error", "error_description"}``
  otherwise (apidocs.bitrix24.com/error-codes.html); too many calls are answered HTTP 503
  ``QUERY_LIMIT_EXCEEDED`` (apidocs.bitrix24.com/limits.html), ``INTERNAL_SERVER_ERROR`` 500;
* the methods: ``crm.deal.update {id, fields}``, ``crm.deal.add {fields}``,
  ``crm.timeline.comment.add {fields: {ENTITY_ID, ENTITY_TYPE, COMMENT}}``,
  ``tasks.task.add {fields: {TITLE, RESPONSIBLE_ID, …}}``.

The engine rendered the method and its parameters (``engine.write_back``); this sender only
calls it and sorts the answer: retried on timeouts, 5xx, ``QUERY_LIMIT_EXCEEDED`` and the other
overload codes, dead-lettered on any other error (a wrong field, a deal that is gone, a webhook
without the scope).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any

import httpx

from flowctl.channels.base import PermanentFailure, Receipt, Secrets, TemporaryFailure, resolve_env, shorten
from flowctl.ports import OutboxRow
from flowctl.spec.model import Channel

__all__ = ["TEMPORARY", "Bitrix24Sender"]

DEFAULT_TIMEOUT = 30.0
#: Error codes worth a retry: the portal is busy or broken for a while, not the call wrong.
TEMPORARY = frozenset({"QUERY_LIMIT_EXCEEDED", "OVERLOAD_LIMIT", "INTERNAL_SERVER_ERROR", "ERROR_UNEXPECTED_ANSWER"})
#: Seconds to wait after QUERY_LIMIT_EXCEEDED: the bucket drains 2 calls a second (limits.html).
RATE_WAIT = 1.0


class Bitrix24Sender:
    """Calls the REST method of each row through the channel's webhook URL; thread-safe."""

    concurrency = 1  # a portal allows about 2 calls a second: one at a time stays under it

    def __init__(self, channel: Channel, env: Mapping[str, str]) -> None:
        self.channel = channel
        self.env = env
        self.timeout = channel.timeout.value.total_seconds() if channel.timeout else DEFAULT_TIMEOUT
        self.secrets = Secrets()
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None

    @property
    def max_attempts(self) -> int:
        return self.channel.max_attempts

    def mask(self, text: str) -> str:
        return self.secrets.mask(text)

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def send(self, row: OutboxRow) -> Receipt:
        method = str(row.payload.get("method") or "")
        params = row.payload.get("params")
        if not method or not isinstance(params, Mapping):
            raise PermanentFailure(f"channel {self.channel.name}: the row has no REST method to call")
        # the webhook URL holds the token: it is a secret, masked out of every message
        base = resolve_env(self.channel.url, self.env, self.secrets).rstrip("/")
        url = f"{base}/{method}.json"
        where = f"channel {self.channel.name}: {method}"
        try:
            response = self._http().post(url, json=dict(params))
        except httpx.TimeoutException:
            raise TemporaryFailure(f"{where}: timed out after {self.timeout:g}s") from None
        except httpx.HTTPError as exc:
            raise TemporaryFailure(self.mask(f"{where}: {type(exc).__name__}: {shorten(str(exc), 200)}")) from None
        return self._outcome(response, where)

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(timeout=self.timeout, follow_redirects=False)
            return self._client

    def _outcome(self, response: httpx.Response, where: str) -> Receipt:
        status = response.status_code
        answer = _answer(response)
        if answer is not None and "error" in answer:
            code = str(answer.get("error") or "")
            reason = self.mask(f"{where}: {code}: {shorten(str(answer.get('error_description') or ''), 160)}")
            if code in TEMPORARY or status >= 500 or status == 429:
                raise TemporaryFailure(reason, retry_after=RATE_WAIT if code == "QUERY_LIMIT_EXCEEDED" else None)
            raise PermanentFailure(reason)
        if status >= 500 or status in (408, 429):
            raise TemporaryFailure(self.mask(f"{where}: HTTP {status}: {shorten(response.text, 160)}"))
        if not 200 <= status < 300 or answer is None or "result" not in answer:
            raise PermanentFailure(self.mask(f"{where}: HTTP {status}: {shorten(response.text, 160)}"))
        return Receipt(f"{where.split(': ', 1)[1]} → {shorten(json.dumps(answer['result']), 60)}")


def _answer(response: httpx.Response) -> dict[str, Any] | None:
    try:
        answer = json.loads(response.content)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None
