"""The worker: claim a batch of changes or due timers, run the engine, commit it all at once.

Within a batch, later inputs must see what earlier ones decided (two changes of one record, a
rule that starts a flow), so the engine reads through an ``Overlay``: the store underneath, the
batch's own results on top. The batch's records, runs, timers and outbox rows are committed in
the same transaction that marks its changes done (the transactional outbox): a crash before the
commit leaves the changes pending, a crash after leaves nothing to redo.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from flowctl.engine import changes as change_ops
from flowctl.engine.allocation import shift
from flowctl.engine.core import Engine
from flowctl.engine.memory import MemoryState
from flowctl.engine.state import EventReceived, Input, Record, Run, Step, Timer, TimerFired
from flowctl.engine.write_back import echoed
from flowctl.ports import Clock, LeaseLost, OutboxFilter, Processed, RecordState, StoredChange, WorkerStore
from flowctl.runtime.api.metrics import SLOW_BUCKETS, Histogram, Metrics
from flowctl.runtime.daemon.logs import ids

log = logging.getLogger("flowctl.worker")


class Overlay(MemoryState):
    """A StateView over the store that also sees the steps of the current batch."""

    def __init__(self, store: RecordState) -> None:
        super().__init__()
        self.store = store
        self._loaded_records: set[tuple[str, str]] = set()
        self._loaded_runs: set[tuple[str, str]] = set()
        self._loaded_timers: set[str] = set()
        self._loaded_allocations: set[str] = set()
        self.cancelled: set[str] = set()
        self._stored: dict[tuple[str, str], Record | None] = {}  # records as the store has them
        self._written: set[tuple[str, str]] = set()  # records this batch changed
        self._owned: dict[tuple[str, tuple[str, ...], tuple[tuple[str, str], ...]], Mapping[str, int]] = {}

    def prefetch(self, keys: list[tuple[str, str]]) -> None:
        """Load the records and active runs of a whole batch in two queries instead of 2 per input."""
        keys = [k for k in dict.fromkeys(keys) if k not in self._loaded_records]
        if not keys:
            return
        records = self.store.records_of(keys)
        runs = self.store.active_runs_of(keys)
        for key in keys:
            self._loaded_records.add(key)
            self._loaded_runs.add(key)
            self._stored.setdefault(key, records.get(key))
            if key in records and key not in self.records:
                self.records[key] = records[key]
            for run in runs.get(key, ()):
                if run.id not in self.runs:
                    self.runs[run.id] = run
                    self.active.setdefault(key, set()).add(run.id)

    def prefetch_records(self, keys: list[tuple[str, str]]) -> None:
        """Load records (the linked ones the automations read) in one query before the engine runs."""
        keys = [k for k in dict.fromkeys(keys) if k not in self._loaded_records]
        if not keys:
            return
        records = self.store.records_of(keys)
        for key in keys:
            self._loaded_records.add(key)
            self._stored.setdefault(key, records.get(key))
            if key in records and key not in self.records:
                self.records[key] = records[key]

    def record(self, object: str, id: str) -> Record | None:
        key = (object, id)
        if key not in self._loaded_records:
            self._loaded_records.add(key)
            if key not in self.records:
                found = self.store.record(object, id)
                self._stored.setdefault(key, found)
                if found is not None:
                    self.records[key] = found
        return self.records.get(key)

    def put(self, record: Record) -> None:
        """The record as the input being handled left it (written at commit)."""
        self.record(*record.key)  # what the store holds, for open_owned
        self.records[record.key] = record
        self._written.add(record.key)

    def active_runs(self, object: str, id: str) -> list[Run]:
        key = (object, id)
        if key not in self._loaded_runs:
            self._loaded_runs.add(key)
            for run in self.store.active_runs(object, id):
                if run.id not in self.runs:
                    self.runs[run.id] = run
                    self.active.setdefault(key, set()).add(run.id)
        return super().active_runs(object, id)

    def run(self, run_id: str) -> Run | None:
        if run_id not in self.runs:
            found = self.store.run(run_id)
            if found is not None:
                self.runs[run_id] = found
                if found.active:
                    self.active.setdefault((found.object, found.record_id), set()).add(run_id)
        return self.runs.get(run_id)

    def timers_of(self, run_id: str) -> list[Timer]:
        if run_id not in self._loaded_timers:
            self._loaded_timers.add(run_id)
            for timer in self.store.timers_of(run_id):
                if timer.id not in self.cancelled:
                    self.timers[timer.id] = timer
                    self.timers_by_run.setdefault(run_id, set()).add(timer.id)
        return super().timers_of(run_id)

    def allocation(self, rule: str) -> Mapping[str, Any]:
        if rule not in self._loaded_allocations and rule not in self.allocations:
            self._loaded_allocations.add(rule)
            self.allocations[rule] = self.store.allocation(rule)
        return super().allocation(rule)

    def open_owned(self, object: str, users: Sequence[str], final: Collection[tuple[str, str]]) -> Mapping[str, int]:
        """The store's counts (one query per rule and object a batch) plus what the batch changed,
        so two records of one batch are not both handed to the user the store saw least loaded."""
        key = (object, tuple(users), tuple(final))
        stored = self._owned.get(key)
        if stored is None:
            stored = self._owned[key] = self.store.open_owned(object, users, final)
        counts = dict(stored)
        for written in self._written:
            if written[0] == object:
                shift(counts, self._stored.get(written), self.records.get(written), final)
        return counts

    def apply(self, step: Step) -> None:
        self.cancelled.update(step.cancelled_timers)
        for key in step.records:
            self.record(*key)  # what the store holds, for open_owned (already read: no query)
            self._written.add(key)
        super().apply(step)


@dataclass
class Engines:
    """The engine of each configuration version this process knows; runs stay on theirs."""

    current: Engine
    by_version: dict[str, Engine] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_version.setdefault(self.current.version, self.current)

    def for_version(self, version: str) -> Engine:
        return self.by_version.get(version) or self.current

    def use(self, engine: Engine) -> None:
        self.by_version[engine.version] = engine
        self.current = engine

    def release(self, keep: Collection[str]) -> list[str]:
        """Drop the engines of versions not in ``keep`` (nothing open runs on them) but the
        current one; return the versions dropped. Each engine holds a whole bundle: a daemon
        reloaded many times must not hold every version it ever ran."""
        dropped = [v for v in self.by_version if v != self.current.version and v not in keep]
        for version in dropped:
            del self.by_version[version]
        return dropped


def linked_keys(
    engine: Engine, overlay: Overlay, writes: Sequence[tuple[str, str, Mapping[str, Any]]]
) -> list[tuple[str, str]]:
    """The records the batch's records link to and their automations read (``linked.<ref>``),
    from the stored fields and the fields each change writes: loaded before the engine runs."""
    if not engine.links.read:
        return []
    keys: list[tuple[str, str]] = []
    for object, id, fields in writes:
        if object in engine.links.read:
            stored = overlay.record(object, id)
            keys += engine.links.keys(object, {**(stored.fields if stored else {}), **fields})
    return keys


def _log_processed(items: Sequence[Processed], version: str) -> None:
    """A debug line per change processed and run it started or moved on, the ids as fields."""
    for item in items:
        change = item.change
        if change is None or item.error:
            continue
        record = (change.object, change.record_id)
        runs: list[Run | None] = [*item.step.runs_in_order()] or [None]
        for run in runs:
            about = ids(change_seq=change.seq, record=record, config_version=version)
            if run is not None:
                about |= ids(run_id=run.id, automation=run.automation, config_version=run.config_version)
            log.debug("processed %s of %s/%s", change.op, *record, extra=about)


def timer_due(items: Sequence[Processed], now: datetime) -> bool:
    """Whether a batch committed at ``now`` queued a timer already due: the worker loop should look again."""
    return any(t.due <= now for item in items for t in item.step.timers)


#: How long after a write-back a CRM's change repeating its values is taken for its echo.
ECHO_WINDOW = timedelta(minutes=10)


class RefusedChange(Exception):
    """A change the engine's rules refuse at processing time (e.g. a move with empty fields)."""


