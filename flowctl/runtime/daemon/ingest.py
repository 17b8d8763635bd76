"""Group commit for accepted writes: many requests, one transaction, every answer after commit.

HTTP handlers hand a ``NewChange`` to ``Ingest.submit_async`` and await the future; one writer
thread drains whatever is queued, appends it in one transaction and resolves the futures. When
nothing else is queued the batch is that one change, so latency at low load stays one commit.
The asyncio futures of a batch are resolved by one call into their event loop (not one wake-up
per request); threads use ``submit`` and a ``concurrent.futures.Future``. With ``inline``
(``daemon/inline.py``) the same commit runs the engine over the changes no worker could be
holding back, so they are done, their messages in the outbox, when the commit answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, TypeAlias

from flowctl.ports import AppendResult, ChangeQueue, NewChange

# the store says what an outage is; re-exported for the runtime modules that import them from here
from flowctl.store.errors import StoreUnavailable as StoreUnavailable
from flowctl.store.errors import brief as brief
from flowctl.store.errors import lock_timeout
from flowctl.store.errors import unavailable as unavailable

if TYPE_CHECKING:  # it imports the worker, which imports the metrics, which import this module
    from flowctl.runtime.daemon.inline import InlineWorker

log = logging.getLogger("flowctl.ingest")


class StoreHealth:
    """Whether the store answers, as the daemon's threads see it. While the database is down
    every thread fails every round; the log gets one warning when it goes and one info when it is
    back (with how long and how many attempts failed) instead of a traceback per round and thread.

    A database going down or coming up flaps (a connection not yet cut answers while new ones are
    refused), so it counts as back only once a round succeeds ``settle`` seconds after the last
    failure: one outage, one pair of lines."""

    def __init__(self, logger: logging.Logger | None = None, settle: float = 1.0) -> None:
        self.log = logger or logging.getLogger("flowctl.store")
        self.settle = settle
        self._lock = threading.Lock()
        self.down_since: float | None = None
        self.last_failure = 0.0
        self.failures = 0  # failed attempts in the current outage
        self.failed_total = 0  # ever: a claimer sees whether a failure came since its last claim
        self.outages = 0

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def failed(self, where: str, exc: BaseException) -> None:
        with self._lock:
            self.failures += 1
            self.failed_total += 1
            self.last_failure = time.monotonic()
            if self.down_since is not None:
                self.log.debug("%s: store still unavailable: %s", where, brief(exc))
                return
            self.down_since = self.last_failure
            self.outages += 1
        self.log.warning(
            "store unavailable: %s (seen by %s); writes answer 503, the worker, delivery, timers "
            "and leases retry with backoff until it is back",
            brief(exc),
            where,
        )

    def ok(self) -> None:
        if self.down_since is None:  # the common case: no lock
            return
        with self._lock:
            now = time.monotonic()
            if self.down_since is None or now - self.last_failure < self.settle:
                return
            seconds, failures = now - self.down_since, self.failures
            self.down_since, self.failures = None, 0
        self.log.info("store available again after %.1f s (%d failed attempts); resuming", seconds, failures)


class Backoff:
    """One loop's wait after a failed round: ``first`` doubling up to ``cap`` seconds (with
    jitter, so replicas do not retry in step), back to ``first`` after a round that succeeds."""

    def __init__(self, first: float = 0.5, cap: float = 5.0) -> None:
        self.first = first
        self.cap = cap
        self.delay = first

    def next(self) -> float:
        delay, self.delay = self.delay, min(self.cap, self.delay * 2)
        return delay * random.uniform(0.75, 1.0)

    def reset(self) -> None:
        self.delay = self.first


#: A queued change and who waits for it: a thread's Future, or an asyncio future and its loop.
Pending: TypeAlias = tuple[
    NewChange, "Future[AppendResult] | asyncio.Future[AppendResult]", "asyncio.AbstractEventLoop | None"
]


def _settle(outcomes: list[tuple[asyncio.Future[AppendResult], Any]]) -> None:
    """In the event loop: resolve the waiters of one batch (a timed-out one is already done)."""
    for waiter, outcome in outcomes:
        if waiter.done():
            continue
        if isinstance(outcome, BaseException):
            waiter.set_exception(outcome)
        else:
            waiter.set_result(outcome)


class Ingest:
    def __init__(
        self,
        store: ChangeQueue,
        *,
        max_batch: int = 500,
        on_commit: object = None,
        health: StoreHealth | None = None,
        inline: InlineWorker | None = None,
        hold: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext,
    ) -> None:
        self.store = store
        self.inline = inline
        self.hold = hold  # what the ingest thread runs inside (the store's kept connection)
        self.health = health or StoreHealth()
        self.max_batch = max_batch
        # items are lists: one change from a thread, or what an event loop gathered in one turn
        self.queue: queue.SimpleQueue[list[Pending] | None] = queue.SimpleQueue()
        self._gathering: dict[asyncio.AbstractEventLoop, list[Pending]] = {}  # touched by each loop only
        self.thread = threading.Thread(target=self._loop, name="flowctl-ingest", daemon=True)
        self.on_commit = on_commit  # called after a commit that left changes (or a due timer) to the worker
        self.accepted = 0
        self.duplicates = 0
        # asyncio waiters not yet in a commit: cancel() takes one out, so a write given up on (its
        # HTTP deadline) is never stored after it was answered 503
        self._queued: set[asyncio.Future[AppendResult]] = set()
        self._queued_lock = threading.Lock()
        self.commit_started = 0.0  # time.monotonic() when the commit in progress began (0: none)
        self.last_failure = 0.0  # time.monotonic() of the last commit the store refused (0: it succeeded since)
        self.last_failure_why = ""
        self.last_failure_lock = False  # the last failure waited out the writer lock (another process holds it)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.queue.put(None)
        self.thread.join(timeout=10)

    def submit(self, change: NewChange) -> Future[AppendResult]:
        future: Future[AppendResult] = Future()
        self.queue.put([(change, future, None)])
        return future

    def submit_async(self, change: NewChange) -> asyncio.Future[AppendResult]:
        """From an event loop: a future of that loop, resolved after the commit. Cancelling it
        (a timeout) does not unstore the change."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[AppendResult] = loop.create_future()
        gathered = self._gathering.get(loop)
        if gathered is None:  # the first of this turn of the loop: hand them over at its end
            gathered = self._gathering[loop] = []
            loop.call_soon(self._hand_over, loop)
        gathered.append((change, waiter, loop))
        with self._queued_lock:
            self._queued.add(waiter)
        return waiter

    def cancel(self, waiter: asyncio.Future[AppendResult]) -> bool:
        """Give up on a write of :meth:`submit_async`: True if it will not be stored (it was not in a
        commit yet), False if a commit has it, whose real outcome the waiter will get."""
        with self._queued_lock:
            if waiter in self._queued:
                self._queued.discard(waiter)
                return True
        return False

    def committing_for(self) -> float:
        """Seconds the commit in progress has taken so far (0 when none is in progress)."""
        started = self.commit_started
        return time.monotonic() - started if started else 0.0

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        """The requests of one turn of the event loop go to the writer as one item: one wake-up
        of its thread, not one per request."""
        gathered = self._gathering.pop(loop, None)
        if gathered:
            self.queue.put(gathered)

    def submit_many(self, changes: Sequence[NewChange]) -> list[Future[AppendResult]]:
        return [self.submit(c) for c in changes]

    def _loop(self) -> None:
        with self.hold():
            self._take_batches()

    def _take_batches(self) -> None:
        stopping = False
        while not stopping:
            item = self.queue.get()
            if item is None:
                break
            batch = list(item)
            while len(batch) < self.max_batch:
                try:
                    more = self.queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch += more
            self._commit(batch)

    def _take(self, batch: list[Pending]) -> list[Pending]:
        """The items of ``batch`` still wanted, marked as in a commit (no longer cancellable)."""
        with self._queued_lock:
            kept = []
            for item in batch:
                waiter = item[1]
                if item[2] is None:
                    kept.append(item)
                elif waiter in self._queued:
                    self._queued.discard(waiter)
                    kept.append(item)
            return kept

    def _commit(self, batch: list[Pending]) -> None:
        batch = self._take(batch)
        if not batch:
            return
        self.commit_started = time.monotonic()
        inline = None
        try:
            if self.inline is not None and self.inline.takes(len(batch)):
                inline = self.inline
            changes = [change for change, _, _ in batch]
            results: Sequence[AppendResult | BaseException] = self.store.append_changes(changes, inline)
        except Exception as exc:  # noqa: BLE001 - any database error means "not stored": answer 503
            if unavailable(exc):  # logged once per outage, not once per batch
                self.health.failed("ingest", exc)
            else:
                log.warning("could not store %d changes: %s", len(batch), exc)
            self.last_failure, self.last_failure_why = time.monotonic(), brief(exc)
            self.last_failure_lock = lock_timeout(exc)
            results = [StoreUnavailable(brief(exc)) for _ in batch]
        else:
            self.last_failure = 0.0
            self.health.ok()
        finally:
            self.commit_started = 0.0
        fresh = queued = 0
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[AppendResult], Any]]] = {}
        for (_, future, loop), result in zip(batch, results, strict=True):
            if isinstance(result, AppendResult) and not result.duplicate:
                fresh += 1
                queued += not result.processed
            if loop is not None:
                by_loop.setdefault(loop, []).append((future, result))  # type: ignore[arg-type]
            elif isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
        for loop, outcomes in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_settle, outcomes)
        stored = sum(isinstance(r, AppendResult) for r in results)
        self.accepted += fresh
        self.duplicates += stored - fresh
        due = inline is not None and inline.timer_due()
        if (queued or due) and callable(self.on_commit):
            self.on_commit(queued)
