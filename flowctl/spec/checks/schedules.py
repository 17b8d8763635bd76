"""Time: time-zone names (E062), cron expressions (E061) and what a cron ignores (E065), times of
day (E063), care dates that name date fields (E064, E031), durations that must not be negative
(E060) and the number of enabled care processes per object type (E070).
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Iterator
from functools import cache

from flowctl.spec import model as m
from flowctl.spec.checks._common import has_key, hint_with, name_span, suggest, value_span
from flowctl.spec.cron import CronError, parse_cron
from flowctl.spec.issues import Issue, error
from flowctl.spec.places import Span, Where

DATE_TYPES = ("date", "datetime")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")


@cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def zone_problem(name: str) -> str | None:
    """Why ``name`` is not a time zone, or None when it is one."""
    if name in ("UTC", "Z") or name in _zones():
        return None
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return f"'{name}' is not a time zone name"
    return None


def zone_hint(name: str) -> str:
    """How to fix ``name``: a different, real zone close to it; else where zones come from.

    Never suggests ``name`` itself: without a zone database (tzdata missing) no name is valid, and
    "did you mean 'Asia/Ho_Chi_Minh'?" for Asia/Ho_Chi_Minh only confuses.
    """
    zones = _zones()
    if not zones:
        return "this Python has no time zone database: install the tzdata package (pip install tzdata)"
    by_case = {zone.casefold(): zone for zone in zones}
    same = by_case.get(name.casefold())
    if same and same != name:
        return f"did you mean '{same}'? (zone names are case-sensitive)"
    close = suggest(name, zones - {name})
    if close.startswith("did"):
        return close
    return "use an IANA name such as Asia/Ho_Chi_Minh or UTC"


def _zone(name: str, what: str, span: Span) -> Iterator[Issue]:
    if not name:
        return
    problem = zone_problem(name)
    if problem:
        yield error("E062", f"{what}: {problem}", span, zone_hint(name))


def time_problem(text: str) -> str | None:
    """Why ``text`` is not a time of day HH:MM, or None."""
    match = _TIME.match(text)
    if not match or int(match[1]) > 23 or int(match[2]) > 59:
        return f"'{text}' is not a time of day"
    return None


def _time(text: str, what: str, span: Span) -> Iterator[Issue]:
    problem = time_problem(text)
    if problem:
        yield error("E063", f"{what}: {problem}", span, "write 24-hour HH:MM, e.g. 08:00 or 17:30")


def check_time_zones(bundle: m.Bundle) -> Iterator[Issue]:
    """E062 bad time zone; E063 bad quiet hours."""
    config = bundle.config
    yield from _zone(config.timezone, "Config timezone", value_span(config.where, "timezone"))
    for channel in bundle.channels.values():
        quiet = channel.policy.quiet_hours
        if quiet is None:
            continue
        qw = channel.where.child("quiet_hours")
        what = f"quiet_hours of channel '{channel.name}'"
        yield from _zone(quiet.timezone, what, value_span(qw, "timezone"))
        yield from _time(quiet.start, what, value_span(qw, "start"))
        yield from _time(quiet.end, what, value_span(qw, "end"))


def check_care_schedule(bundle: m.Bundle) -> Iterator[Issue]:
    """E061 bad cron, E065 ``at``/``offset`` beside a cron, E063 bad ``at``, E031/E064 care date
    fields that are missing or not dates."""
    for care in bundle.care.values():
        when = care.when
        ww = when.where
        what = f"care process '{care.name}'"
        if when.cron:
            try:
                parse_cron(when.cron)
            except CronError as exc:
                yield error(
                    "E061",
                    f"{what}: {exc}",
                    value_span(ww, "cron"),
                    "write five fields: minute hour day-of-month month day-of-week, "
                    "e.g. '0 9 * * 1' (Mondays at 09:00)",
                )
            yield from _ignored_beside_cron(care, what)
        else:
            yield from _time(when.at, f"'at' of {what}", value_span(ww, "at"))
        obj = bundle.objects.get(care.object)
        if obj is None:
            continue
        for key, name in (("anniversary_of", when.anniversary_of), ("date", when.date)):
            if not name:
                continue
            spec = obj.fields.get(name)
            if spec is None:
                if name in ("created_at", "updated_at"):
                    continue  # built-in timestamps
                yield error(
                    "E031",
                    f"{what} schedules on field '{name}', which object type '{obj.name}' does not have",
                    value_span(ww, key),
                    hint_with(
                        f"add a date field '{name}' to ObjectType '{obj.name}' or fix the name",
                        name,
                        [f for f, s in obj.fields.items() if s.type in DATE_TYPES],
                    ),
                )
            elif spec.type not in DATE_TYPES:
                yield error(
                    "E064",
                    f"{what} schedules on field '{name}', which is a {spec.type}, not a date",
                    value_span(ww, key),
                    hint_with(
                        "name a field of type date or datetime",
                        name,
                        [f for f, s in obj.fields.items() if s.type in DATE_TYPES],
                    ),
                )


def _ignored_beside_cron(care: m.CareProcess, what: str) -> Iterator[Issue]:
    """E065: ``at`` and ``offset`` move an anniversary or a date; a cron names its own times."""
    ww = care.when.where
    if has_key(ww, "at"):
        yield error(
            "E065",
            f"{what}: 'at' has no effect beside 'cron': the cron names its own times",
            value_span(ww, "at"),
            f"remove 'at' and write the time in the cron: '{_cron_at(care.when.cron, care.when.at)}'",
        )
    if has_key(ww, "offset"):
        yield error(
            "E065",
            f"{what}: 'offset' has no effect beside 'cron': the cron names its own times",
            value_span(ww, "offset"),
            "remove 'offset'; to run a day earlier, change the cron's days (e.g. '0 9 * * 0' instead of '0 9 * * 1')",
        )


def _cron_at(cron: str, at: str) -> str:
    """``cron`` with its minute and hour fields set to the time ``at``: '0 9 * * 1' at 08:30 is '30 8 * * 1'."""
    fields, match = cron.split(), _TIME.match(at)
    days = " ".join(fields[2:]) if len(fields) == 5 else "* * *"
    return f"{int(match[2])} {int(match[1])} {days}" if match else f"0 9 {days}"


def _not_negative(duration: m.Duration | None, what: str, where: Where, key: str) -> Iterator[Issue]:
    if duration is not None and duration.value.total_seconds() < 0:
        yield error(
            "E060",
            f"{what}: '{duration.text}' is negative",
            value_span(where, key),
            "write a positive duration, e.g. 2h or 1d",
        )


def check_durations(bundle: m.Bundle) -> Iterator[Issue]:
    """E060: delays, timeouts and grace periods must not be negative (only care offsets may)."""
    for flow in bundle.flows.values():
        for node in flow.nodes.values():
            yield from _not_negative(node.for_, f"'for' of flow '{flow.name}', node '{node.id}'", node.where, "for")
    for pipeline in bundle.pipelines.values():
        for stage in pipeline.stages:
            for rule in stage.rules:
                yield from _not_negative(
                    rule.delay, f"'delay' of rule '{rule.name}' in stage '{stage.id}'", rule.where, "delay"
                )
    for care in bundle.care.values():
        yield from _not_negative(care.grace, f"'grace' of care process '{care.name}'", care.where, "grace")
    for channel in bundle.channels.values():
        yield from _not_negative(channel.timeout, f"'timeout' of channel '{channel.name}'", channel.where, "timeout")
    for source in bundle.sources.values():
        yield from _not_negative(source.interval, f"'interval' of source '{source.name}'", source.where, "interval")


def check_care_limit(bundle: m.Bundle) -> Iterator[Issue]:
    """E070: more enabled care processes for one object type than Config allows."""
    limit = bundle.config.limits.care_processes_per_object
    by_object: dict[str, list[m.CareProcess]] = {}
    for care in bundle.care.values():
        if care.enabled:
            by_object.setdefault(care.object, []).append(care)
    for object_name, processes in by_object.items():
        if len(processes) <= limit:
            continue
        ordered = sorted(processes, key=lambda c: (c.where.at().file, c.where.at().line, c.where.at().col))
        for care in ordered[limit:]:
            yield error(
                "E070",
                f"care process '{care.name}' is enabled care process {ordered.index(care) + 1} "
                f"of {len(processes)} for object type '{object_name}'; at most {limit} are allowed",
                value_span(care.where, "enabled")
                if (*care.where.path, "enabled") in care.where.marks
                else name_span(care),
                "disable or merge care processes (enabled: false), or raise "
                "Config spec.limits.care_processes_per_object",
            )
