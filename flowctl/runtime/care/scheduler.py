"""The care scheduler: every minute, find the care occurrences that came due, run each once, commit.

APScheduler is only the wake-up clock here (a minute-aligned cron trigger, with ``coalesce`` and
``misfire_grace_time`` set explicitly and an in-memory job store holding nothing durable). The
database ledger (``care_occurrences``) decides what has run: a tick drops the occurrences the
ledger holds, runs the rest, and commits their ledger rows (a plain INSERT on the primary key, with
the outcome), runs and outbox rows in one transaction. Several replicas may tick at once; the
primary key lets one transaction in per occurrence, and a refused one is run again without what
the other replica committed. Nothing leaves before the commit (the outbox sends), so a replica that
dies mid-tick leaves nothing to clean up. ``claimed`` rows (``Store.claim_occurrences``, as flowctl
did before) are taken over after ``lease_seconds``.

Due records come from the month-day index (``record_dates``) for exactly the days that fire in
the window, so a tick reads what it finds, not the contact table. A tick covers ``(since, now]``:
``since`` is the previous tick, or on start ``now - grace`` for ``on_missed: catch_up`` (runs
missed while the daemon was down happen late, and the log says so) and ``now - slack`` for
``on_missed: skip``. Each tick logs one line per process that had something due or skipped.

Edits take effect tomorrow: the first time a process runs on a local day, the day is pinned to
the config version running then (``care_days``); every occurrence of that process on that day runs
on the pinned version's engine. The pin is in the store, so it holds across restarts and replicas:
a process that does not hold that engine rebuilds it from the version's stored files (else, for a
version stored without them, the current one runs, logged).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time as _time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from flowctl.engine.care import (
    Firing,
    anniversary_in,
    cron_times,
    day_instants,
    due_days,
    firings_on,
    month_days,
    outcome,
    parse_date,
)
from flowctl.engine.core import Engine
from flowctl.engine.state import CareDue, Record, Step
from flowctl.ports import CareOccurrence, Clock, Processed, Store
from flowctl.runtime.daemon.ingest import StoreHealth, unavailable
from flowctl.runtime.daemon.worker import Engines, Overlay
from flowctl.spec import model as m
from flowctl.spec.config import load_bundle_from_files
from flowctl.store.delegate import StoreDelegate

log = logging.getLogger("flowctl.care")

DEFAULT_GRACE = timedelta(hours=24)


@dataclass
class TickReport:
    """What one tick did. ``caught_up``: occurrences run later than ``slack`` after their time."""

    now: datetime
    found: int = 0
    claimed: int = 0
    recovered: int = 0
    committed: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    caught_up: int = 0
    seconds: float = 0.0
    processes: dict[str, ProcessTick] = field(default_factory=dict)


@dataclass
class ProcessTick:
    """One process in one tick: how many firings were due, what ran here, what was skipped.
    ``undated``/``records`` are counted at the process's first tick of each local day."""

    due: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    dst_gap: int = 0  # records whose wall time does not exist today, under ``dst_gap: skip``
    feb29: int = 0  # 29 February anniversaries run on 28 February or 1 March (``feb29``)
    undated: int = 0
    records: int = 0
    counted: bool = False


