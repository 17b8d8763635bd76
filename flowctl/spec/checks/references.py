"""Every name that points at another document or field resolves.

Object types (E030), record fields named outside strings (E031: ``changed:``, ``set:`` keys,
``field:`` assignees, test fixtures), stages (E032), templates (E034), channels (E035),
allocation rules (E036), flows (E037), users (E038, only when Config declares users) and
pipelines (E039). Names inside conditions and templates are checked by ``expressions``; flow
nodes by ``flows``; care date fields by ``schedules``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from flowctl.spec import model as m
from flowctl.spec.checks._common import (
    action_sites,
    field_names,
    hint_with,
    item_span,
    stages_of,
    value_span,
)
from flowctl.spec.dependencies import needs_document, needs_stages
from flowctl.spec.issues import Issue, error
from flowctl.spec.places import Span, Where

#: A channel every config has: messages are printed and kept, nothing leaves the machine.
BUILTIN_CHANNELS = ("log",)


def check_object_types(bundle: m.Bundle) -> Iterator[Issue]:
    """E030: flows, pipelines, care processes, sources, ref fields and tests name known types."""
    known = bundle.objects

    def unknown(name: str, what: str, where: Where, *keys: str) -> Iterator[Issue]:
        if name and name not in known:
            yield error(
                "E030",
                f"{what} names object type '{name}', which no ObjectType defines",
                value_span(where, *keys),
                hint_with(f"add an ObjectType '{name}' or fix the name", name, known),
                needs=needs_document("ObjectType", name),
            )

    for flow in bundle.flows.values():
        yield from unknown(flow.object, f"flow '{flow.name}'", flow.where, "object")
    for pipeline in bundle.pipelines.values():
        yield from unknown(pipeline.object, f"pipeline '{pipeline.name}'", pipeline.where, "object")
    for care in bundle.care.values():
        yield from unknown(care.object, f"care process '{care.name}'", care.where, "object")
    for source in bundle.sources.values():
        yield from unknown(source.object, f"source '{source.name}'", source.where, "object")
    for obj in bundle.objects.values():
        for spec in obj.fields.values():
            if spec.type == "ref":
                yield from unknown(spec.object, f"field '{obj.name}.{spec.name}'", spec.where, "object")
    for test in bundle.tests.values():
        for record in _test_records(test):
            yield from unknown(record.object, f"test '{test.name}'", record.where, "object")


def _test_records(test: m.Test) -> Iterator[m.TestRecord]:
    yield from test.records
    for step in test.steps:
        if step.record is not None:
            yield step.record


def check_fields(bundle: m.Bundle) -> Iterator[Issue]:
    """E031: field names written as names (not inside strings) exist on the object type."""

    def bad(object_name: str, name: str) -> bool:
        obj = bundle.objects.get(object_name)
        return obj is not None and bool(name) and name not in field_names(obj)

    def make(object_name: str, name: str, what: str, span: Span) -> Issue:
        obj = bundle.objects[object_name]
        return error(
            "E031",
            f"{what} names field '{name}', which object type '{object_name}' does not have",
            span,
            hint_with(f"add '{name}' to ObjectType '{object_name}' or fix the name", name, obj.fields),
        )

    for flow in bundle.flows.values():
        trigger = flow.trigger
        if trigger is not None:
            for i, name in enumerate(trigger.changed):
                if bad(flow.object, name):
                    yield make(
                        flow.object, name, f"the trigger of flow '{flow.name}'", item_span(trigger.where, "changed", i)
                    )
    for pipeline in bundle.pipelines.values():
        for stage in pipeline.stages:
            for trigger in stage.triggers:
                for i, name in enumerate(trigger.changed):
                    if bad(pipeline.object, name):
                        yield make(
                            pipeline.object,
                            name,
                            f"a trigger of stage '{stage.id}'",
                            item_span(trigger.where, "changed", i),
                        )
    for site in action_sites(bundle):
        action = site.action
        if action.type in ("update_fields", "create_record"):
            written = written_object(bundle, site.object, action)
            for name in action.set:
                if bad(written, name):
                    yield make(written, name, site.owner, action.where.at("set", name))
        for person in _people(action):
            if person.kind == "field" and bad(site.object, person.value):
                yield make(site.object, person.value, site.owner, _person_span(person))
    for test in bundle.tests.values():
        for record in _test_records(test):
            for name in record.fields:
                if bad(record.object, name):
                    yield make(record.object, name, f"test '{test.name}'", record.where.at("fields", name))


def written_object(bundle: m.Bundle, object_name: str, action: m.Action) -> str:
    """The object type whose fields an action's ``set:`` names: the created one for create_record,
    the linked one for update_fields with ``target:`` ('' when the target is no ref field)."""
    if action.type == "create_record":
        return action.object
    if action.target:
        obj = bundle.objects.get(object_name)
        spec = obj.fields.get(action.target) if obj is not None else None
        return spec.object if spec is not None and spec.type == "ref" else ""
    return object_name


def _people(action: m.Action) -> Iterator[m.Assignee]:
    if action.assignee is not None:
        yield action.assignee
    yield from action.watchers


def _person_span(person: m.Assignee) -> Span:
    key = person.kind if person.kind in ("user", "rule", "field") else ""
    if key and (*person.where.path, key) in person.where.marks:
        return value_span(person.where, key)
    return value_span(person.where)


def check_stages(bundle: m.Bundle) -> Iterator[Issue]:
    """E032/E039: stages and pipelines named by actions, triggers and tests exist."""
    for site in action_sites(bundle):
        action = site.action
        if action.type != "move_stage":
            continue
        if action.pipeline and action.pipeline not in bundle.pipelines:
            yield _unknown_pipeline(bundle, action.pipeline, site.owner, action.where)
            continue
        yield from _stage(bundle, site.object, action.pipeline, action.stage, site.owner, action.where, "stage")
    for flow in bundle.flows.values():
        trigger = flow.trigger
        if trigger is not None and trigger.on == "stage_changed":
            for named, key in ((trigger.from_stage, "from"), (trigger.to_stage, "to")):
                yield from _stage(
                    bundle, flow.object, "", named, f"the trigger of flow '{flow.name}'", trigger.where, key
                )
    for pipeline in bundle.pipelines.values():
        for stage in pipeline.stages:
            for trigger in stage.triggers:
                for name, key in ((trigger.from_stage, "from"), (trigger.to_stage, "to")):
                    yield from _stage(
                        bundle,
                        pipeline.object,
                        pipeline.name,
                        name,
                        f"a trigger of stage '{stage.id}'",
                        trigger.where,
                        key,
                    )
    for test in bundle.tests.values():
        for record in _records_with_stage(test):
            if record.pipeline and record.pipeline not in bundle.pipelines:
                yield _unknown_pipeline(bundle, record.pipeline, f"test '{test.name}'", record.where)
                continue
            yield from _stage(
                bundle, record.object, record.pipeline, record.stage, f"test '{test.name}'", record.where, "stage"
            )


def _records_with_stage(test: m.Test) -> Iterator[m.TestRecord]:
    yield from test.records
    for step in test.steps:
        if step.record is not None and step.op == "move":
            yield step.record


def _unknown_pipeline(bundle: m.Bundle, name: str, what: str, where: Where) -> Issue:
    return error(
        "E039",
        f"{what} names pipeline '{name}', which does not exist",
        value_span(where, "pipeline"),
        hint_with("define the Pipeline or fix the name", name, bundle.pipelines),
        needs=needs_document("Pipeline", name),
    )


def _stage(
    bundle: m.Bundle, object_name: str, pipeline: str, stage: str, what: str, where: Where, key: str
) -> Iterator[Issue]:
    if not stage or (object_name not in bundle.objects and not pipeline):
        return
    known = stages_of(bundle, object_name, pipeline)
    if stage in known:
        return
    if pipeline:
        place = f"pipeline '{pipeline}'"
    elif bundle.pipelines_for(object_name):
        place = f"the pipelines of '{object_name}'"
    else:
        place = f"any pipeline (none is defined for object type '{object_name}')"
    yield error(
        "E032",
        f"{what} names stage '{stage}', which is not a stage of {place}",
        value_span(where, key),
        hint_with("use one of the pipeline's stage ids", stage, known),
        needs=needs_stages(object_name, pipeline),
    )


def check_documents(bundle: m.Bundle) -> Iterator[Issue]:
    """E034/E035/E036/E037: templates, channels, allocation rules and flows named exist."""
    for site in action_sites(bundle):
        action = site.action
        if action.template and action.template not in bundle.templates:
            yield _missing(
                "E034",
                "template",
                action.template,
                site.owner,
                value_span(action.where, "template"),
                bundle.templates,
                "define a Template with this name or fix the name",
            )
        for i, attachment in enumerate(action.attach):
            if attachment.template and attachment.template not in bundle.templates:
                span = (
                    value_span(attachment.where, "template")
                    if (*attachment.where.path, "template") in attachment.where.marks
                    else item_span(action.where, "attach", i)
                )
                yield _missing(
                    "E034",
                    "template",
                    attachment.template,
                    site.owner,
                    span,
                    bundle.templates,
                    "define a Template with this name or fix the name",
                )
        if action.channel and action.channel not in bundle.channels and action.channel not in BUILTIN_CHANNELS:
            yield _missing(
                "E035",
                "channel",
                action.channel,
                site.owner,
                value_span(action.where, "channel"),
                [*bundle.channels, *BUILTIN_CHANNELS],
                "define a Channel with this name, fix the name, or leave 'channel' out to use the medium's default",
            )
        for person in _people(action):
            if person.kind == "rule" and person.value not in bundle.rules:
                yield _missing(
                    "E036",
                    "allocation rule",
                    person.value,
                    site.owner,
                    _person_span(person),
                    bundle.rules,
                    "define an AllocationRule with this name or fix the name",
                )
    for flow in bundle.flows.values():
        for node in flow.nodes.values():
            if node.type == "goto_flow" and node.flow and node.flow not in bundle.flows:
                yield _missing(
                    "E037",
                    "flow",
                    node.flow,
                    f"flow '{flow.name}', node '{node.id}'",
                    value_span(node.where, "flow"),
                    bundle.flows,
                    "define the Flow or fix the name",
                )


def check_users(bundle: m.Bundle) -> Iterator[Issue]:
    """E038: users named by assignees, allocation rules and supervisors exist (if Config lists users)."""
    users = bundle.config.users
    if not users:
        return
    hint = "add the user under Config spec.users or fix the name"
    for site in action_sites(bundle):
        for person in _people(site.action):
            if person.kind == "user" and person.value and person.value not in users:
                yield _missing("E038", "user", person.value, site.owner, _person_span(person), users, hint)
    for rule in bundle.rules.values():
        for i, name in enumerate(rule.users):
            if name not in users:
                yield _missing(
                    "E038",
                    "user",
                    name,
                    f"allocation rule '{rule.name}'",
                    item_span(rule.where, "users", i),
                    users,
                    hint,
                )
    config = bundle.config
    for user in users.values():
        if user.supervisor and user.supervisor not in users:
            yield _missing(
                "E038",
                "user",
                user.supervisor,
                f"the supervisor of user '{user.name}'",
                value_span(config.where, "users", user.name, "supervisor"),
                users,
                hint,
            )


#: The kind of document each "names X, which does not exist" code looks for.
_KIND_OF = {"E034": "Template", "E035": "Channel", "E036": "AllocationRule", "E037": "Flow", "E038": "Config"}


def _missing(code: str, what: str, name: str, owner: str, span: Span, known: Iterable[str], hint: str) -> Issue:
    kind = _KIND_OF[code]
    needs = needs_document(kind, "*" if kind == "Config" else name)
    return error(
        code, f"{owner} names {what} '{name}', which does not exist", span, hint_with(hint, name, known), needs=needs
    )
