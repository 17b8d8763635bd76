"""Time policies a care process left to their defaults (W001), stated so nobody is surprised.

Only the policies that can matter are mentioned: ``feb29`` for anniversaries, ``dst_gap`` and
``dst_overlap`` when the configured time zone observes daylight saving time and the schedule is not
an interval cron (which fires by the clock through a change, see ``flowctl.spec.cron``).
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterator
from datetime import datetime
from functools import cache

from flowctl.spec import model as m
from flowctl.spec.checks._common import value_span
from flowctl.spec.cron import CronError, parse_cron
from flowctl.spec.issues import Issue, warning


@cache
def observes_dst(zone_name: str) -> bool:
    """Whether the zone's UTC offset differs between January and July (in 2020…2030)."""
    try:
        zone = zoneinfo.ZoneInfo(zone_name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    for year in range(2020, 2031):
        winter = datetime(year, 1, 15, 12, tzinfo=zone).utcoffset()
        summer = datetime(year, 7, 15, 12, tzinfo=zone).utcoffset()
        if winter != summer:
            return True
    return False


def check_care_defaults(bundle: m.Bundle) -> Iterator[Issue]:
    """W001: on_missed/grace, feb29 and DST policies that were not written."""
    dst = observes_dst(bundle.config.timezone)
    for care in bundle.care.values():
        defaulted = set(care.defaulted)
        what = f"care process '{care.name}'"
        span = care.where.at("when")
        grace = care.grace.text if care.grace else "24h"
        if "on_missed" in defaulted:
            yield warning(
                "W001",
                f"{what}: on_missed not set: defaults to catch_up with grace {grace} "
                "(a run missed while flowctl was down happens late, within the grace period)",
                span,
                "write 'on_missed: catch_up' (and 'grace:') or 'on_missed: skip' to make the choice explicit",
            )
        elif "grace" in defaulted and care.on_missed == "catch_up":
            yield warning(
                "W001",
                f"{what}: grace not set: missed runs are caught up within 24h",
                value_span(care.where, "on_missed"),
                "write 'grace:' (e.g. 6h or 2d) next to on_missed",
            )
        if "feb29" in defaulted and care.when.anniversary_of:
            yield warning(
                "W001",
                f"{what}: feb29 not set: anniversaries on 29 February fall on 28 February in other years",
                value_span(care.when.where, "anniversary_of"),
                "write 'feb29: feb28' or 'feb29: mar1'",
            )
        if dst and {"dst_gap", "dst_overlap"} & defaulted and not _interval_cron(care.when.cron):
            yield warning(
                "W001",
                f"{what}: dst_gap/dst_overlap not set: in {bundle.config.timezone} a wall time skipped by "
                "daylight saving runs as much later as the gap is long (shift: 02:30 → 03:30 when 02:00 becomes "
                "03:00), a repeated one runs once",
                span,
                "write 'dst_gap: shift|skip' and 'dst_overlap: once|twice'",
            )


def _interval_cron(text: str) -> bool:
    try:
        return bool(text) and parse_cron(text).interval
    except CronError:
        return False  # E061 says what is wrong with it
