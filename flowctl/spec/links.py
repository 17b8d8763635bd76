"""Links between records, read off the bundle once: which ref fields each object's automations
read through ``linked.<ref>``, and which records ``create_record`` saves under a name.

The runtime loads exactly these linked records before the engine runs (the engine stays pure)
and validate checks the same reads; ``created_id`` is how a created record gets an id that a
retry or a replay derives again instead of creating a second record.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterator, Mapping
from typing import Any

from flowctl.spec import model as m

#: ``linked.customer`` or ``linked['customer']``: the ref field read one hop away.
LINKED_READ = re.compile(r"\blinked\s*(?:\.\s*([A-Za-z_][A-Za-z0-9_]*)|\[\s*['\"]([A-Za-z_][A-Za-z0-9_]*)['\"]\s*\])")
#: ``saved.invoice``: a record an earlier ``create_record`` of the run saved under that name.
SAVED_READ = re.compile(r"\bsaved\s*(?:\.\s*([A-Za-z_][A-Za-z0-9_]*)|\[\s*['\"]([A-Za-z_][A-Za-z0-9_]*)['\"]\s*\])")


def strings(value: Any) -> Iterator[str]:
    """Every string inside a model value (dataclasses, mappings, sequences), depth first."""
    if isinstance(value, str):
        yield value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            if f.name != "where":
                yield from strings(getattr(value, f.name))
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from strings(item)


def names_read(pattern: re.Pattern[str], text: str) -> list[str]:
    return [match.group(1) or match.group(2) for match in pattern.finditer(text)]


def refs_of(obj: m.ObjectType | None) -> dict[str, str]:
    """ref field -> the object type it links to."""
    if obj is None:
        return {}
    return {name: spec.object for name, spec in obj.fields.items() if spec.type == "ref" and spec.object}


def _automations(bundle: m.Bundle) -> Iterator[tuple[str, Any, list[m.Action]]]:
    """(object, automation, its actions) of every flow, pipeline and care process."""
    for flow in bundle.flows.values():
        yield flow.object, flow, [n.action for n in flow.nodes.values() if n.action is not None]
    for pipeline in bundle.pipelines.values():
        yield pipeline.object, pipeline, [r.action for s in pipeline.stages for r in s.rules]
    for care in bundle.care.values():
        yield care.object, care, list(care.actions)


def _template_strings(bundle: m.Bundle, actions: list[m.Action]) -> Iterator[str]:
    for action in actions:
        for name in (action.template, *(a.template for a in action.attach)):
            template = bundle.templates.get(name) if name else None
            if template is not None:
                yield from (template.subject, template.text, template.html)


def links_read(bundle: m.Bundle) -> dict[str, tuple[str, ...]]:
    """object -> the ref fields its automations read (``linked.<ref>`` in a condition, an action
    or a template they use, or ``update_fields`` with ``target:``), for the objects that read any."""
    out: dict[str, dict[str, None]] = {}
    for object_name, automation, actions in _automations(bundle):
        refs = refs_of(bundle.objects.get(object_name))
        if not refs:
            continue
        found = out.setdefault(object_name, {})
        for text in (*strings(automation), *_template_strings(bundle, actions)):
            if "linked" in text:
                found.update(dict.fromkeys(n for n in names_read(LINKED_READ, text) if n in refs))
        found.update(dict.fromkeys(a.target for a in actions if a.type == "update_fields" and a.target in refs))
    return {name: tuple(found) for name, found in out.items() if found}


def saved_objects(bundle: m.Bundle) -> dict[str, str]:
    """save_as name -> object type, for every ``create_record`` that saves what it creates."""
    out: dict[str, str] = {}
    for _, _, actions in _automations(bundle):
        for action in actions:
            if action.type == "create_record" and action.save_as and action.object:
                out.setdefault(action.save_as, action.object)
    return out


def created_id(scope: str, name: str) -> str:
    """The id of the record ``create_record`` named ``name`` creates in ``scope`` (a run, or the
    stage entry its rules share): the same for a retry or a replay, so nothing is created twice."""
    return hashlib.sha256(f"{scope}\x00{name}".encode()).hexdigest()[:16]
