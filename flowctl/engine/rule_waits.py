"""What stage rules wait for: a moment computed from a date field, an event, a field change.

``delay: {until: "{{ record.visit_at }}", offset: -2h}`` waits for a moment read from the
record; it is computed again whenever a field the template reads changes, so the rule follows
the visit when it is moved. ``wait: {event: E}`` / ``wait: {changed: [f]}`` hold a rule until
something happens. A waiting rule run says in ``waiting_for`` which of these it waits for (the
console shows it): ``until <template> <offset>``, the event's name, or ``changed: <fields>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from flowctl.engine.business import delay_text
from flowctl.spec import model as m
from flowctl.spec.templating import TemplateError, compile_template, referenced_fields


def until_label(rule: m.Rule) -> str:
    """``waiting_for`` of a rule waiting for its ``delay: {until, offset}`` moment."""
    offset = f" {rule.delay_offset.text}" if rule.delay_offset is not None else ""
    return f"until {rule.delay_until}{offset}"


def wait_label(rule: m.Rule) -> str:
    """``waiting_for`` of a rule held by its ``wait:``: the event, or the fields it watches."""
    assert rule.wait is not None
    return rule.wait.event or "changed: " + ", ".join(rule.wait.changed)


def timing(rule: m.Rule) -> str:
    """When a rule acts, for graphs: ``after 2h``, ``after 4h of office time``, ``until visit_at
    -2h``, ``on invoice.paid (3d, then skip)``, ``on change of quote_amount``; '' for a rule that
    acts on entry."""
    parts = []
    if rule.delay is not None:
        parts.append(f"after {delay_text(rule.delay, rule.delay_calendar)}")
    if rule.delay_until:
        read = ", ".join(sorted(until_fields(rule))) or rule.delay_until
        parts.append(f"until {read}" + (f" {rule.delay_offset.text}" if rule.delay_offset is not None else ""))
    if rule.wait is not None:
        what = rule.wait.event or "change of " + ", ".join(rule.wait.changed)
        bound = f" ({rule.wait.for_.text}, then {rule.on_timeout})" if rule.wait.for_ is not None else ""
        parts.append(f"on {what}{bound}")
    return ", ".join(parts)


def until_moment(rule: m.Rule, ctx: Mapping[str, Any], zone: tzinfo) -> tuple[datetime, datetime] | None:
    """The field's moment and the rule's due moment (the field's plus ``offset``), or None while
    the template renders empty (the field is not set yet).

    A date without a time is its midnight in Config's time zone, as is a date and time without
    a zone. Raises ``TemplateError`` for text that is not a date.
    """
    text = compile_template(rule.delay_until).render(ctx).strip()
    if not text or text == "None":
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise TemplateError(
            f"delay until '{rule.delay_until}' rendered to '{text}', not a date or a date and time "
            "(render a date or datetime field, e.g. {{ record.visit_at }})"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    offset = rule.delay_offset.value if rule.delay_offset is not None else None
    return moment, moment + offset if offset is not None else moment


@dataclass(frozen=True, slots=True)
class WaitIndex:
    """What the bundle's stage rules wait for, so that inputs nobody waits for cost nothing."""

    #: Events some rule's ``wait: {event}`` waits for.
    events: frozenset[str]
    #: Object types some rule's ``wait: {changed}`` watches.
    watched: frozenset[str]
    #: Fields the ``delay: {until}`` templates read, per (pipeline, stage).
    follow: Mapping[tuple[str, str], frozenset[str]]

    @classmethod
    def of(cls, bundle: m.Bundle) -> WaitIndex:
        events: set[str] = set()
        watched: set[str] = set()
        follow: dict[tuple[str, str], frozenset[str]] = {}
        for pipeline in bundle.pipelines.values():
            for stage in pipeline.stages:
                read: set[str] = set()
                for rule in stage.rules:
                    if rule.wait is not None and rule.wait.event:
                        events.add(rule.wait.event)
                    if rule.wait is not None and rule.wait.changed:
                        watched.add(pipeline.object)
                    if rule.delay_until:
                        read.update(until_fields(rule))
                if read:
                    follow[(pipeline.name, stage.id)] = frozenset(read)
        return cls(frozenset(events), frozenset(watched), follow)


def until_fields(rule: m.Rule) -> frozenset[str]:
    """The record fields a rule's ``delay: {until}`` template reads (none if it does not parse)."""
    try:
        return frozenset(ref.name for ref in referenced_fields(rule.delay_until, expression=False))
    except TemplateError:
        return frozenset()
