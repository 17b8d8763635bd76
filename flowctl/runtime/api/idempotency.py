"""Idempotency keys of API writes: the ``Idempotency-Key`` header, keys for writes without one, and
when a reused key is a conflict rather than a repeat.

A write with a key is stored under ``api/<key>`` with the fingerprint of what it asks
(``sources.checks.fingerprint``); the store answers a repeat with the first write's ``seq`` and
fingerprint, so the same key with another request is refused (409), after a restart too. A write
without a key gets one of its own (random per process, then a serial): every such write is new.
"""

from __future__ import annotations

import itertools
import secrets

from starlette.requests import Request

from flowctl.ports import AppendResult, NewChange
from flowctl.sources.errors import BadRequest

MAX_KEY = 255
#: An Idempotency-Key is stored as ``api/<key>``: a Source's name holds no '/', so no webhook key
#: (``<source>:<event_id>``) or polling key can equal one, whatever either side sends
API_KEYS = "api/"


def given_key(request: Request) -> str:
    """The request's Idempotency-Key ('' without one); 400 when it is too long."""
    key = request.headers.get("idempotency-key", "").strip()
    if len(key) > MAX_KEY:
        raise BadRequest(f"Idempotency-Key is at most {MAX_KEY} characters")
    return key


class AutoKeys:
    """Keys for writes sent without an Idempotency-Key: a random prefix per process, then a serial."""

    def __init__(self) -> None:
        self._prefix, self._serial = f"auto-{secrets.token_hex(8)}-", itertools.count()

    def key(self, given: str) -> str:
        """The key to store a write under: ``api/<given>``, or a new one of this process's."""
        return f"{API_KEYS}{given}" if given else f"{self._prefix}{next(self._serial):x}"


def conflicts(change: NewChange, result: AppendResult) -> bool:
    """Whether ``change`` reused a stored key for a different request (changes stored before
    fingerprints were kept have none, and count as repeats)."""
    return (
        result.duplicate
        and bool(change.fingerprint and result.fingerprint)
        and (result.fingerprint != change.fingerprint)
    )
