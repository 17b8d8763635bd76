"""Leases that outlive a slow batch, and the one-daemon rule of SQLite.

Work is claimed as a row lease (``lease_owner``/``lease_until``): a replica that dies leaves its
leases to run out, and another replica's next claim takes the rows again with ``attempts + 1``.
A batch that takes longer than the lease must not lose its rows to another replica while it is
still working on them, so :class:`LeaseKeeper` keeps the leases of work in hand alive: it sits
between a worker (or the deliverer) and the store, notes what each claim handed out and what
each commit finished, and its heartbeat thread pushes the rest's ``lease_until`` forward every
third of a lease. A process that dies stops beating, so its leases run out within one lease.

PostgreSQL replicas share one database; SQLite has one writer and no row locks, so a second
daemon on the same file is refused at start (:func:`lock_sqlite`).
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from flowctl.engine.state import Timer
from flowctl.ports import Clock, LeaseLost, OutboxRow, Processed, Store, StoredChange
from flowctl.runtime.daemon.ingest import Backoff, StoreHealth
from flowctl.store.delegate import StoreDelegate
from flowctl.store.errors import sqlite_database, unavailable

log = logging.getLogger("flowctl.leases")

#: Claims of one change before it is failed instead of handed out again (each claim's lease ran out).
MAX_CHANGE_ATTEMPTS = 5


class LeaseKeeper(StoreDelegate):
    """A ``Store`` that remembers the leases its caller holds, and a heartbeat that extends them.

    Each kind of work is claimed from one thread and a new claim comes only after the previous
    batch was finished (committed, or abandoned after an error), so a claim replaces what was held
    of that kind: an abandoned batch is never kept alive. (The deliverer claims again while a
    channel is still sending; it names such channels, and their rows stay in hand.) When the store
    failed since that batch was claimed (an outage cut it off), it is handed back instead (its
    leases end now), so its rows are taken again at once, not a lease later; rows the deliverer did
    not start in time it releases itself. Deliveries whose "sent" commit failed are recorded before
    the next claim, not sent again.

    It intercepts the claims and the outcomes of changes, timers and outbox rows (below); every
    other call goes to the wrapped store unchanged (:class:`StoreDelegate`), ``mark_sent`` and
    ``extend_leases`` included. The heartbeat is :meth:`keep_alive`: ``run`` is the store's.
    """

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        owner: str,
        lease_seconds: float,
        max_attempts: int = MAX_CHANGE_ATTEMPTS,
        health: StoreHealth | None = None,
    ) -> None:
        super().__init__(store)
        self.health = health or StoreHealth()
        self._unrecorded: set[int] = set()  # outbox rows sent whose "sent" commit failed
        self._failures_seen = {"changes": 0, "timers": 0, "outbox": 0}  # health.failed_total at each claim
        self.max_attempts = max_attempts
        self.clock = clock
        self.owner = owner
        self.lease_seconds = lease_seconds
        self._lock = threading.Lock()
        self._changes: set[int] = set()
        self._timers: set[str] = set()
        self._outbox: set[int] = set()
        self._outbox_channels: dict[int, str] = {}  # the channel of each outbox row in hand
        self.beats = 0

    # ---- claims: remember what was handed out

    def _cut_off(self, kind: str, held: set[Any]) -> tuple[list[Any], int]:
        """What the previous batch of ``kind`` left unfinished if the store failed since it was
        claimed ([] otherwise), and the failure count to remember with the next batch."""
        failures = self.health.failed_total
        with self._lock:
            return (sorted(held) if failures != self._failures_seen[kind] else []), failures

    def claim_changes(self, limit: int, owner: str, now: datetime, lease_seconds: float) -> list[StoredChange]:
        left, failures = self._cut_off("changes", self._changes)
        if left:
            self.store.extend_leases(owner, now, change_seqs=left)
        claimed = self.store.claim_changes(limit, owner, now, lease_seconds)
        with self._lock:
            self._changes = {c.seq for c in claimed}
            self._failures_seen["changes"] = failures
        return claimed

    def claim_due_timers(self, now: datetime, limit: int, owner: str, lease_seconds: float) -> list[Timer]:
        left, failures = self._cut_off("timers", self._timers)
        if left:
            self.store.extend_leases(owner, now, timer_ids=left)
        claimed = self.store.claim_due_timers(now, limit, owner, lease_seconds)
        with self._lock:
            self._timers = {t.id for t in claimed}
            self._failures_seen["timers"] = failures
        return claimed

    def claim_outbox(
        self, now: datetime, limit: int, owner: str, lease_seconds: float, skip_channels: Sequence[str] = ()
    ) -> list[OutboxRow]:
        """Claim as the store does. Rows of ``skip_channels`` are still being sent (the deliverer
        claims other channels meanwhile), so their leases stay in hand; the others' are replaced."""
        with self._lock:
            unrecorded = sorted(self._unrecorded)
        if unrecorded:  # the channel accepted them: record that, do not send them again
            lost = self.store.mark_sent_many(unrecorded, now, owner=owner)
            if lost:
                log.warning(
                    "%d sent outbox row(s) not marked sent: %s lost their lease to another sender, "
                    "which sends them again (ids %s)",
                    len(lost),
                    owner,
                    lost[:10],
                )
            with self._lock:
                self._unrecorded.difference_update(unrecorded)
                self._outbox.difference_update(unrecorded)
        busy = set(skip_channels)
        with self._lock:
            sending = {i for i in self._outbox if self._outbox_channels.get(i) in busy}
        left, failures = self._cut_off("outbox", self._outbox - sending)
        if left:
            self.store.extend_leases(owner, now, outbox_ids=left)
        claimed = self.store.claim_outbox(now, limit, owner, lease_seconds, skip_channels)
        with self._lock:
            self._outbox = sending | {r.id for r in claimed}
            self._outbox_channels = {i: c for i, c in self._outbox_channels.items() if i in sending}
            self._outbox_channels.update((r.id, r.channel) for r in claimed)
            self._failures_seen["outbox"] = failures
        return claimed

    def release_outbox(self, row_ids: Sequence[int], now: datetime, *, owner: str | None = None) -> None:
        self.store.release_outbox(row_ids, now, owner=owner)
        with self._lock:
            self._outbox.difference_update(row_ids)

    # ---- outcomes: forget what was finished

    def commit_batch(self, items: Sequence[Processed], now: datetime, *, owner: str | None = None) -> None:
        try:
            self.store.commit_batch(items, now, owner=owner)
        except LeaseLost:  # another worker took the batch's leases: not ours to keep alive or hand back
            self._forget(items)
            raise
        self._forget(items)

    def _forget(self, items: Sequence[Processed]) -> None:
        with self._lock:
            self._changes.difference_update(i.change.seq for i in items if i.change is not None)
            self._timers.difference_update(i.timer.id for i in items if i.timer is not None)

    def mark_sent_many(self, row_ids: Sequence[int], now: datetime, *, owner: str | None = None) -> list[int]:
        try:
            lost = self.store.mark_sent_many(row_ids, now, owner=owner)
        except Exception:
            with self._lock:  # recorded before the next claim (the caller still sees the failure)
                self._unrecorded.update(row_ids)
            raise
        with self._lock:
            self._outbox.difference_update(row_ids)
        return lost

    def mark_failed(
        self, row_id: int, error: str, next_attempt_at: datetime | None, now: datetime, *, owner: str | None = None
    ) -> bool:
        marked = self.store.mark_failed(row_id, error, next_attempt_at, now, owner=owner)
        with self._lock:
            self._outbox.discard(row_id)
        return marked

    def hold_outbox_many(
        self, holds: Sequence[tuple[int, datetime, str]], now: datetime, *, owner: str | None = None
    ) -> list[int]:
        lost = self.store.hold_outbox_many(holds, now, owner=owner)
        with self._lock:
            self._outbox.difference_update(row_id for row_id, _, _ in holds)
        return lost

    # ---- the heartbeat

    def held(self) -> tuple[list[int], list[str], list[int]]:
        with self._lock:
            return sorted(self._changes), sorted(self._timers), sorted(self._outbox)

    def beat(self) -> int:
        """Extend every lease still held to a full lease from now; how many rows were extended."""
        changes, timers, outbox = self.held()
        if not (changes or timers or outbox):
            return 0
        until = self.clock.now() + timedelta(seconds=self.lease_seconds)
        self.beats += 1
        return self.store.extend_leases(self.owner, until, change_seqs=changes, timer_ids=timers, outbox_ids=outbox)

    def reap(self) -> int:
        """Fail the changes claimed ``max_attempts`` times whose last lease ran out too (a change
        that kills every worker that takes it must not go round forever)."""
        failed = self.store.fail_exhausted_changes(self.clock.now(), self.max_attempts)
        for change in failed:
            log.error("change %s (%s %s) failed: %s", change.seq, change.object, change.record_id, change.error)
        given_up = self.store.fail_exhausted_timers(self.clock.now(), self.max_attempts)
        for timer in given_up:
            log.error(
                "timer %s of run %s (%s %s) given up after %d claims whose leases all ran out; the run is failed",
                timer.id,
                timer.run_id,
                timer.object,
                timer.record_id,
                self.max_attempts,
            )
        return len(failed) + len(given_up)

    def keep_alive(self, stop: threading.Event, reap: bool = True) -> None:
        """Beat every third of a lease until ``stop`` is set (a missed beat leaves two to spare);
        reap exhausted changes once a lease (unless ``reap`` is False: another process does)."""
        interval = max(self.lease_seconds / 3, 0.05)
        backoff = Backoff(first=min(0.5, interval), cap=min(5.0, interval))
        rounds = 0
        wait = interval
        while not stop.wait(wait):
            rounds += 1
            try:
                self.beat()
                if reap and rounds % 3 == 0:
                    self.reap()
            except Exception as exc:  # try again soon; a lease has two more beats to spare
                if unavailable(exc):
                    self.health.failed("leases", exc)
                else:
                    log.exception("lease heartbeat failed")
                wait = backoff.next()
                continue
            self.health.ok()
            backoff.reset()
            wait = interval


