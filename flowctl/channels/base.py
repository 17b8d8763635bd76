"""What every channel adapter shares: the ``Sender`` port, its outcomes, and ``${ENV}`` secrets.

A sender turns one outbox row into one message on the wire. It returns a :class:`Receipt` when
the other side accepted the message, and raises :class:`TemporaryFailure` (try again later) or
:class:`PermanentFailure` (dead-letter now) otherwise. The delivery loop decides when to retry.

Secrets live in the environment, never in the config: a channel writes ``${SMTP_PASSWORD}`` and
the sender resolves it with :func:`resolve_env` at send time. Every value resolved that way is
remembered by the sender's :class:`Secrets` and masked out of any message it produces, so no
exception, log line, receipt or stored error ever repeats one.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from flowctl.ports import OutboxRow
from flowctl.spec.env import ENV_REFERENCE, UnsetVariable, env_names, substitute

__all__ = [
    "ENV_REFERENCE",
    "DeliveryError",
    "PermanentFailure",
    "Receipt",
    "Secrets",
    "Sender",
    "TemporaryFailure",
    "env_names",
    "resolve_env",
    "shorten",
]


@dataclass(frozen=True, slots=True)
class Receipt:
    """Proof the other side took the message: ``HTTP 202``, ``250 OK <message-id>``, ``logged``."""

    detail: str


class DeliveryError(Exception):
    """A message that was not delivered; ``reason`` is safe to show and store (secrets masked)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class TemporaryFailure(DeliveryError):
    """Worth retrying: connection refused, timeout, HTTP 5xx/408/429, SMTP 4xx.

    ``retry_after`` is the delay in seconds the other side asked for (``Retry-After``), if any.
    """

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class PermanentFailure(DeliveryError):
    """Retrying cannot help: HTTP 4xx, SMTP 5xx, a missing ``${ENV}``, a broken body template."""


class Sender(Protocol):
    """Delivers one outbox row; thread-safe unless it says otherwise.

    Optional attributes the delivery loop reads when present: ``max_attempts`` (int, the channel's),
    ``concurrency`` (int, how many rows of this channel may be in flight at once, default 1),
    ``timeout`` (seconds one send may take), ``local`` (True when nothing leaves the machine, as
    with ``log``: its rows are recorded sent once per claim instead of one commit each),
    ``send_many(rows)`` (a local sender's rows of one claim at once),
    ``mask(text) -> str`` and ``close()``.
    """

    def send(self, row: OutboxRow) -> Receipt: ...


# --- ${ENV} references --------------------------------------------------------------------------

#: Values shorter than this are not masked: "25" or "on" would garble every message they occur in.
MIN_SECRET_LENGTH = 4


def resolve_env(value: str, env: Mapping[str, str], secrets: Secrets | None = None) -> str:
    """Replace ``${NAME}`` (and ``${NAME:-default}``, used when NAME is unset or empty) from ``env``
    (the grammar is :mod:`flowctl.spec.env`'s).

    Raises :class:`PermanentFailure` naming a variable that is not set and has no default. Every
    substituted value is added to ``secrets`` (when given) so the caller can mask it later.
    """
    try:
        return substitute(value, env, secrets.add if secrets is not None else None)
    except UnsetVariable as exc:
        raise PermanentFailure(str(exc)) from None


class Secrets:
    """The secret values a sender has resolved so far, and the masking of them in text."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()

    def add(self, value: str) -> None:
        if len(value) >= MIN_SECRET_LENGTH and value not in self._values:
            with self._lock:
                self._values.add(value)

    def mask(self, text: str) -> str:
        """``text`` with every known secret replaced by ``***`` (longest first, so none leaks in part)."""
        with self._lock:
            values = sorted(self._values, key=len, reverse=True)
        for value in values:
            if value in text:
                text = text.replace(value, "***")
        return text


def shorten(text: str, limit: int = 80) -> str:
    """One line of at most ``limit`` characters, whitespace collapsed, ``…`` where cut."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
