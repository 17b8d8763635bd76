"""Links and created records (E100–E106): ``linked.<ref>.<field>`` reads a ref field of the
record and a field of the object it links to; ``update_fields`` ``target:`` is a ref field;
``create_record`` names a known object type, a stage of its pipelines and sets its required
fields; ``saved.<name>`` names what a ``create_record`` of the same automation saves.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from flowctl.spec import model as m
from flowctl.spec.checks._common import action_sites, field_names, hint_with, leaves, text_span, value_span
from flowctl.spec.checks.expressions import Text, template_texts, texts
from flowctl.spec.issues import Issue, error
from flowctl.spec.links import LINKED_READ, SAVED_READ, refs_of
from flowctl.spec.places import PathPart


def _linked_issues(bundle: m.Bundle, text: Text, object_name: str, via: str = "") -> Iterator[Issue]:
    obj = bundle.objects.get(object_name)
    if obj is None or "linked" not in text.source:
        return
    refs = refs_of(obj)
    for match in LINKED_READ.finditer(text.source):
        ref = match.group(1) or match.group(2)
        place = text.place(bundle.root, match.start())
        if ref not in refs:
            yield error(
                "E100",
                f"{text.what}{via} reads linked.{ref}, but '{ref}' is not a ref field of object type '{object_name}'",
                place,
                hint_with(
                    f"declare {ref}: {{type: ref, object: <type>}} on '{object_name}' or name one of its ref fields",
                    ref,
                    refs,
                ),
            )
            continue
        linked = bundle.objects.get(refs[ref])
        field = re.match(
            r"\s*(?:\.\s*([A-Za-z_][A-Za-z0-9_]*)|\[\s*['\"]([A-Za-z_][A-Za-z0-9_]*)['\"]\s*\])",
            text.source[match.end() :],
        )
        name = (field.group(1) or field.group(2)) if field else ""
        if linked is None or not name or name in field_names(linked):
            continue
        yield error(
            "E101",
            f"{text.what}{via} reads linked.{ref}.{name}, but object type '{linked.name}' (linked by "
            f"'{ref}') has no field '{name}'",
            text.place(bundle.root, match.end() + field.start(1 if field.group(1) else 2)) if field else place,
            hint_with(f"add '{name}' to ObjectType '{linked.name}' or fix the name", name, linked.fields),
        )


def check_linked_reads(bundle: m.Bundle) -> Iterator[Issue]:
    """E100/E101 in conditions, inline templates and Template documents (against each user)."""
    for text in texts(bundle):
        if text.object:
            yield from _linked_issues(bundle, text, text.object)
    users: dict[str, list[tuple[str, str]]] = {}
    for site in action_sites(bundle):
        for name in (site.action.template, *(a.template for a in site.action.attach)):
            entries = users.setdefault(name, []) if name else []
            if name and all(obj != site.object for obj, _ in entries):
                entries.append((site.object, site.owner))
    for template in bundle.templates.values():
        for text in template_texts(bundle, template):
            for object_name, owner in users.get(template.name, []):
                yield from _linked_issues(bundle, text, object_name, f" (used by {owner})")


def check_record_writes(bundle: m.Bundle) -> Iterator[Issue]:
    """E102–E105: create_record's object, stage and required fields; update_fields' target."""
    for site in action_sites(bundle):
        action = site.action
        if action.type == "update_fields" and action.target:
            refs = refs_of(bundle.objects.get(site.object))
            if action.target not in refs:
                yield error(
                    "E105",
                    f"{site.owner} updates target '{action.target}', which is not a ref field of "
                    f"object type '{site.object}'",
                    value_span(action.where, "target"),
                    hint_with("name a field of {type: ref, object: <type>}", action.target, refs),
                )
        if action.type != "create_record":
            continue
        obj = bundle.objects.get(action.object)
        if obj is None:
            yield error(
                "E102",
                f"{site.owner} creates a record of object type '{action.object}', which no ObjectType defines",
                value_span(action.where, "object"),
                hint_with(f"add an ObjectType '{action.object}' or fix the name", action.object, bundle.objects),
            )
            continue
        stage = "" if "{" in action.stage else action.stage
        problem = _placement_problem(bundle, obj.name, stage, action.pipeline)
        if problem:
            yield error(
                "E103",
                f"{site.owner} creates a record of {obj.name}: {problem[1]}",
                value_span(action.where, problem[0]),
                "name a pipeline of the created object type and one of its stages",
            )
        missing = [n for n, spec in obj.fields.items() if spec.required and n not in action.set]
        if missing:
            yield error(
                "E104",
                f"{site.owner} creates a record of {obj.name} without its required field(s) {', '.join(missing)}",
                value_span(action.where, "set"),
                f"set them under set:, e.g. {missing[0]}: <a value or a template>",
            )


def _placement_problem(bundle: m.Bundle, object_name: str, stage: str, pipeline: str) -> tuple[str, str] | None:
    """(key, why) when a record of ``object_name`` cannot be placed in ``pipeline``/``stage``."""
    pipelines = bundle.pipelines_for(object_name)
    known = ", ".join(sorted(p.name for p in pipelines)) or "none"
    if pipeline:
        found = bundle.pipelines.get(pipeline)
        if found is None or found.object != object_name:
            return "pipeline", f"'{pipeline}' is not a pipeline of {object_name} (its pipelines: {known})"
        pipelines = [found]
    if stage and not any(p.stage(stage) for p in pipelines):
        stages = ", ".join(s.id for p in pipelines for s in p.stages) or "none"
        return "stage", f"no pipeline of {object_name} has a stage '{stage}' (stages: {stages})"
    return None


def check_saved_reads(bundle: m.Bundle) -> Iterator[Issue]:
    """E106: ``saved.<name>`` names the save_as of a create_record in the same automation."""
    saved: dict[tuple[str, ...], set[str]] = {}
    sites = list(action_sites(bundle))
    for site in sites:
        if site.action.type == "create_record" and site.action.save_as:
            saved.setdefault(site.automation, set()).add(site.action.save_as)
    for site in sites:
        known = saved.get(site.automation, set())
        for text in _action_strings(site.action):
            for match in SAVED_READ.finditer(text[0]):
                name = match.group(1) or match.group(2)
                if name in known:
                    continue
                yield error(
                    "E106",
                    f"{site.owner} reads saved.{name}, but no create_record of the same automation saves "
                    f"a record as '{name}'",
                    text_span(bundle.root, value_span(site.action.where, *text[1]), text[0], match.start()),
                    hint_with("add save_as: <name> to a create_record before it, or fix the name", name, known),
                )


def check_saved_in_conditions(bundle: m.Bundle) -> Iterator[Issue]:
    """E106 too: conditions are checked before an action runs, so they never see ``saved``."""
    for text in texts(bundle):
        if not text.expression or "saved" not in text.source:
            continue
        for match in SAVED_READ.finditer(text.source):
            yield error(
                "E106",
                f"{text.what} reads saved.{match.group(1) or match.group(2)}, but only actions see saved records",
                text.place(bundle.root, match.start()),
                "read it in the action's text or set:, or copy what you need onto the record first",
            )


def _action_strings(action: m.Action) -> Iterator[tuple[str, tuple[PathPart, ...]]]:
    """Every inline template of an action that mentions ``saved``, with its path."""
    for key in ("title", "description", "to", "cc", "bcc", "text", "url", "due", "stage"):
        value = getattr(action, key)
        if isinstance(value, str) and "saved" in value:
            yield value, (key,)
    for root, value in (("set", action.set), ("body", action.body), ("headers", action.headers)):
        for path, leaf in leaves(value, (root,)):
            if isinstance(leaf, str) and "saved" in leaf:
                yield leaf, path
