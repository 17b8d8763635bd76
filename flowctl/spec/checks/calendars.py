"""Business calendars that automations name (E119): delays counted in working time and actions
held to working hours must name a calendar of Config ``calendars:``.

A calendar with a bad field (E115-E118) is left out of the model but still declared, so naming
it is not reported twice.
"""

from __future__ import annotations

from collections.abc import Iterator

from flowctl.spec import model as m
from flowctl.spec.checks._common import action_sites, has_key, hint_with, value_span
from flowctl.spec.issues import Issue, error
from flowctl.spec.places import Span


def check_calendars(bundle: m.Bundle) -> Iterator[Issue]:
    """E119: ``only_during:``, a rule's ``delay: {calendar:}`` and a delay node's ``calendar:`` name a calendar."""
    for site in action_sites(bundle):
        name = site.action.only_during
        if name:
            yield from _named(bundle, name, site.owner, value_span(site.action.where, "only_during"))
    for pipeline in bundle.pipelines.values():
        for stage in pipeline.stages:
            for rule in stage.rules:
                if rule.delay_calendar:
                    owner = f"pipeline '{pipeline.name}', stage '{stage.id}', rule '{rule.name}'"
                    span = value_span(rule.where, "delay", "calendar")
                    yield from _named(bundle, rule.delay_calendar, owner, span)
    for flow in bundle.flows.values():
        for node in flow.nodes.values():
            if node.calendar:
                owner = f"flow '{flow.name}', node '{node.id}'"
                yield from _named(bundle, node.calendar, owner, value_span(node.where, "calendar"))


def _named(bundle: m.Bundle, name: str, owner: str, span: Span) -> Iterator[Issue]:
    config = bundle.config
    if name in config.calendars or has_key(config.where, "calendars", name):
        return
    yield error(
        "E119",
        f"{owner} names calendar '{name}', which Config does not define",
        span,
        hint_with("add it under Config spec.calendars or fix the name", name, config.calendars),
    )
