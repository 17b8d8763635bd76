"""Business time in the engine: delays counted in a calendar's working time, and actions held
until a working minute (``only_during:``).

Both read the calendars of the bundle's Config; the instant comes in from the caller (the
injected clock), so ``flowctl test`` and the daemon wake at the same moments. A calendar the
bundle does not define (validate reports it as E119) counts as always working: the engine never
stalls a run on a name it cannot resolve.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from flowctl.spec import model as m
from flowctl.spec.calendars import add_working, next_working


def wake_at(bundle: m.Bundle, calendar: str, now: datetime, duration: timedelta) -> datetime:
    """When a delay of ``duration`` started at ``now`` ends: in working time when ``calendar`` is named."""
    found = bundle.config.calendars.get(calendar) if calendar else None
    if found is None:
        return now + duration
    return add_working(found, now, duration).astimezone(now.tzinfo)  # traces keep the clock's zone


def held_until(bundle: m.Bundle, action: m.Action, now: datetime) -> datetime | None:
    """The next working minute when ``action`` has ``only_during:`` and ``now`` is outside it; else None."""
    found = bundle.config.calendars.get(action.only_during) if action.only_during else None
    if found is None:
        return None
    due = next_working(found, now)
    return due.astimezone(now.tzinfo) if due > now else None


def delay_text(duration: m.Duration, calendar: str) -> str:
    """``4h``, or ``4h of office time`` for a delay counted in a calendar's working time."""
    return f"{duration.text} of {calendar} time" if calendar else duration.text


def hold_detail(action: m.Action, due: datetime) -> str:
    return f"{action.type} held until {due.isoformat()} (only_during {action.only_during})"
