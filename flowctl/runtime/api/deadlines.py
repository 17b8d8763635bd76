"""Deadlines for writes the store has not taken: a 503 must mean "not stored".

A write waits in the ingest queue for a group commit. When the store is slow or down, the handler
must answer before the client gives up, and answer truthfully: :class:`Deadlines` fails a waiting
write only if it can still take it out of the queue, so a write a commit already holds gets that
commit's real outcome.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Any

COMMIT_TIMEOUT = 30.0


class CommitTimeout(Exception):
    """The store did not take a write in time; it was taken out of the queue, so it is not stored."""


class Deadlines:
    """Fails the writes the store has not taken within ``seconds``: one sweeping task per event
    loop rather than a timer per request. Waiters are watched in the order they were submitted,
    all with the same timeout, so the oldest is always first. A write is failed only if ``cancel``
    takes it out of the ingest queue; one a commit already has gets that commit's real outcome
    (a 503 must mean "not stored": a client retrying without a key would store it twice)."""

    def __init__(self, seconds: float, cancel: Callable[[asyncio.Future[Any]], bool] | None = None) -> None:
        self.seconds = seconds
        self.cancel = cancel
        self.pending: dict[asyncio.AbstractEventLoop, deque[tuple[float, asyncio.Future[Any]]]] = {}

    def watch(self, waiter: asyncio.Future[Any]) -> None:
        loop = waiter.get_loop()
        queue = self.pending.get(loop)
        if queue is None:
            queue = self.pending[loop] = deque()
            loop.create_task(self._sweep(loop, queue))
        queue.append((time.monotonic() + self.seconds, waiter))

    async def _sweep(self, loop: asyncio.AbstractEventLoop, queue: deque[tuple[float, asyncio.Future[Any]]]) -> None:
        try:
            while queue:
                await asyncio.sleep(min(0.5, self.seconds / 4))
                now = time.monotonic()
                while queue and (queue[0][0] <= now or queue[0][1].done()):
                    _, waiter = queue.popleft()
                    if not waiter.done() and (self.cancel is None or self.cancel(waiter)):
                        waiter.set_exception(CommitTimeout())
        finally:
            self.pending.pop(loop, None)
