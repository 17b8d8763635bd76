"""The delivery loop: claim due outbox rows, send each through its channel, record the outcome.

Delivery is at least once: a row is marked sent only after its channel accepted it, so a crash in
between sends it again, with the same idempotency key (Message-ID, ``Idempotency-Key``) for the
receiver to drop. A failure is retried with exponential backoff and full jitter until the
channel's ``max_attempts``; a permanent failure (or the last attempt) dead-letters the row for an
operator to inspect and retry. Every claim counts as an attempt (the store increments
``attempts`` when it claims a row), so a row whose sending crashes the process runs out too.

Each row is marked sent in its own commit as soon as its channel accepted it, and at most
``in_flight`` rows (``limits.sends_in_flight``, default 1) of each channel are between "handed to
the channel" and "recorded sent" at any moment, so a crash resends at most that many messages per
channel. Rows of a ``local`` sender (the ``log`` channel: nothing leaves the machine) are recorded
in one commit per claim, since a second copy harms nobody and a commit per row would cost the
single SQLite writer one fsync per message.

Channels do not wait for each other, even at one message in flight: the rows of one claim are
grouped by channel and each group is sent on its own threads (``concurrency`` lanes per sender,
one per SMTP connection), which share that channel's ``in_flight`` slots. Rows of one recipient
stay in one lane, so they leave in order. Lanes record their own outcomes, so the store must be
thread-safe (both stores are). The loop (:meth:`Deliverer.run`) does not wait for a channel that
is still sending before it claims again: it claims the other channels' rows meanwhile, so a
gateway that hangs holds up its own messages only. Rows a lane did not start within its claim's
time (``lease_seconds`` less the sender's timeout) are released at once, due now and with the
claim's attempt undone, instead of waiting for their lease.

The wall clock may be stepped back (an NTP correction, ``date -s``): rows stored before the step
carry times of the old clock. A pending row is due whatever the clock says (the store claims it
at once); when a round reads an earlier time than the round before, the rows waiting for a retry
or a hold fall due as much earlier (``Store.shift_outbox``), and the rate windows count their
sends as "just now" (``policies.Window``), so nothing waits for the size of the step. A step taken
while no deliverer ran is seen at the first round only through retries due later than any backoff
could put them: they fall due at once (``Store.clamp_retries``).

A channel that cannot be configured (an ``${ENV}`` variable it needs is not set: its sender is
``Unconfigured``) is not an attempt that fails: its rows are held (``held: channel sms:
SMS_GATEWAY_URL is not set``) and checked again every ``CONFIG_HOLD`` seconds, and released at
once when a deliverer has a working sender for it (restarted with the variable set, or a reload
that gives the channel a default), so a configuration error never dead-letters a message.

The loop claims when a commit says it queued messages (:meth:`Deliverer.nudge`), and at its poll
besides; see ``pacing``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import zlib
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flowctl.channels.base import PermanentFailure, Receipt, Sender, TemporaryFailure
from flowctl.ports import Clock, Outbox, OutboxRow
from flowctl.runtime.api.metrics import Counter, Histogram, delivery_metrics
from flowctl.runtime.daemon.ingest import Backoff, StoreHealth, unavailable
from flowctl.runtime.daemon.logs import outbox_ids
from flowctl.runtime.delivery import policies as policies_
from flowctl.runtime.delivery.pacing import Pacing
from flowctl.spec.model import SendPolicy

log = logging.getLogger("flowctl.delivery")

POLL_INTERVAL = 1.0
#: Rows claimed per ``in_flight`` slot: every claim counts as an attempt, so a process killed
#: again and again must not keep claiming (and using up) rows it never gets to.
CLAIM_PER_SLOT = 10
#: Rows a claim takes when every channel is local (``log``): two commits per claim, whatever its size.
LOCAL_BATCH = 500
MAX_WORKERS = 16
DEFAULT_SEND_TIMEOUT = 30.0
#: Seconds a row of a channel that cannot be configured is held before it is looked at again.
CONFIG_HOLD = 60.0
CONFIG_HELD = "held: channel "  # how the reason of such a hold starts
#: Seconds the wall clock may read earlier than at the previous round before it counts as stepped back.
CLOCK_STEP = 2.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one row: sent (``receipt``), failed (``error``), or not tried (neither)."""

    row: OutboxRow
    receipt: Receipt | None = None
    error: str = ""
    permanent: bool = False
    retry_after: float | None = None
    held_until: datetime | None = None  # over the channel's rate at the moment of sending

    @property
    def tried(self) -> bool:
        return self.receipt is not None or bool(self.error) or self.held_until is not None


