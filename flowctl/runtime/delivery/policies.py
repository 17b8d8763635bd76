"""Sending policies per channel: rate, quiet hours, daily budget, per-recipient cap.

Pure functions: each takes the time (``now``) and the counts it needs, and says whether a message
may go now or must be held until when. The deliverer asks them before it sends (see
``runtime/delivery/deliverer.py``) and holds a refused row in the outbox (status ``held``,
``next_attempt_at`` the time it may go, ``last_error`` why), where ``flowctl outbox list
--status held`` shows it; a held row is claimed again at that time and checked again. Nothing is
ever dropped.

* ``rate: 20/s`` — a sliding window per channel and process: never more than 20 sends in any
  second (with N replicas the channel sees up to N × rate). A message over the rate is held
  until a slot frees, and checked again at the moment it is sent.
* ``quiet_hours: {start: "22:00", end: "07:00", timezone: …}`` — in the recipient's time zone:
  the row's payload ``timezone`` if the action set one, else the policy's, else Config's. A
  message inside the window is held until its end (07:00 local).
* ``daily_budget: 1000`` — messages the channel sends per day (days in Config's time zone);
  over budget, held until the next day.
* ``per_recipient: 1/d`` — messages one recipient (number, address) gets from the channel per
  day (days in Config's time zone); ``N/h``, ``N/w``… count a sliding window instead.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flowctl.spec.model import QuietHours, SendPolicy

UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([smhdw])\s*$")
#: the ``last_error`` of a row held by the rate limit: it has its slot, so it goes when it comes back
RATE_HOLD = "held: over the rate"


class BadRate(ValueError):
    def __init__(self, text: str) -> None:
        super().__init__(f"'{text}' is not a rate: write N/s, N/m, N/h, N/d or N/w (e.g. 20/s, 1/d)")


@dataclass(frozen=True, slots=True)
class Rate:
    count: int
    seconds: float

    @property
    def per_day(self) -> bool:
        return self.seconds == UNITS["d"]


def parse_rate(text: str) -> Rate | None:
    """``"20/s"`` → Rate(20, 1.0); ``"1/d"`` → Rate(1, 86400.0); empty → None."""
    if not text:
        return None
    found = _RATE.match(text)
    if not found or int(found.group(1)) <= 0:
        raise BadRate(text)
    return Rate(int(found.group(1)), float(found.group(2) or 1) * UNITS[found.group(3)])


# ------------------------------------------------------------------------------------ time zones and days


def zone(name: str, fallback: str = "UTC") -> ZoneInfo:
    """The zone named ``name``, else ``fallback``, else UTC (a bad name in a payload must not stop delivery)."""
    for candidate in (name, fallback, "UTC"):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def recipient_zone(payload: Mapping[str, object], policy: SendPolicy, default: str) -> ZoneInfo:
    """The recipient's zone: the row's ``timezone``, else the quiet hours', else ``default`` (Config's)."""
    quiet = policy.quiet_hours.timezone if policy.quiet_hours else ""
    return zone(str(payload.get("timezone") or ""), quiet or default)


def day_start(now: datetime, tz: ZoneInfo) -> datetime:
    """Midnight of ``now``'s day in ``tz``."""
    return _at(now.astimezone(tz).date(), time(0), tz)


def next_day(now: datetime, tz: ZoneInfo) -> datetime:
    """Midnight of the day after ``now``'s day in ``tz``."""
    return _at(now.astimezone(tz).date() + timedelta(days=1), time(0), tz)


def _at(day: date, clock: time, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, clock, tzinfo=tz)


def _clock(text: str) -> time:
    hours, _, minutes = text.partition(":")
    return time(int(hours) % 24, int(minutes or 0))


def quiet_until(quiet: QuietHours | None, now: datetime, tz: ZoneInfo) -> datetime | None:
    """The end of the quiet window ``now`` falls in (local time in ``tz``), or None outside it.
    A window may wrap midnight (22:00–07:00)."""
    if quiet is None or quiet.start == quiet.end:
        return None
    local = now.astimezone(tz)
    start, end, at = _clock(quiet.start), _clock(quiet.end), local.time()
    today = local.date()
    if start < end:
        return _at(today, end, tz) if start <= at < end else None
    if at >= start:
        return _at(today + timedelta(days=1), end, tz)
    if at < end:
        return _at(today, end, tz)
    return None