class Worker:
    def __init__(
        self,
        store: WorkerStore,
        engines: Engines,
        clock: Clock,
        *,
        owner: str = "worker",
        batch: int = 256,
        lease_seconds: float = 60.0,
        on_committed: Callable[[], None] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.engines = engines
        self.clock = clock
        self.owner = owner
        self.batch = batch
        self.lease_seconds = lease_seconds
        # after a commit of changes or timers it ran (claimed, or inline): their messages are queued.
        # It runs before the ingest answers the writes, so it must be quick and must not raise.
        self.on_committed = on_committed
        self.processed = 0
        self.failed = 0
        self.timers_fired = 0
        #: Whether the last round left work it could take at once: a full batch was claimed (more
        #: may wait), or it committed a timer already due. Without it the loop waits for a wake.
        self.more_now = False
        self._due_now = False
        self._counting = threading.Lock()
        self.batch_seconds: Histogram | None = None
        self.to_outbox: Histogram | None = None
        if metrics is not None:
            self.batch_seconds = metrics.histogram(
                "flowctl_engine_batch_seconds",
                "Time the engine took for one batch, from the claim to the commit: changes or timers",
                ("kind",),
            )
            self.to_outbox = metrics.histogram(
                "flowctl_change_to_outbox_seconds",
                "From a change being stored to the commit of the messages it queued (changes that queued any)",
                buckets=SLOW_BUCKETS,
            )

    # ------------------------------------------------------------------ changes

    def to_input(self, overlay: Overlay, change: StoredChange, engine: Engine) -> tuple[Input, Record | None]:
        current = overlay.record(change.object, change.record_id)
        key = f"c{change.seq}"
        if change.op == "event":
            return EventReceived(
                key=key, event=change.event, object=change.object, id=change.record_id, data=dict(change.data)
            ), None
        if change.op == "put":
            rc = change_ops.put(
                key, current, change.object, change.record_id, change.fields, change.stage, change.pipeline
            )
        elif change.op == "patch":
            rc = change_ops.patch(key, current, change.object, change.record_id, change.fields)
        elif change.op == "delete":
            if current is None or current.deleted:
                raise RefusedChange(f"{change.object} {change.record_id} does not exist")
            rc = change_ops.delete(key, current)
        elif change.op == "restore":
            if current is None or not current.deleted:
                state = "does not exist" if current is None else "is not deleted"
                raise RefusedChange(f"{change.object} {change.record_id} {state}: only a deleted record is restored")
            rc = change_ops.restore(key, current)
        else:  # move
            if current is None or current.deleted:
                raise RefusedChange(f"{change.object} {change.record_id} does not exist")
            refusal = engine.pipelines.refuse_move(current, change.stage, change.pipeline)
            if refusal:
                raise RefusedChange(refusal)
            rc = change_ops.move(key, current, change.stage, change.pipeline)
        from_crm = change.source in engine.bundle.sources  # not a person's write (api, console, cli)
        if from_crm and rc.before is not None and rc.after is not None and rc.op == "updated":
            rc = replace(rc, after=self._without_echo(engine, rc.before, rc.after))
        return rc, rc.after

    def _without_echo(self, engine: Engine, before: Record, after: Record) -> Record:
        """``after`` without what only repeats the write-backs flowctl queued for the record in the
        last ``ECHO_WINDOW``: a CRM's late "updated" event never undoes a newer change."""
        obj = engine.bundle.objects.get(after.object)
        spec = obj.write_back if obj is not None else None
        if spec is None:
            return after
        since = self.clock.now() - ECHO_WINDOW
        rows = self.store.outbox_page(OutboxFilter(channel=spec.channel, object=after.object, record_id=after.id))
        written = [
            row.payload["params"]["fields"]
            for row in rows
            if row.action == "write_back"
            and (row.created_at is None or row.created_at >= since)
            and isinstance(row.payload.get("params"), Mapping)
            and isinstance(row.payload["params"].get("fields"), Mapping)
        ]
        return echoed(spec, before, after, written)

    def process_changes(self) -> int:
        started = time.monotonic()
        now = self.clock.now()
        claimed = self.store.claim_changes(self.batch, self.owner, now, self.lease_seconds)
        if not claimed:
            return 0
        items = self.run_changes(claimed, now)
        if not self._commit(items):
            return 0
        self.changes_committed(items, started)
        return len(items)

    def run_changes(self, changes: Sequence[StoredChange], now: datetime) -> list[Processed]:
        """Handle ``changes`` (seq order) through one overlay: what each decided, nothing written.
        A change the rules refuse, or whose handling raised, is an item with its ``error``."""
        overlay = Overlay(self.store)
        overlay.prefetch([(c.object, c.record_id) for c in changes])
        engine = self.engines.current
        overlay.prefetch_records(linked_keys(engine, overlay, [(c.object, c.record_id, c.fields) for c in changes]))
        items: list[Processed] = []
        for change in changes:
            try:
                event, record = self.to_input(overlay, change, engine)
                if record is not None:
                    overlay.put(record)
                step = engine.handle(overlay, event, now)
            except RefusedChange as exc:
                items.append(Processed(change=change, error=str(exc)))
                continue
            except Exception as exc:
                where = ids(
                    change_seq=change.seq, record=(change.object, change.record_id), config_version=engine.version
                )
                log.exception("change %s failed", change.seq, extra=where)
                items.append(Processed(change=change, error=f"{type(exc).__name__}: {exc}"))
                continue
            overlay.apply(step)
            items.append(Processed(change=change, record=record, step=step))
            for problem in step.problems:
                about = ids(change_seq=change.seq, record=(problem.object, problem.record_id), run_id=problem.run_id)
                log.warning("%s %s: %s", problem.object, problem.record_id, problem.message, extra=about)
        return items

    def changes_committed(self, items: Sequence[Processed], started: float) -> None:
        """After the commit of changes this worker ran (claimed, or inline in the ingest's commit):
        the counts, metrics and debug lines. ``started``: ``time.monotonic()`` when the batch began."""
        failed = sum(1 for item in items if item.error)
        self._observe("changes", started, items)
        if log.isEnabledFor(logging.DEBUG):
            _log_processed(items, self.engines.current.version)
        with self._counting:  # the ingest's thread counts what it runs inline (``InlineWorker``)
            self.processed += len(items) - failed
            self.failed += failed
        if self.on_committed is not None:
            self.on_committed()

    # ------------------------------------------------------------------ timers

    def fire_timers(self) -> int:
        started = time.monotonic()
        now = self.clock.now()
        due = self.store.claim_due_timers(now, self.batch, self.owner, self.lease_seconds)
        if not due:
            return 0
        overlay = Overlay(self.store)
        overlay.prefetch([(t.object, t.record_id) for t in due])
        overlay.prefetch_records(linked_keys(self.engines.current, overlay, [(t.object, t.record_id, {}) for t in due]))
        items: list[Processed] = []
        for timer in due:
            run = overlay.run(timer.run_id)
            engine = self.engines.for_version(run.config_version if run else "")
            try:
                step = engine.handle(overlay, TimerFired(key=f"t:{timer.id}", timer=timer), now)
            except Exception as exc:
                log.exception(
                    "timer %s failed", timer.id, extra=ids(record=(timer.object, timer.record_id), run_id=timer.run_id)
                )
                items.append(Processed(timer=timer, error=f"{type(exc).__name__}: {exc}"))
                continue
            overlay.apply(step)
            items.append(Processed(timer=timer, step=step))
        if not self._commit(items):
            return 0
        self._observe("timers", started, items)
        self.timers_fired += len(items)
        if self.on_committed is not None:
            self.on_committed()
        return len(items)

    def _observe(self, kind: str, started: float, items: Sequence[Processed]) -> None:
        """The batch's time, and for each change that queued messages how long after it was stored
        they were committed (the rows carry the commit's time)."""
        if self.batch_seconds is not None:
            self.batch_seconds.observe(time.monotonic() - started, kind=kind)
        if self.to_outbox is not None:
            committed = self.clock.now()
            for item in items:
                change = item.change
                if change is not None and change.received_at is not None and item.step.effects:
                    self.to_outbox.observe(max((committed - change.received_at).total_seconds(), 0.0))

    def _commit(self, items: list[Processed]) -> bool:
        """Commit the batch if this worker still holds its leases (fencing); False when it was
        paused past them and another worker took the work: nothing written, the work is theirs."""
        now = self.clock.now()
        try:
            self.store.commit_batch(items, now, owner=self.owner)  # rows stamped at commit
        except LeaseLost as lost:
            log.warning("%s", lost)
            return False
        self._due_now = self._due_now or timer_due(items, now)
        return True

    def run_once(self) -> int:
        """One round: changes first (they are what users wait for), then due timers; sets
        :attr:`more_now`. A round that took less than a batch of each has taken everything
        claimable when it looked: what was stored since wakes the loop (the ingest's notice)."""
        self._due_now = False
        changes = self.process_changes()
        timers = self.fire_timers()
        self.more_now = changes >= self.batch or timers >= self.batch or self._due_now
        return changes + timers