class CareScheduler:
    def __init__(
        self,
        store: Store,
        engines: Engines,
        clock: Clock,
        *,
        owner: str = "care",
        lease_seconds: float = 300.0,
        batch: int = 5000,
        page: int = 1000,
        slack: timedelta = timedelta(minutes=2),
        health: StoreHealth | None = None,
    ) -> None:
        self.store = store
        self.health = health or StoreHealth()
        self.engines = engines
        self.clock = clock
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.batch = batch
        self.page = page
        self.slack = slack
        self.since: datetime | None = None  # the end of the last tick that committed
        self._lock = threading.Lock()
        self._scheduler: Any = None
        self._missing_versions: set[str] = set()
        self._pins: dict[tuple[str, str], str] = {}  # (process, local day) -> config version
        self._undated: dict[str, tuple[date, int, int]] = {}  # process -> (day, records, undated)

    # ------------------------------------------------------------------ the wake-up clock

    def start(self) -> None:
        """Tick now (the catch-up after downtime), then at second 0 of every minute."""
        from apscheduler.schedulers.background import BackgroundScheduler  # type: ignore[import-untyped]
        from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]

        tz = self.engines.current.tz
        self._scheduler = BackgroundScheduler(timezone=tz)
        # coalesce: wake-ups missed while the machine slept run once; misfire_grace_time: a wake-up
        # late by up to 5 minutes still runs (the 1 s default would drop it). Either way the next
        # tick covers everything since the last one, so a dropped wake-up loses nothing.
        self._scheduler.add_job(
            self.safe_tick,
            CronTrigger(second=0, timezone=tz),
            id="care-tick",
            coalesce=True,
            misfire_grace_time=300,
            max_instances=1,
        )
        # the catch-up tick, at once (a date trigger at APScheduler's own "now")
        self._scheduler.add_job(self.safe_tick, id="care-catch-up", coalesce=True, misfire_grace_time=300)
        self._scheduler.start()

    def stop(self) -> None:
        """Stop waking up; a tick in progress finishes (its commit is one transaction anyway)."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None

    def safe_tick(self) -> None:
        try:
            self.tick()
        except Exception as exc:
            if unavailable(exc):  # the outage is logged once, not once a minute with a traceback
                self.health.failed("care", exc)
            else:
                log.exception("care tick failed; the next one covers the same span again")
            return
        self.health.ok()

    # ------------------------------------------------------------------ one tick

    def tick(self, now: datetime | None = None) -> TickReport:
        """Find what came due in ``(since, now]``, run it, commit it with its ledger rows; advance ``since``."""
        with self._lock, _no_gc_pauses():
            started = _time.perf_counter()
            now = now or self.clock.now()
            report = TickReport(now=now)
            engine = self.engines.current
            found: list[tuple[Firing, m.CareProcess]] = []
            known: dict[tuple[str, str], Record] = {}  # the records read to find them, for the engine
            for process in engine.bundle.care.values():
                if process.enabled:
                    start = self._window_start(process, now)
                    stats = report.processes.setdefault(process.name, ProcessTick())
                    found.extend((f, process) for f in self._find(process, start, now, known, stats))
            found.sort(key=lambda fp: (fp[0].at, fp[1].priority, fp[1].name, fp[0].record_id))
            report.found = len(found)
            at = {(f.process, f.object, f.record_id, f.occurrence): f.at for f, _ in found}
            wanted = self._pinned(found, engine.version, engine.tz)
            won: list[CareOccurrence] = []
            for start_at in range(0, len(wanted), self.batch):
                won += self._run_new(wanted[start_at : start_at + self.batch], known, now, report)
            late = [o for o in won if at[o.key] < now - self.slack]
            if late:
                report.caught_up = len(late)
                first = min(at[o.key] for o in late)
                log.warning(
                    "care: catching up %d occurrences missed while flowctl was not running (the earliest was due %s)",
                    len(late),
                    first.isoformat(),
                )
            recovered = self.store.reclaim_occurrences(self.owner, now, self.lease_seconds, self.batch)
            report.recovered = len(recovered)
            if recovered:
                log.warning(
                    "care: taking over %d occurrences whose claim expired (a replica died mid-run)", len(recovered)
                )
            for start_at in range(0, len(recovered), self.batch):
                self._run_claimed(recovered[start_at : start_at + self.batch], now, report)
            if self.since is None or now > self.since:
                self.since = now
            report.seconds = _time.perf_counter() - started
            self._count_undated(engine.bundle, now, report)  # after the commits: it delays none of them
            self._log(report)
            return report

    def due(self, process: m.CareProcess, start: datetime, end: datetime) -> list[Firing]:
        """Every firing of ``process`` in ``start < at <= end``, reading only the records it may touch."""
        return self._find(process, start, end, {}, ProcessTick())

    def _find(
        self,
        process: m.CareProcess,
        start: datetime,
        end: datetime,
        known: dict[tuple[str, str], Record],
        stats: ProcessTick,
    ) -> list[Firing]:
        """The firings of ``process`` in the span, from the records of exactly the days that fire
        (``due_days``); the records read go into ``known``, the skips into ``stats``."""
        tz = self.engines.current.tz
        when = process.when
        if when.cron:
            due = self._cron_due(process, start, end)
            stats.due += len(due)
            return due
        field_ = when.anniversary_of or when.date
        days = due_days(process, start, end, tz)
        # the days ``dst_gap: skip`` drops (the wall time does not exist): read too, to be counted
        gap = (
            [d for d in due_days(process, start, end, tz, dst_gap="shift") if d not in days]
            if process.dst_gap == "skip"
            else []
        )
        read = days + gap
        if not read:
            return []
        on_dates = [d.isoformat() for d in read] if when.date else []
        instants = day_instants(process, days, start, end, tz)
        out: list[Firing] = []
        for record in self.store.care_records(process.object, field_, month_days(process, read), on_dates):
            before = len(out)
            out.extend(firings_on(process, record, instants))
            if len(out) > before:
                known[record.key] = record
                if when.anniversary_of and out[-1].occurrence[5:10] in ("02-28", "03-01"):
                    born = parse_date(record.fields.get(field_))
                    if born is not None and (born.month, born.day) == (2, 29):
                        stats.feb29 += len(out) - before
            elif gap and _falls_on(process, record, gap):
                stats.dst_gap += 1
        stats.due += len(out)
        return out

    def _cron_due(self, process: m.CareProcess, start: datetime, end: datetime) -> list[Firing]:
        """A cron process touches every live record of its object, but only when the cron fires:
        then it reads their ids (the primary key, page by page), not the records; the engine
        reads the records of each batch it runs."""
        moments = cron_times(process, start, end, self.engines.current.tz)
        if not moments:
            return []
        out: list[Firing] = []
        after = ""
        while True:
            ids = self.store.record_ids(process.object, after=after, limit=self.page)
            for moment in moments:
                key = moment.isoformat()
                out.extend(Firing(moment, key, process.name, process.object, id_) for id_ in ids)
            if len(ids) < self.page:
                return out
            after = ids[-1]

    def _window_start(self, process: m.CareProcess, now: datetime) -> datetime:
        if process.on_missed == "skip":
            floor = now - self.slack
        else:
            floor = now - (process.grace.value if process.grace else DEFAULT_GRACE)
        if self.since is None:
            if process.on_missed == "skip":
                log.info(
                    "care: %s has on_missed: skip: occurrences due before %s are not caught up",
                    process.name,
                    floor.isoformat(),
                )
            return floor
        return max(self.since, floor)

    def _pinned(self, found: list[tuple[Firing, m.CareProcess]], version: str, tz: Any) -> list[CareOccurrence]:
        """Each firing with the config version of its (process, local day); a pin never changes
        once written, so this process remembers the ones it has seen."""
        out = []
        for firing, process in found:
            day = (process.name, firing.at.astimezone(tz).date().isoformat())
            pinned = self._pins.get(day)
            if pinned is None:
                pinned = self._pins[day] = self.store.pin_care_day(process.name, day[1], version)
            out.append(
                CareOccurrence(
                    process=firing.process,
                    object=firing.object,
                    record_id=firing.record_id,
                    occurrence=firing.occurrence,
                    config_version=pinned,
                )
            )
        return out

    def _engine_for(self, version: str) -> Any:
        engine = self.engines.by_version.get(version) or self._stored_engine(version)
        if engine is None:
            if version and version not in self._missing_versions:
                self._missing_versions.add(version)
                log.warning(
                    "care: today's runs started on config version %s, which this process no longer "
                    "has; running them on %s",
                    version,
                    self.engines.current.version,
                )
            engine = self.engines.current
        return engine

    def _stored_engine(self, version: str) -> Any:
        """The engine of a pinned ``version`` this process has not built (it started or reloaded
        after the day was pinned, or another replica pinned it), rebuilt from the files the store
        keeps of every deployed version; kept with the others, so it is built once. None when the
        store does not have it or it cannot be rebuilt (then the current engine runs, logged).
        Built directly, not through ``versions.from_version``: that cache keeps the running
        version, which a reload plans against."""
        if not version or version in self._missing_versions:
            return None
        stored = self.store.version(version)
        if stored is None or not stored.files:
            return None
        loaded = load_bundle_from_files(stored.files, root=f"<version {version}>")
        if not loaded.ok or loaded.bundle is None:
            log.warning("care: pinned config version %s does not validate any more; it cannot be rebuilt", version)
            return None
        engine = Engine(loaded.bundle, version)
        self.engines.by_version.setdefault(version, engine)
        log.info("care: rebuilt config version %s from the store: today's runs started on it", version)
        return engine

    def _run_new(
        self, wanted: list[CareOccurrence], known: dict[tuple[str, str], Record], now: datetime, report: TickReport
    ) -> list[CareOccurrence]:
        """Run the occurrences the ledger does not hold yet and commit them with their ledger rows in
        one transaction. The ledger's primary key lets one transaction in per occurrence: if another
        replica committed some meanwhile, nothing of ours was written, and the rest run again
        without them (on records read afresh). Nothing leaves before the commit (the outbox)."""
        todo = wanted
        while todo:
            done = self.store.care_done([o.key for o in todo])
            todo = [o for o in todo if o.key not in done]
            if not todo:
                break
            items = self._steps(todo, known, now)
            if self.store.insert_care(items, self.owner, now):
                self._count(items, report)
                report.claimed += len(items)
                report.committed += len(items)
                for _, processed in items:  # a later batch reads what this one wrote from the store
                    for key in processed.step.records:
                        known.pop(key, None)
                return [o for o, _ in items]
            known = {}  # another replica wrote some of these records meanwhile
        return []

    def _run_claimed(self, claims: list[CareOccurrence], now: datetime, report: TickReport) -> None:
        """Run claims taken over from a replica that died holding them (rows in ``claimed``)."""
        items = self._steps(claims, {}, now)
        kept = self.store.commit_care(items, self.owner, now)
        report.committed += kept
        if kept == len(items):
            self._count(items, report)
        else:  # fencing: another replica took these over meanwhile (this one was paused past the lease)
            log.warning(
                "care: %d of %d taken-over occurrences not committed: %s lost them to another replica, "
                "whose run stands",
                len(items) - kept,
                len(items),
                self.owner,
            )

    def _steps(
        self, claims: list[CareOccurrence], known: dict[tuple[str, str], Record], now: datetime
    ) -> list[tuple[CareOccurrence, Processed]]:
        """Each occurrence through its day's engine, in order, each seeing what the earlier ones did."""
        overlay = Overlay(_Known(self.store, known))
        overlay.prefetch([(c.object, c.record_id) for c in claims])
        items: list[tuple[CareOccurrence, Processed]] = []
        for claim in claims:
            engine = self._engine_for(claim.config_version)
            due = CareDue(
                key=f"care:{claim.process}:{claim.object}:{claim.record_id}:{claim.occurrence}",
                process=claim.process,
                object=claim.object,
                id=claim.record_id,
                occurrence=claim.occurrence,
            )
            try:
                step = engine.handle(overlay, due, now)
                result = outcome(step, due)
            except Exception:  # one broken record must not stop the others
                log.exception("care %s for %s %s failed", claim.process, claim.object, claim.record_id)
                step, result = Step(), "failed"
            overlay.apply(step)
            for problem in step.problems:
                log.warning("%s %s: %s", problem.object, problem.record_id, problem.message)
            items.append(
                (
                    CareOccurrence(
                        process=claim.process,
                        object=claim.object,
                        record_id=claim.record_id,
                        occurrence=claim.occurrence,
                        status=result,
                        config_version=claim.config_version or engine.version,
                    ),
                    Processed(step=step),
                )
            )
        return items

    @staticmethod
    def _count(items: list[tuple[CareOccurrence, Processed]], report: TickReport) -> None:
        for occurrence, _ in items:
            report.outcomes[occurrence.status] = report.outcomes.get(occurrence.status, 0) + 1
            stats = report.processes.setdefault(occurrence.process, ProcessTick())
            stats.outcomes[occurrence.status] = stats.outcomes.get(occurrence.status, 0) + 1

    # ------------------------------------------------------------------ what a tick skipped, in the log

    def _count_undated(self, bundle: m.Bundle, now: datetime, report: TickReport) -> None:
        """Records with an empty or unusable date are never due, so no tick reads them; they are
        counted once per local day and process (two index counts), at its first tick that day."""
        today = now.astimezone(self.engines.current.tz).date()
        for name, stats in report.processes.items():
            process = bundle.care.get(name)
            if process is None or process.when.cron:
                continue
            field_ = process.when.anniversary_of or process.when.date
            counted = self._undated.get(name)
            if counted is None or counted[0] != today:
                counted = self._undated[name] = (today, *self.store.care_undated(process.object, field_))
                stats.counted = True
            stats.records, stats.undated = counted[1], counted[2]

    def _log(self, report: TickReport) -> None:
        """One line per process that had something due or skipped this tick (or, at its first tick of
        the day, records without a usable date)."""
        for name, s in report.processes.items():
            if not (s.due or s.dst_gap or s.feb29 or (s.counted and s.undated)):
                continue
            outcomes = ", ".join(f"{k} {v}" for k, v in sorted(s.outcomes.items())) or "none run here"
            log.info(
                "care: %s at %s: %d due (%s); skipped: %d without a usable date (of %d records), %d at a "
                "wall time that does not exist (dst_gap: skip); %d born on 29 February run on another day "
                "(feb29)",
                name,
                report.now.isoformat(),
                s.due,
                outcomes,
                s.undated,
                s.records,
                s.dst_gap,
                s.feb29,
            )


class _Known(StoreDelegate):
    """The store, except that ``records_of`` answers from the records the tick already read."""

    def __init__(self, store: Store, known: dict[tuple[str, str], Record]) -> None:
        super().__init__(store)
        self.known = known

    def records_of(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Record]:
        out = {key: self.known[key] for key in keys if key in self.known}
        missing = [key for key in keys if key not in out]
        if missing:
            out.update(self.store.records_of(missing))
        return out


def _falls_on(process: m.CareProcess, record: Record, days: list[date]) -> bool:
    """Whether ``record``'s anniversary (or date) is one of ``days``."""
    when = process.when
    base = parse_date(record.fields.get(when.anniversary_of or when.date))
    if base is None:
        return False
    if when.anniversary_of:
        return any(base.year <= d.year and anniversary_in(base, d.year, process.feb29) == d for d in days)
    return base in days


@contextlib.contextmanager
def _no_gc_pauses() -> Iterator[None]:
    """A tick allocates many short-lived objects (runs, effects, rows) and frees them all at the
    end; the cyclic collector would walk the whole heap several times meanwhile for nothing.
    Reference counting still frees them; the collector runs once the tick is over."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
