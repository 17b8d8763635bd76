"""The care scheduler: every minute, find the care occurrences that came due, claim each once, run it.

APScheduler is only the wake-up clock here (a minute-aligned cron trigger, with ``coalesce`` and
``misfire_grace_time`` set explicitly and an in-memory job store holding nothing durable). The
database ledger (``care_occurrences``) decides what has run: a tick claims every occurrence it
finds with one ``INSERT … ON CONFLICT DO NOTHING`` before any action, runs only the claims it won,
and commits their runs and outbox rows in the same transaction that marks the claims done. Several
replicas may tick at once; each occurrence goes to one of them. A replica that dies between claim
and commit leaves ``claimed`` rows; after ``lease_seconds`` another replica takes them over.

Due records come from the month-day index (``record_dates``), so a tick reads what it finds, not
the contact table. A tick covers ``(since, now]``: ``since`` is the previous tick, or on start
``now - grace`` for ``on_missed: catch_up`` (runs missed while the daemon was down happen late,
and the log says so) and ``now - slack`` for ``on_missed: skip``.

Edits take effect tomorrow: the first time a process runs on a local day, the day is pinned to
the config version running then (``care_days``); every occurrence of that process on that day runs
on the pinned version's engine, if this process still has it (else on the current one, logged).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time as _time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flowctl.engine.care import Firing, candidate_days, firings, month_days, outcome
from flowctl.engine.state import CareDue
from flowctl.ports import CareOccurrence, Clock, Processed, Store
from flowctl.runtime.worker import Engines, Overlay
from flowctl.spec import model as m

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


class CareScheduler:
    def __init__(self, store: Store, engines: Engines, clock: Clock, *, owner: str = "care",
                 lease_seconds: float = 300.0, batch: int = 5000, page: int = 1000,
                 slack: timedelta = timedelta(minutes=2)) -> None:  # fmt: skip
        self.store = store
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
        self._scheduler.add_job(self.safe_tick, CronTrigger(second=0, timezone=tz), id="care-tick",
                                coalesce=True, misfire_grace_time=300, max_instances=1)  # fmt: skip
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
        except Exception:
            log.exception("care tick failed; the next one covers the same span again")

    # ------------------------------------------------------------------ one tick

    def tick(self, now: datetime | None = None) -> TickReport:
        """Find, claim and run what came due in ``(since, now]``; commit; advance ``since``."""
        with self._lock, _no_gc_pauses():
            started = _time.perf_counter()
            now = now or self.clock.now()
            report = TickReport(now=now)
            engine = self.engines.current
            found: list[tuple[Firing, m.CareProcess]] = []
            for process in engine.bundle.care.values():
                if process.enabled:
                    start = self._window_start(process, now)
                    found.extend((f, process) for f in self.due(process, start, now))
            found.sort(key=lambda fp: (fp[0].at, fp[1].priority, fp[1].name, fp[0].record_id))
            report.found = len(found)
            wanted = self._pinned(found, engine.version, engine.tz)
            claimed = self.store.claim_occurrences(wanted, self.owner, now)
            recovered = self.store.reclaim_occurrences(self.owner, now, self.lease_seconds, self.batch)
            report.claimed, report.recovered = len(claimed), len(recovered)
            at = {(f.process, f.object, f.record_id, f.occurrence): f.at for f, _ in found}
            late = [o for o in claimed if at[o.key] < now - self.slack]
            if late:
                report.caught_up = len(late)
                first = min(at[o.key] for o in late)
                log.warning("care: catching up %d occurrences missed while flowctl was not running "
                            "(the earliest was due %s)", len(late), first.isoformat())  # fmt: skip
            if recovered:
                log.warning("care: taking over %d occurrences whose claim expired (a replica died mid-run)",
                            len(recovered))  # fmt: skip
            todo = recovered + claimed
            for start_at in range(0, len(todo), self.batch):
                self._run(todo[start_at : start_at + self.batch], now, report)
            if self.since is None or now > self.since:
                self.since = now
            report.seconds = _time.perf_counter() - started
            if report.claimed or report.recovered:
                log.info("care: tick %s: %d due, %d claimed here, %s", now.isoformat(), report.found,
                         report.claimed + report.recovered, report.outcomes)  # fmt: skip
            return report

    def due(self, process: m.CareProcess, start: datetime, end: datetime) -> list[Firing]:
        """Every firing of ``process`` in ``start < at <= end``, reading only the records it may touch."""
        tz = self.engines.current.tz
        when = process.when
        if when.cron:
            return self._cron_due(process, start, end)
        days = candidate_days(process, start, end, tz)
        on_dates = [d.isoformat() for d in days] if when.date else []
        records = self.store.care_records(process.object, when.anniversary_of or when.date,
                                          month_days(process, days), on_dates)  # fmt: skip
        out: list[Firing] = []
        for record in records:
            out.extend(firings(process, record, start, end, tz))
        return out

    def _cron_due(self, process: m.CareProcess, start: datetime, end: datetime) -> list[Firing]:
        """A cron process touches every record of its object, but only when the cron fires."""
        from flowctl.engine.state import Record
        from flowctl.spec.cron import parse_cron

        tz = self.engines.current.tz
        if next(iter(parse_cron(process.when.cron).fires_between(start.astimezone(tz), end)), None) is None:
            return []
        out: list[Firing] = []
        after = ""
        while True:
            page: list[Record] = self.store.list_records(process.object, limit=self.page, after=after)
            for record in page:
                out.extend(firings(process, record, start, end, tz))
            if len(page) < self.page:
                return out
            after = page[-1].id

    def _window_start(self, process: m.CareProcess, now: datetime) -> datetime:
        if process.on_missed == "skip":
            floor = now - self.slack
        else:
            floor = now - (process.grace.value if process.grace else DEFAULT_GRACE)
        if self.since is None:
            if process.on_missed == "skip":
                log.info("care: %s has on_missed: skip: occurrences due before %s are not caught up",
                         process.name, floor.isoformat())  # fmt: skip
            return floor
        return max(self.since, floor)

    def _pinned(self, found: list[tuple[Firing, m.CareProcess]], version: str, tz: Any) -> list[CareOccurrence]:
        pins: dict[tuple[str, str], str] = {}
        out = []
        for firing, process in found:
            day = (process.name, firing.at.astimezone(tz).date().isoformat())
            if day not in pins:
                pins[day] = self.store.pin_care_day(process.name, day[1], version)
            out.append(CareOccurrence(process=firing.process, object=firing.object, record_id=firing.record_id,
                                      occurrence=firing.occurrence, config_version=pins[day]))  # fmt: skip
        return out

    def _engine_for(self, version: str) -> Any:
        engine = self.engines.by_version.get(version)
        if engine is None:
            if version and version not in self._missing_versions:
                self._missing_versions.add(version)
                log.warning("care: today's runs started on config version %s, which this process no longer "
                            "has; running them on %s", version, self.engines.current.version)  # fmt: skip
            engine = self.engines.current
        return engine

    def _run(self, claims: list[CareOccurrence], now: datetime, report: TickReport) -> None:
        overlay = Overlay(self.store)
        overlay.prefetch([(c.object, c.record_id) for c in claims])
        items: list[tuple[CareOccurrence, Processed]] = []
        for claim in claims:
            engine = self._engine_for(claim.config_version)
            due = CareDue(key=f"care:{claim.process}:{claim.object}:{claim.record_id}:{claim.occurrence}",
                          process=claim.process, object=claim.object, id=claim.record_id,
                          occurrence=claim.occurrence)  # fmt: skip
            try:
                step = engine.handle(overlay, due, now)
                result = outcome(step, due)
            except Exception as exc:  # one broken record must not stop the others
                log.exception("care %s for %s %s failed", claim.process, claim.object, claim.record_id)
                from flowctl.engine.state import Step

                step, result = Step(), "failed"
                log.debug("failure: %s", exc)
            overlay.apply(step)
            for problem in step.problems:
                log.warning("%s %s: %s", problem.object, problem.record_id, problem.message)
            report.outcomes[result] = report.outcomes.get(result, 0) + 1
            items.append((CareOccurrence(process=claim.process, object=claim.object, record_id=claim.record_id,
                                         occurrence=claim.occurrence, status=result,
                                         config_version=claim.config_version or engine.version),
                          Processed(step=step)))  # fmt: skip
        report.committed += self.store.commit_care(items, self.owner, now)


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