class Deliverer:
    """Delivers due outbox rows through ``senders`` (channel name → sender).

    ``clock`` gives every timestamp; nothing in :meth:`deliver_once` sleeps, so tests drive it
    with a fake clock. ``owner`` names this process in the store's claims.
    """

    def __init__(
        self,
        store: Outbox,
        senders: Mapping[str, Sender],
        clock: Clock,
        *,
        owner: str,
        rng: random.Random,
        batch: int = 100,
        lease_seconds: float = 60,
        base_delay: float = 2.0,
        max_delay: float = 3600.0,
        max_attempts_default: int = 8,
        max_workers: int = MAX_WORKERS,
        in_flight: int = 1,
        policies: Mapping[str, SendPolicy] | None = None,
        timezone: str = "UTC",
        metrics: Any = None,
    ) -> None:
        self.store = store
        self.senders = senders
        self.clock = clock
        self.owner = owner
        self.rng = rng
        self.batch = batch
        self.lease_seconds = lease_seconds
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_attempts_default = max_attempts_default
        self.max_workers = max_workers
        self.in_flight = max(1, in_flight)  # a reload may change it; a round picks it up at its start
        self._slots: dict[str, threading.BoundedSemaphore] = {}  # per channel: in_flight each
        self._slot_count = self.in_flight
        self._busy: dict[str, list[Future[None]]] = {}  # channel -> its lanes still sending
        self._pacing = Pacing()  # when the loop starts its next round
        self._executor: ThreadPoolExecutor | None = None
        self.policies = {name: p for name, p in (policies or {}).items() if policies_.active(p)}
        self.timezone = timezone
        self._send_seconds = 0.0  # how long a send takes, on average lately (0: not known yet)
        self.last_limit = batch  # what the last round could claim: a round that got fewer waits
        self._windows: dict[tuple[str, str], policies_.Window] = {}
        self._windows_lock = threading.Lock()
        self.outcomes: Counter | None = None
        self.delivery_seconds: Histogram | None = None  # queued → accepted, and the send call alone
        self.send_seconds: Histogram | None = None
        self._working: frozenset[str] | None = None  # channels with a working sender, at the last release
        self._reported: set[str] = set()  # unconfigured channels already logged
        self._last_round: datetime | None = None  # the clock at the previous round: a later one reads no earlier
        if metrics is not None:
            self.outcomes, self.delivery_seconds, self.send_seconds = delivery_metrics(metrics)

    # ---- one round

    def deliver_once(self) -> int:
        """Claim the due rows, send them, record each outcome; the number of rows claimed.
        Returns when every row claimed (now or by an earlier :meth:`_start`) has its outcome."""
        try:
            return self._start()
        finally:
            self._finish(block=True)

    def _start(self) -> int:
        """Claim the due rows of the channels not still sending and start sending them; the
        number of rows claimed. A lane that failed since the last call raises here."""
        self._pacing.round_started()
        self._finish(block=False)
        claimed_at = self.clock.now()
        self._notice_step_back(claimed_at)
        self._release_fixed(claimed_at)
        self.last_limit = self._claim_size()
        busy = sorted(self._busy)
        if busy:
            rows = self.store.claim_outbox(claimed_at, self.last_limit, self.owner, self.lease_seconds, busy)
        else:
            rows = self.store.claim_outbox(claimed_at, self.last_limit, self.owner, self.lease_seconds)
        if not rows:
            return 0
        claimed = len(rows)
        rows = self._screen(rows, claimed_at)
        if not rows:
            return claimed
        lanes: list[tuple[Sender | None, list[OutboxRow]]] = []
        by_channel: dict[str, list[OutboxRow]] = {}
        for row in rows:
            by_channel.setdefault(row.channel, []).append(row)
        for channel, group in by_channel.items():
            sender = self.senders.get(channel)
            count = max(1, int(getattr(sender, "concurrency", 1))) if sender is not None else 1
            split: list[list[OutboxRow]] = [[] for _ in range(min(count, len(group)))]
            for row in group:  # one recipient, one lane: their messages keep their order
                split[zlib.crc32((row.recipient or row.key).encode()) % len(split)].append(row)
            lanes += [(sender, lane) for lane in split if lane]

        if self._slot_count != self.in_flight:  # a reload changed it; running lanes keep theirs
            with self._windows_lock:
                self._slots, self._slot_count = {}, self.in_flight
        local = [(sender, lane) for sender, lane in lanes if getattr(sender, "local", False)]
        if local:
            lanes = [(sender, lane) for sender, lane in lanes if not getattr(sender, "local", False)]
            self._send_local(local, claimed_at)
        executor = self._pool() if lanes else None
        for sender, lane in lanes:
            assert executor is not None
            future = executor.submit(self._lane, sender, lane, claimed_at)
            self._busy.setdefault(lane[0].channel, []).append(future)
            future.add_done_callback(self._pacing.lane_finished)
        return claimed

    def _finish(self, block: bool) -> None:
        """Forget the channels whose lanes are done (all of them, waiting, when ``block``) and
        raise the first failure of a lane among them."""
        failure: BaseException | None = None
        for channel, futures in list(self._busy.items()):
            if block:
                wait(futures)  # every lane done before a failure ends the round: none may still be sending
            if all(future.done() for future in futures):
                del self._busy[channel]
                failure = failure or next((f.exception() for f in futures if f.exception()), None)
        if failure is not None:
            raise failure

    def _send_local(self, lanes: list[tuple[Sender | None, list[OutboxRow]]], claimed_at: datetime) -> None:
        """Send the rows of local senders and record the sent ones in one commit."""
        sent: list[OutboxRow] = []
        for sender, lane in lanes:
            send_many = getattr(sender, "send_many", None)
            if send_many is not None and self._window(lane[0].channel) is None:
                send_many(lane)  # the log channel: every line in one write; it cannot fail
                sent += lane
                continue
            for n, row in enumerate(lane):
                outcome = self._attempt(row, sender, claimed_at)
                if outcome.receipt is not None:
                    sent.append(row)
                elif not outcome.tried:
                    self._release(lane[n:])
                    break
                else:
                    self._record(outcome)
        if sent:
            now, debug = self.clock.now(), log.isEnabledFor(logging.DEBUG)
            lost = set(self.store.mark_sent_many([row.id for row in sent], now, owner=self.owner))
            self._lost("sent", sorted(lost))
            for row in sent:
                if row.id not in lost:
                    self._count(row.channel, "sent")
                    self._delivered(row, now)
                    if debug:
                        log.debug("sent %s %s via %s", row.action, row.key, row.channel, extra=outbox_ids(row))

    def _screen(self, rows: list[OutboxRow], now: datetime) -> list[OutboxRow]:
        """The rows that may go now. A row claimed more often than its channel allows attempts
        (every replica that took it died while sending) is dead-lettered without another try;
        a row its channel's policy refuses now is held until the time it allows."""
        keep: list[OutboxRow] = []
        for row in rows:
            limit = self._max_attempts(row.channel)
            if row.attempts > limit:
                error = f"gave up after {row.attempts - 1} attempts: the sender's lease ran out (it died or hung)"
                if self.store.mark_failed(row.id, error, None, now, owner=self.owner):
                    self._count(row.channel, "dead")
                    log.warning("dead %s %s via %s: %s", row.action, row.key, row.channel, error, extra=outbox_ids(row))
                else:
                    self._lost("dead", [row.id])
            else:
                keep.append(row)
        keep = self._hold_unconfigured(keep, now)
        if not self.policies:
            return keep
        holds: list[tuple[int, datetime, str]] = []
        go: list[OutboxRow] = []
        by_channel: dict[str, list[OutboxRow]] = {}
        for row in keep:
            by_channel.setdefault(row.channel, []).append(row)
        day_zone = policies_.zone(self.timezone)
        for channel, group in by_channel.items():
            policy = self.policies.get(channel)
            if policy is None:
                go += group
                continue
            window = self._window(channel)
            free = window.free(now) if window is not None else len(group)
            going, over = 0, list[OutboxRow]()
            since = policies_.day_start(now, day_zone)
            cap_since = policies_.cap_since(policy, now, day_zone)
            sent_today, to_recipient = 0, dict[str, int]()
            if policy.daily_budget:
                sent_today, _ = self.store.sent_counts(channel, since)
            if cap_since is not None:
                _, to_recipient = self.store.sent_counts(channel, cap_since, [r.recipient for r in group])
            for row in group:
                tz = policies_.recipient_zone(row.payload, policy, self.timezone)
                hold = policies_.check(
                    policy,
                    now,
                    tz=tz,
                    day_zone=day_zone,
                    sent_today=sent_today,
                    sent_to_recipient=to_recipient.get(row.recipient, 0),
                )
                if hold is None and going >= free:
                    over.append(row)  # the rate's free slots are taken: held below, until its slot
                    continue
                if hold is not None:
                    holds.append((row.id, hold.until, hold.reason))
                    self._count(channel, "held")
                    continue
                sent_today += 1  # counted as it goes: a failed send only makes the round stricter
                if row.recipient:
                    to_recipient[row.recipient] = to_recipient.get(row.recipient, 0) + 1
                go.append(row)
                going += 1
            if over and window is not None:
                for row, until in zip(over, window.slots(now, going, len(over)), strict=True):
                    holds.append((row.id, until, self._rate_reason(channel, until)))
                    self._count(channel, "held")
        if holds:
            self._lost("held", self.store.hold_outbox_many(holds, now, owner=self.owner))
            log.info("held %d message(s) by sending policy; first: %s", len(holds), holds[0][2])
        return sorted(go, key=lambda row: row.id)

    def _hold_unconfigured(self, rows: list[OutboxRow], now: datetime) -> list[OutboxRow]:
        """Hold the rows of channels that cannot be configured; the others may go."""
        keep, holds = [], []
        for row in rows:
            why = getattr(self.senders.get(row.channel), "unconfigured", "")
            if not why:
                keep.append(row)
                continue
            holds.append((row.id, now + timedelta(seconds=CONFIG_HOLD), f"held: {why}"))
            self._count(row.channel, "held")
            if row.channel not in self._reported:
                self._reported.add(row.channel)
                log.warning("held: %s; its messages wait until it is set (restart flowctl run with it)", why)
        if holds:
            self._lost("held", self.store.hold_outbox_many(holds, now, owner=self.owner))
        return keep

    def _notice_step_back(self, now: datetime) -> None:
        """When the clock reads earlier than at the previous round, it was stepped back: rows
        waiting until a time of the old clock fall due as much earlier (never before now)."""
        last, self._last_round = self._last_round, now
        if last is None:  # a step while no deliverer ran: no retry waits longer than any backoff
            clamped = self.store.clamp_retries(self.max_delay, now)
            if clamped:
                log.warning(
                    "%d message(s) waited for a retry later than any backoff (the clock went back "
                    "since they were stored); they are due now",
                    clamped,
                )
            return
        step = (last - now).total_seconds()
        if step <= CLOCK_STEP:
            return
        moved = self.store.shift_outbox(step, now)
        log.warning(
            "the clock went back %.0fs (from %s to %s); %d waiting message(s) moved as much earlier",
            step,
            last.isoformat(),
            now.isoformat(),
            moved,
        )

    def _release_fixed(self, now: datetime) -> None:
        """Rows held because their channel could not be configured go out now if it can be: at the
        first round (a restart with the variable set) and whenever the senders change (a reload)."""
        senders = list(self.senders.items())  # a reload updates the dict from another thread
        working = frozenset(name for name, sender in senders if not getattr(sender, "unconfigured", ""))
        if working == self._working:
            return
        released = self.store.release_held(sorted(working), CONFIG_HELD, now)
        self._working = working
        self._reported &= set(self.senders) - working
        if released:
            log.info("releasing %d held message(s): their channel is configured now", released)

    def _observe(self, seconds: float, channel: str) -> None:
        if self.send_seconds is not None:
            self.send_seconds.observe(seconds, channel=channel)
        with self._windows_lock:
            self._send_seconds = seconds if not self._send_seconds else 0.8 * self._send_seconds + 0.2 * seconds

    def _claim_size(self) -> int:
        """Claim no more than the ``in_flight`` slots can send within half a lease, at the pace
        sends have lately taken: rows claimed but not started in time wait a whole lease."""
        with self._windows_lock:
            pace = self._send_seconds
        if self.senders and all(getattr(s, "local", False) for s in self.senders.values()):
            return LOCAL_BATCH  # local sends take microseconds; each claim costs a commit, so take many
        most = min(self.batch, self.in_flight * CLAIM_PER_SLOT)
        if pace <= 0:
            return most
        return max(1, min(most, int(self.lease_seconds / 2 / pace) * self.in_flight))

    def _window(self, channel: str) -> policies_.Window | None:
        """The send times of a channel with a ``rate`` (kept per rate, so a reload that changes
        it starts afresh); None without one."""
        policy = self.policies.get(channel)
        rate = policies_.parse_rate(policy.rate) if policy is not None else None
        if policy is None or rate is None:
            return None
        with self._windows_lock:
            return self._windows.setdefault((channel, policy.rate), policies_.Window(rate))

    def _rate_reason(self, channel: str, until: datetime) -> str:
        policy = self.policies.get(channel)
        return f"{policies_.RATE_HOLD} {policy.rate if policy else ''}; until {until.isoformat()}"

    def _delivered(self, row: OutboxRow, now: datetime) -> None:
        if self.delivery_seconds is not None and row.created_at is not None:
            waited = (now - row.created_at).total_seconds()
            self.delivery_seconds.observe(max(waited, 0.0), channel=row.channel)

    def _count(self, channel: str, result: str) -> None:
        if self.outcomes is not None:
            self.outcomes.inc(channel=channel, result=result)

    def _lane(self, sender: Sender | None, rows: list[OutboxRow], claimed_at: datetime) -> None:
        """Send one lane's rows in order; a row takes one of its channel's ``in_flight`` slots
        from before it is handed to the channel until its outcome is committed. The rows left
        when the claim's time ran out are released at once."""
        with self._windows_lock:
            slots = self._slots.setdefault(rows[0].channel, threading.BoundedSemaphore(self._slot_count))
        for n, row in enumerate(rows):
            with slots:
                outcome = self._attempt(row, sender, claimed_at)
                if outcome.tried:
                    self._record(outcome)
                    continue
            self._release(rows[n:])
            return

    def _release(self, rows: list[OutboxRow]) -> None:
        """Hand back rows a claim did not get to: due now, the claim's attempt undone."""
        self.store.release_outbox([row.id for row in rows], self.clock.now(), owner=self.owner)
        log.info(
            "released %d message(s) of %s not started within their claim's time; they go in the next round",
            len(rows),
            rows[0].channel,
        )

    def _attempt(self, row: OutboxRow, sender: Sender | None, claimed_at: datetime) -> Outcome:
        """Send one row; never raises for the row's own failures."""
        if sender is None:
            return Outcome(row=row, error=str(PermanentFailure(f"no channel named {row.channel}")), permanent=True)
        # A send that could outlast our lease could run beside another claim of the same row:
        # rows not started in time stay claimed until the lease ends, then go out in a later claim.
        timeout = float(getattr(sender, "timeout", DEFAULT_SEND_TIMEOUT))
        budget = max(self.lease_seconds - timeout, self.lease_seconds / 2)
        if self.clock.now() >= claimed_at + timedelta(seconds=budget):
            return Outcome(row=row)
        window = self._window(row.channel)
        if window is not None:  # the rate counts sends when they happen, not when they were planned
            now = self.clock.now()
            with self._windows_lock:
                wait = window.take(now)
            if wait > 0:
                return Outcome(row=row, held_until=now + timedelta(seconds=wait))
        try:
            started = time.monotonic()
            try:
                return Outcome(row=row, receipt=sender.send(row))
            finally:
                self._observe(time.monotonic() - started, row.channel)
        except PermanentFailure as exc:
            return Outcome(row=row, error=exc.reason, permanent=True)
        except TemporaryFailure as exc:
            return Outcome(row=row, error=exc.reason, retry_after=exc.retry_after)
        except Exception as exc:  # noqa: BLE001 - a sender's bug must not take the loop down
            mask = getattr(sender, "mask", str)
            return Outcome(row=row, error=mask(f"unexpected {type(exc).__name__}: {exc}"))

    def _record(self, outcome: Outcome) -> None:
        """Commit what became of one row. A sent row is marked in its own commit: a crash before
        it resends that one row with the same Message-ID / Idempotency-Key, for the receiver to drop."""
        row = outcome.row
        if outcome.held_until is not None:
            reason = self._rate_reason(row.channel, outcome.held_until)
            if self._lost(
                "held",
                self.store.hold_outbox_many([(row.id, outcome.held_until, reason)], self.clock.now(), owner=self.owner),
            ):
                return
            self._count(row.channel, "held")
            return
        if not outcome.tried:
            self._release([row])
            return
        now = self.clock.now()
        where = f"{row.action} {row.key} via {row.channel}"
        if outcome.receipt is not None:
            if self._lost("sent", self.store.mark_sent_many([row.id], now, owner=self.owner)):
                return
            self._count(row.channel, "sent")
            self._delivered(row, now)
            log.debug("sent %s: %s", where, outcome.receipt.detail, extra=outbox_ids(row))
            return
        attempts = max(row.attempts, 1)  # the claim counted this attempt
        limit = self._max_attempts(row.channel)
        if outcome.permanent or attempts >= limit:
            error = outcome.error if outcome.permanent else f"gave up after {attempts} attempts: {outcome.error}"
            if not self.store.mark_failed(row.id, error, None, now, owner=self.owner):
                self._lost("dead", [row.id])
                return
            self._count(row.channel, "dead")
            log.warning("dead %s: %s", where, error, extra=outbox_ids(row))
            return
        delay = self.backoff(attempts, outcome.retry_after)
        if not self.store.mark_failed(row.id, outcome.error, now + timedelta(seconds=delay), now, owner=self.owner):
            self._lost("retry", [row.id])
            return
        self._count(row.channel, "retry")
        log.info(
            "retry %s in %.0fs (attempt %d of %d): %s",
            where,
            delay,
            attempts,
            limit,
            outcome.error,
            extra=outbox_ids(row),
        )

    def _lost(self, outcome: str, row_ids: list[int]) -> bool:
        """Log rows not marked ``outcome`` because this sender lost their lease (it was paused past
        it and another sender claimed them: theirs to record); True when there were any."""
        if row_ids:
            log.warning(
                "%d outbox row(s) not marked %s: %s lost their lease to another sender, whose outcome stands (ids %s)",
                len(row_ids),
                outcome,
                self.owner,
                row_ids[:10],
            )
        return bool(row_ids)

    def backoff(self, attempts: int, retry_after: float | None = None) -> float:
        """Seconds before the next try after ``attempts`` failures: full jitter, at least
        ``base_delay / 2``, at least what the server asked for (capped at ``max_delay``)."""
        ceiling = min(self.max_delay, self.base_delay * 2.0 ** min(attempts, 64))
        delay = max(self.base_delay / 2, ceiling * self.rng.random())
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_delay))
        return delay

    def _max_attempts(self, channel: str) -> int:
        value = getattr(self.senders.get(channel), "max_attempts", None)
        return int(value) if value else self.max_attempts_default

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.max_workers, thread_name_prefix="flowctl-delivery")
        return self._executor

    # ---- the loop

    def run(
        self, stop: threading.Event, poll_interval: float = POLL_INTERVAL, health: StoreHealth | None = None
    ) -> None:
        """Deliver until ``stop`` is set; waits ``poll_interval`` whenever a round claimed fewer
        rows than it could. A failed round waits with a growing backoff; a database outage is
        reported through ``health`` (once, with the other threads) instead of a traceback a round.
        The round in progress finishes before it returns."""
        backoff = Backoff()
        try:
            while not stop.is_set():
                try:
                    claimed = self._start()
                except Exception as exc:  # logged below; the loop must go on
                    delay = backoff.next()
                    if health is not None and unavailable(exc):
                        health.failed("delivery", exc)
                    else:
                        log.exception("delivery round failed; trying again in %.1fs", delay)
                    stop.wait(delay)
                    continue
                backoff.reset()
                if health is not None:
                    health.ok()
                if claimed < self.last_limit:  # a full claim: more may be due at once
                    self._pacing.pause(stop, poll_interval)
        finally:
            self.close()

    def nudge(self) -> None:
        """Messages were just committed to the outbox: claim them soon, not at the next poll (see
        ``pacing``). Any thread may call it."""
        self._pacing.nudge()

    def close(self) -> None:
        """Stop the worker threads (the senders belong to whoever built them)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        self._busy.clear()
