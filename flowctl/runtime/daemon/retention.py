"""The retention purge: what grows with every change goes once Config ``retention:`` says it is old.

A thread of the engine process (of the one process with ``--processes 1``), off the hot path: no
request and no worker waits for it, and it does not wait for the GIL among the HTTP process's
threads while it holds SQLite's writer lock. It wakes every minute, or sooner when a retention is
short (a quarter of the shortest, at least a second), and removes each kind's old rows a batch per
short transaction, resting after each batch twice as long as it took, so the writers of the hot
path have the SQLite writer lock (or PostgreSQL's I/O) at least two thirds of the time. The batch
follows how long the last one held the lock (``HOLD``): a write that arrives meanwhile waits about
that long. After a purge it gives free pages back to the file system
(``Purging.reclaim_space``). Replicas may all run it: a row goes once.

The cut-offs never go below what a guarantee needs (``cutoffs``): sent messages are kept as long
as a sending policy counts them (``daily_budget``: two days, whatever the time zone; a
``per_recipient`` window), and done care occurrences as long as a care tick could look at their
occurrence again (the longest catch-up ``grace`` plus a day), so each still runs once. What the
store itself never removes (open runs, pending timers, messages that may still go, dead ones, the
newest change of each record) is in ``ports/retention.py``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from flowctl.ports import PURGE_KINDS, Clock, PurgeKind, Purging
from flowctl.runtime.care.scheduler import DEFAULT_GRACE
from flowctl.runtime.delivery.policies import BadRate, parse_rate
from flowctl.spec import model as m

log = logging.getLogger("flowctl.retention")

#: Rows per transaction at most; the purge starts at ``BATCH_START`` and halves or doubles it to
#: hold the lock about ``HOLD`` seconds (500 rows a batch held it 40 ms and raised the p99 of
#: 200 PUTs/s by 26 ms while 1,000,000 runs went; ``bench/bench_purge.py``).
BATCH = 1000
BATCH_START = 100
BATCH_MIN = 50
HOLD = 0.010
#: Seconds between two batches at least, for the hot path's writers.
PAUSE = 0.02
#: After a batch, wait this many times as long as it took: a backlog holds the writer a third of
#: the time at most. (1,000 rows 50 ms apart purged 9,300 runs/s on the loaded 2-core machine; 200
#: rows resting four times as long only 790/s, too close to the 600 rows/s that 200 changes/s leave.)
DUTY = 2.0
#: Bounds of the time between purges (see :func:`every`).
EVERY_MAX = 60.0
EVERY_MIN = 1.0
#: Free pages given back per ``reclaim_space`` call (1 MiB of 4 KiB pages): one short lock hold.
RECLAIM_PAGES = 256
#: Rows purged between two ``reclaim_space`` calls while a backlog goes.
RECLAIM_EVERY = 25_000
#: A day in any time zone, with a daylight-saving change: what a per-day count looks back at most.
TWO_DAYS = timedelta(days=2)


def cutoffs(bundle: m.Bundle, now: datetime) -> dict[PurgeKind, datetime]:
    """Per kind, the moment before which rows go: ``now`` minus its retention, or minus what a
    guarantee needs when that is longer."""
    kept = bundle.config.retention
    return {
        "changes": now - kept.processed_changes,
        "runs": now - kept.finished_runs,
        "messages": now - max(kept.sent_messages, counted_window(bundle)),
        "care": now - max(kept.care_occurrences, catch_up_window(bundle)),
    }


def counted_window(bundle: m.Bundle) -> timedelta:
    """How far back a sending policy counts sent messages (``Outbox.sent_counts``)."""
    longest = timedelta(0)
    for channel in bundle.channels.values():
        policy = channel.policy
        if policy.daily_budget:
            longest = max(longest, TWO_DAYS)
        for text in (policy.per_recipient, policy.rate):
            try:
                rate = parse_rate(text)
            except BadRate:
                continue  # refused by validate; the deliverer says so
            if rate is not None:
                longest = max(longest, TWO_DAYS if rate.per_day else timedelta(seconds=rate.seconds))
    return longest


def catch_up_window(bundle: m.Bundle) -> timedelta:
    """How far back a care tick may look for occurrences (its ``grace``), plus a day for the
    local day of a pin in any time zone."""
    graces = [p.grace.value if p.grace else DEFAULT_GRACE for p in bundle.care.values()]
    return max(graces, default=DEFAULT_GRACE) + timedelta(days=1)


def every(retention: m.Retention) -> float:
    """Seconds between purges: a minute, or a quarter of the shortest retention (tests use 2s)."""
    shortest = min(retention.processed_changes, retention.finished_runs, retention.sent_messages)
    return min(EVERY_MAX, max(EVERY_MIN, shortest.total_seconds() / 4))


def next_size(size: int, took: float, largest: int) -> int:
    """The next batch: smaller when this one held the lock past ``HOLD``, twice as large when it
    took under half of it, between ``BATCH_MIN`` (or ``largest`` if smaller) and ``largest``."""
    if took > HOLD:
        size = int(size * HOLD / took)
    elif took < HOLD / 2:
        size *= 2
    return max(min(BATCH_MIN, largest), min(size, largest))


class RetentionPurge:
    def __init__(self, store: Purging, clock: Clock, *, batch: int = BATCH, pause: float = PAUSE) -> None:
        self.store = store
        self.clock = clock
        self.batch = batch
        self.pause = pause
        self.removed: dict[PurgeKind, int] = dict.fromkeys(PURGE_KINDS, 0)  # since start
        self._warned = 0.0

    def run(self, stopping: threading.Event, bundle: Callable[[], m.Bundle]) -> None:
        """Purge every :func:`every` seconds until ``stopping``; a failed round (the database is
        down) is logged at most every ten minutes and tried again next round."""
        while not stopping.wait(every(bundle().config.retention)):
            try:
                self.purge(bundle(), stopping)
            except Exception as exc:  # noqa: BLE001 - the next round tries again
                if time.monotonic() - self._warned > 600:
                    self._warned = time.monotonic()
                    log.warning("retention purge failed, trying again next round: %s", exc)

    def purge(self, bundle: m.Bundle, stopping: threading.Event | None = None) -> dict[PurgeKind, int]:
        """One round: every kind until caught up (or ``stopping``), then the space back."""
        stop = stopping or threading.Event()
        gone: dict[PurgeKind, int] = dict.fromkeys(PURGE_KINDS, 0)
        size = min(self.batch, BATCH_START)
        reclaimed = 0
        for kind, before in cutoffs(bundle, self.clock.now()).items():
            while not stop.is_set():
                took = time.monotonic()
                removed = self.store.purge(kind, before, size)
                took = time.monotonic() - took
                gone[kind] += removed
                if removed < size:
                    break
                if sum(gone.values()) - reclaimed >= RECLAIM_EVERY:
                    reclaimed = sum(gone.values())
                    self.store.reclaim_space(RECLAIM_PAGES)  # a long backlog gives space back as it goes
                self._rest(stop, took)
                size = next_size(size, took, self.batch)
        if any(gone.values()):
            self._give_back(stop)
            for kind, n in gone.items():
                self.removed[kind] += n
            log.info("retention: purged %s", ", ".join(f"{n} {kind}" for kind, n in gone.items() if n))
        return gone

    def _give_back(self, stop: threading.Event) -> None:
        """Free pages back to the file system, RECLAIM_PAGES per lock hold, until none are left or
        none go (a file without ``auto_vacuum=INCREMENTAL`` keeps its pages: ``flowctl db vacuum``)."""
        took = time.monotonic()
        left = self.store.reclaim_space(RECLAIM_PAGES)
        while left > 0 and not self._rest(stop, time.monotonic() - took):
            took = time.monotonic()
            before, left = left, self.store.reclaim_space(RECLAIM_PAGES)
            if left >= before:
                return

    def _rest(self, stop: threading.Event, took: float) -> bool:
        """Leave the database to the hot path for DUTY times what the last step took (at least
        ``pause``); True when stopping."""
        return stop.wait(max(self.pause, took * DUTY))