# ------------------------------------------------------------------------------------ SQLite: one daemon


class AnotherDaemon(Exception):
    """A second ``flowctl run`` on the SQLite file another daemon already uses."""

    def __init__(self, database: str, pid: str) -> None:
        super().__init__(
            f"another flowctl run is using {database} (pid {pid or '?'}); SQLite supports one daemon; "
            f"use PostgreSQL for replicas"
        )
        self.database = database
        self.pid = pid


#: How long a starting daemon waits for the lock held by the engine process of a dead daemon.
LOCK_WAIT_SECONDS = 5.0


def _alive(pid: str) -> bool:
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _flock_within(handle: IO[str], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue
        return True
    return False


def lock_sqlite(url: str) -> IO[str] | None:
    """Take ``<db>.lock`` (``flock``, released by the kernel when the process ends, even on
    SIGKILL) for a SQLite URL; None for other databases. Raises :class:`AnotherDaemon`."""
    name = sqlite_database(url)
    if name is None:
        return None
    database = Path(name)
    handle = open(f"{database}.lock", "a+")  # noqa: SIM115 - held open for the life of the daemon
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        pid = handle.read().strip()
        # the daemon that wrote its pid is gone: the lock is its engine process's, which dies
        # with it (a daemon killed a moment ago); wait for that rather than refuse to start
        if _alive(pid) or not _flock_within(handle, LOCK_WAIT_SECONDS):
            handle.close()
            raise AnotherDaemon(str(database), pid) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle
