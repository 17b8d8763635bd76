"""What stage rules wait for: a ``delay: {until}`` template that reads a date or datetime field
(E110), a ``delay:`` mapping that says one thing (E111; a ``calendar`` counts a ``for`` in working
time and has no meaning beside ``until``), a ``wait:`` with one event or a list of
fields (E112) and ``on_timeout`` exactly when the wait has a ``for`` (E113). Unknown fields in
``wait: {changed}`` are E031 like every other field named by name; the template's own fields
and syntax are checked with the other templates (E031, E051).
"""

from __future__ import annotations

from collections.abc import Iterator

from flowctl.spec import model as m
from flowctl.spec import templating
from flowctl.spec.checks._common import field_names, has_key, hint_with, item_span, value_span
from flowctl.spec.issues import Issue, error

#: Field types a ``delay: {until}`` moment can be read from.
MOMENT_TYPES = ("date", "datetime")

_CALENDAR_HINT = (
    "write delay: {for: 4h, calendar: office}, or remove calendar; to hold an action to working hours, "
    "give it only_during: office"
)


def _rules(bundle: m.Bundle) -> Iterator[tuple[m.Pipeline, m.Stage, m.Rule]]:
    for pipeline in bundle.pipelines.values():
        for stage in pipeline.stages:
            for rule in stage.rules:
                yield pipeline, stage, rule


def check_rule_delays(bundle: m.Bundle) -> Iterator[Issue]:
    """E110 ``until`` reads no date or datetime field; E111 ``offset`` without ``until``, ``for``
    beside ``until``, or ``calendar`` without ``for`` (also on a flow's delay node)."""
    for flow in bundle.flows.values():
        for node in flow.nodes.values():
            if node.calendar and node.until:
                yield error(
                    "E111",
                    f"flow '{flow.name}', node '{node.id}': 'calendar' counts a 'for' in working time, "
                    "and the node waits 'until' a moment",
                    value_span(node.where, "calendar"),
                    _CALENDAR_HINT,
                )
            if node.offset is not None and not node.until:
                yield error(
                    "E111",
                    f"flow '{flow.name}', node '{node.id}': 'offset' moves an 'until' moment, "
                    "and the node has no 'until'",
                    value_span(node.where, "offset"),
                    'add until: "{{ record.<date field> }}", or remove offset',
                )
    for pipeline, stage, rule in _rules(bundle):
        owner = f"rule '{rule.name}' in stage '{stage.id}' of pipeline '{pipeline.name}'"
        w = rule.where
        if has_key(w, "delay", "offset") and not rule.delay_until:
            yield error(
                "E111",
                f"{owner}: 'offset' moves an 'until' moment, and this delay has no 'until'",
                value_span(w, "delay", "offset"),
                'add until: "{{ record.<date field> }}", or write the wait as delay: {for: 2h}',
            )
        if has_key(w, "delay", "for") and has_key(w, "delay", "until"):
            yield error(
                "E111",
                f"{owner}: the delay has both 'for' and 'until'; it waits for one of them",
                value_span(w, "delay", "for"),
                "keep 'for' (wait this long) or 'until' with an 'offset' (a moment relative to a date field)",
            )
        if rule.delay_calendar and not has_key(w, "delay", "for"):
            yield error(
                "E111",
                f"{owner}: 'calendar' counts a 'for' in working time, and this delay "
                + ("waits 'until' a moment" if has_key(w, "delay", "until") else "has no 'for'"),
                value_span(w, "delay", "calendar"),
                _CALENDAR_HINT,
            )
        if rule.delay_until:
            yield from _until_field(bundle, pipeline, owner, rule)


def _until_field(bundle: m.Bundle, pipeline: m.Pipeline, owner: str, rule: m.Rule) -> Iterator[Issue]:
    obj = bundle.objects.get(pipeline.object)
    if obj is None:
        return
    try:
        refs = templating.referenced_fields(rule.delay_until, expression=False)
    except templating.TemplateError:
        return  # E051 reports it
    if any(obj.fields[r.name].type in MOMENT_TYPES for r in refs if r.name in obj.fields):
        return
    if any(r.name not in obj.fields for r in refs):
        return  # E031 names the unknown field
    moments = [name for name, spec in obj.fields.items() if spec.type in MOMENT_TYPES]
    read = ", ".join(f"'{r.name}' ({obj.fields[r.name].type})" for r in refs) or "no field"
    if moments:
        hint = f'render one of its date fields ({", ".join(moments)}), e.g. until: "{{{{ record.{moments[0]} }}}}"'
    else:
        hint = f"add a date or datetime field to ObjectType '{obj.name}' and render it in 'until'"
    yield error(
        "E110",
        f"{owner}: 'until' must render a date or datetime field of '{obj.name}', and it reads {read}",
        value_span(rule.where, "delay", "until"),
        hint,
    )


def check_rule_waits(bundle: m.Bundle) -> Iterator[Issue]:
    """E112 ``wait`` without exactly one of ``event`` and ``changed``; E113 ``on_timeout``
    without ``wait.for``, or ``wait.for`` without ``on_timeout``; E031 unknown watched field."""
    for pipeline, stage, rule in _rules(bundle):
        owner = f"rule '{rule.name}' in stage '{stage.id}' of pipeline '{pipeline.name}'"
        wait = rule.wait
        if wait is not None and bool(wait.event) == bool(wait.changed):
            yield error(
                "E112",
                f"{owner}: 'wait' needs one of 'event' and 'changed'"
                + (", and it has both" if wait.event else ", and it has neither"),
                rule.where.at("wait"),
                "write wait: {event: invoice.paid} or wait: {changed: [quote_amount]}, with for: to bound it",
            )
        timed = wait is not None and wait.for_ is not None
        if rule.on_timeout and not timed:
            yield error(
                "E113",
                f"{owner}: 'on_timeout: {rule.on_timeout}' says what a wait that lasts its 'for' does, "
                + ("and the wait has no 'for'" if wait is not None else "and the rule has no 'wait'"),
                value_span(rule.where, "on_timeout"),
                "add for: to the wait (e.g. wait: {changed: [quote_amount], for: 2d}) or remove on_timeout"
                if wait is not None
                else "add a wait (e.g. wait: {event: invoice.paid, for: 3d}) or remove on_timeout",
            )
        if timed and not rule.on_timeout:
            yield error(
                "E113",
                f"{owner}: the wait ends after {wait.for_.text if wait and wait.for_ else ''}, "
                "and the rule does not say whether its action then runs",
                value_span(rule.where, "wait", "for"),
                "add on_timeout: run (act anyway) or on_timeout: skip (do nothing) to the rule",
            )
        if wait is not None and wait.for_ is not None and wait.for_.seconds < 0:
            yield error(
                "E060",
                f"{owner}: the wait's 'for: {wait.for_.text}' is negative",
                value_span(wait.where, "for"),
                "write a positive duration, e.g. 2h or 1d",
            )
        if wait is not None and wait.changed:
            yield from _watched_fields(bundle, pipeline, owner, rule, wait)


def _watched_fields(
    bundle: m.Bundle, pipeline: m.Pipeline, owner: str, rule: m.Rule, wait: m.RuleWait
) -> Iterator[Issue]:
    obj = bundle.objects.get(pipeline.object)
    if obj is None:
        return
    known = field_names(obj)
    for i, name in enumerate(wait.changed):
        if name not in known:
            yield error(
                "E031",
                f"{owner} waits for a change of '{name}', which object type '{obj.name}' does not have",
                item_span(wait.where, "changed", i),
                hint_with(f"add '{name}' to ObjectType '{obj.name}' or fix the name", name, obj.fields),
            )