# ------------------------------------------------------------------------------------ the rate


class Window:
    """The send times of one channel over its rate's period, so that no window of ``rate.seconds``
    ever holds more than ``rate.count`` sends: what "5/s" promises a gateway. (A token bucket
    would let a burst of 5 go and then refill within the same second.)"""

    def __init__(self, rate: Rate) -> None:
        self.rate = rate
        self.sent: deque[datetime] = deque()

    def _prune(self, now: datetime) -> None:
        if self.sent and self.sent[-1] > now:
            # the wall clock went back: the sends it remembers are "in the future". Move them all
            # back so that the latest is now (the step was at least that long): the rate still
            # holds for the sends just made, and nothing waits for the size of the step.
            step = self.sent[-1] - now
            self.sent = deque(at - step for at in self.sent)
        cutoff = now - timedelta(seconds=self.rate.seconds)
        while self.sent and self.sent[0] <= cutoff:
            self.sent.popleft()

    def free(self, now: datetime) -> int:
        """How many may go at ``now``."""
        self._prune(now)
        return max(self.rate.count - len(self.sent), 0)

    def take(self, now: datetime) -> float:
        """Count one send at ``now`` and return 0, or return the seconds until one may go."""
        self._prune(now)
        if len(self.sent) < self.rate.count:
            self.sent.append(now)
            return 0.0
        return max((self.sent[0] + timedelta(seconds=self.rate.seconds) - now).total_seconds(), 0.001)

    def slots(self, now: datetime, going: int, waiting: int) -> list[datetime]:
        """When each of ``waiting`` rows may go, after ``going`` more take the free slots at ``now``
        (an estimate for holding them: each is checked again when it comes back)."""
        period = timedelta(seconds=self.rate.seconds)
        self._prune(now)
        frees = sorted([at + period for at in self.sent] + [now + period] * going)
        frees += [now + period] * (self.rate.count - len(frees))
        return [frees[j % len(frees)] + period * (j // len(frees)) for j in range(waiting)]


# ------------------------------------------------------------------------------------ one message


@dataclass(frozen=True, slots=True)
class Hold:
    until: datetime
    reason: str


def check(
    policy: SendPolicy, now: datetime, *, tz: ZoneInfo, day_zone: ZoneInfo, sent_today: int, sent_to_recipient: int
) -> Hold | None:
    """Quiet hours, budget and per-recipient cap for one message (the rate is :class:`Window`'s):
    None when it may go now. ``sent_today`` counts the channel's messages since ``day_start``
    in ``day_zone``; ``sent_to_recipient`` the recipient's in the cap's window."""
    end = quiet_until(policy.quiet_hours, now, tz)
    if end is not None:
        q = policy.quiet_hours
        assert q is not None
        return Hold(end, f"held: quiet hours {q.start}-{q.end} ({tz.key}) until {end.isoformat()}")
    if policy.daily_budget and sent_today >= policy.daily_budget:
        until = next_day(now, day_zone)
        return Hold(until, f"held: daily budget of {policy.daily_budget} spent; until {until.isoformat()}")
    cap = parse_rate(policy.per_recipient)
    if cap is not None and sent_to_recipient >= cap.count:
        until = next_day(now, day_zone) if cap.per_day else now + timedelta(seconds=cap.seconds)
        return Hold(until, f"held: per-recipient cap {policy.per_recipient} reached; until {until.isoformat()}")
    return None


def cap_since(policy: SendPolicy, now: datetime, day_zone: ZoneInfo) -> datetime | None:
    """Where the per-recipient count starts: today's midnight for ``N/d``, else the sliding window."""
    cap = parse_rate(policy.per_recipient)
    if cap is None:
        return None
    return day_start(now, day_zone) if cap.per_day else now - timedelta(seconds=cap.seconds)


def active(policy: SendPolicy) -> bool:
    return bool(policy.rate or policy.quiet_hours or policy.daily_budget or policy.per_recipient)
