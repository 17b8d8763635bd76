"""Care processes for the console: each one's next firing, how many firings the next 7 days hold
(per local day), and what the ledger says of the last ones.

The counts are ``flowctl care forecast``'s (``engine.care_forecast``) over the records the daemon's
tick would read for those days (the month-day index), ``if:`` applied to each record as it is now.
A cron process touches every live record of its object at each firing: its count is that.
The ledger keeps no log of ticks, so ``last_ticks`` holds one entry: when the last occurrence was
done and how many were claimed in the last 24 hours.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, time, timedelta, tzinfo
from typing import Any, Protocol

from flowctl.engine.care import cron_times, due_days, month_days
from flowctl.engine.care_forecast import forecast, next_look
from flowctl.engine.core import Engine
from flowctl.ports import CareLedger
from flowctl.runtime.reads.common import iso
from flowctl.spec import model as m

DAYS = 7


class CareStore(CareLedger, Protocol):
    def stage_counts(self) -> dict[tuple[str, str, str], int]: ...
    def care_claims_since(self, since: datetime) -> dict[str, int]: ...


def _days(process: m.CareProcess, store: CareStore, engine: Engine, start: datetime, end: datetime) -> Counter[str]:
    """Firings per local day (ISO) in ``start < at <= end``."""
    tz = engine.tz
    when = process.when
    if when.cron:
        live = sum(n for (object, _, _), n in store.stage_counts().items() if object == process.object)
        return Counter(
            at.astimezone(tz).date().isoformat() for at in cron_times(process, start, end, tz) for _ in range(live)
        )
    days = due_days(process, start, end, tz)
    if not days:
        return Counter()
    field = when.anniversary_of or when.date
    on_dates = [d.isoformat() for d in days] if when.date else []
    records = store.care_records(process.object, field, month_days(process, days), on_dates)
    found = forecast(engine, process, records, start, end, tz)
    return Counter(f.at.astimezone(tz).date().isoformat() for f in found.runs)


def care(store: CareStore, bundle: m.Bundle, engine: Engine, zone: tzinfo, now: datetime) -> dict[str, Any]:
    tz = engine.tz
    today = now.astimezone(tz).date()
    start = datetime.combine(today, time(), tz)
    end = datetime.combine(today + timedelta(days=DAYS), time(), tz)
    claimed = store.care_claims_since(now - timedelta(hours=24))
    items = []
    for name in sorted(bundle.care):
        process = bundle.care[name]
        per_day = (
            _days(process, store, engine, start - timedelta(microseconds=1), end) if process.enabled else Counter()
        )
        summary = store.care_summary(name)
        items.append(
            {
                "name": name,
                "object": process.object,
                "enabled": process.enabled,
                "next_firing": iso(next_look(process, now, tz), zone),
                "next_7_days": [
                    {
                        "day": (today + timedelta(days=n)).isoformat(),
                        "count": per_day[(today + timedelta(days=n)).isoformat()],
                    }
                    for n in range(DAYS)
                ],
                "last_ticks": (
                    [{"at": iso(summary.last_done_at, zone), "claimed": claimed.get(name, 0)}]
                    if summary.last_done_at is not None or claimed.get(name)
                    else []
                ),
                "counts": dict(summary.counts),
            }
        )
    return {"items": items, "next": None}
