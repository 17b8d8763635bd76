"""Write-back: the extra effect that applies an action in the CRM a record comes from.

An ObjectType with ``write_back:`` names a ``bitrix24`` channel and maps flowctl's field names,
stages and users to the CRM's. When ``update_fields``, ``move_stage``, ``handover``,
``create_task``, ``add_note`` or ``create_record`` acts on such a record, :func:`write_back`
gives one more effect for that channel: the REST method and its parameters, already in the CRM's
names. Its key is the action's effect key plus ``:wb``, so a retried or replayed step queues it
once, and the outbox sends it once.

Pure: it reads only the bundle and the records before and after the action.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from flowctl.engine.state import Effect, Record
from flowctl.spec import model as m

__all__ = ["KINDS", "SUFFIX", "echoed", "write_back"]

#: The actions written back, and the key suffix of their write-back effects.
KINDS = ("update_fields", "move_stage", "handover", "create_task", "add_note", "create_record")
SUFFIX = ":wb"


def write_back(
    bundle: m.Bundle, effect: Effect, record: Record, before: Record | None, after: Record | None
) -> Effect | None:
    """The write-back effect of ``effect`` (an action on ``record`` that turned ``before`` into
    ``after``: the changed record, a linked one, or one created), or None when nothing goes back."""
    if effect.action not in KINDS:
        return None
    if effect.action == "create_record":
        if after is None or before is not None:
            return None  # performed again: the record, and its write-back, were made the first time
        spec = _spec(bundle, after.object)
        if spec is None:
            return None
        fields = {**_fields(spec, {}, after), **_placement(spec, None, after)}
        return _effect(effect, spec, after, f"crm.{spec.entity}.add", {"fields": fields})
    if effect.action in ("create_task", "add_note"):
        spec = _spec(bundle, record.object)
        if spec is None:
            return None
        if effect.action == "add_note":
            comment = {
                "ENTITY_ID": record.id,
                "ENTITY_TYPE": spec.entity,
                "COMMENT": str(effect.params.get("text", "")),
            }
            return _effect(effect, spec, record, "crm.timeline.comment.add", {"fields": comment})
        return _effect(effect, spec, record, "tasks.task.add", {"fields": _task(spec, record, effect.params)})
    if before is None or after is None:
        return None
    spec = _spec(bundle, after.object)
    if spec is None:
        return None
    fields = {**_fields(spec, before.fields, after), **_placement(spec, before, after)}
    if not fields:
        return None  # nothing the CRM knows of changed
    return _effect(effect, spec, after, f"crm.{spec.entity}.update", {"id": after.id, "fields": fields})


def _spec(bundle: m.Bundle, object: str) -> m.WriteBack | None:
    obj = bundle.objects.get(object)
    return obj.write_back if obj is not None and obj.write_back is not None and obj.write_back.channel else None


def _fields(spec: m.WriteBack, before: Mapping[str, Any], after: Record) -> dict[str, Any]:
    """The mapped fields whose values ``after`` changed, in the CRM's names."""
    return {
        crm: after.fields.get(name)
        for name, crm in spec.fields.items()
        if name in after.fields and (name not in before or before.get(name) != after.fields.get(name))
    }


def _placement(spec: m.WriteBack, before: Record | None, after: Record) -> dict[str, Any]:
    """STAGE_ID and ASSIGNED_BY_ID when the stage or the owner changed and the CRM has a name for it."""
    out: dict[str, Any] = {}
    if after.stage and (before is None or before.stage != after.stage) and after.stage in spec.stages:
        out["STAGE_ID"] = spec.stages[after.stage]
    if after.owner and (before is None or before.owner != after.owner) and after.owner in spec.users:
        out["ASSIGNED_BY_ID"] = spec.users[after.owner]
    return out


def _task(spec: m.WriteBack, record: Record, params: Mapping[str, Any]) -> dict[str, Any]:
    """``tasks.task.add`` fields: the title, the responsible user, and the link to the record."""
    prefix = {"deal": "D", "lead": "L", "contact": "C", "company": "CO"}.get(spec.entity, spec.entity.upper())
    task: dict[str, Any] = {"TITLE": str(params.get("title", "")), "UF_CRM_TASK": [f"{prefix}_{record.id}"]}
    assignee = str(params.get("assignee") or "")
    if assignee in spec.users:
        task["RESPONSIBLE_ID"] = spec.users[assignee]
    if params.get("description"):
        task["DESCRIPTION"] = str(params["description"])
    if params.get("due"):
        task["DEADLINE"] = str(params["due"])
    return task


def _effect(effect: Effect, spec: m.WriteBack, record: Record, method: str, params: dict[str, Any]) -> Effect:
    return Effect(
        key=effect.key + SUFFIX,
        action="write_back",
        run_id=effect.run_id,
        object=record.object,
        record_id=record.id,
        channel=spec.channel,
        params={"method": method, "params": params, "of": effect.action},
    )


def echoed(spec: m.WriteBack, before: Record, after: Record, written: Iterable[Mapping[str, Any]]) -> Record:
    """``after`` (a change the CRM sent) without the parts that only repeat what flowctl itself
    wrote back lately: ``written`` are the CRM ``fields`` of those write-backs. A field, stage or
    owner the change sets to such a value keeps ``before``'s: an echo that arrives after flowctl
    changed the record again must not undo the newer change (and run automations on the way)."""
    fields = dict(after.fields)
    if "owner" in before.fields and "owner" not in fields and after.owner == before.owner:
        fields["owner"] = before.fields["owner"]  # a put that maps no owner kept the record's: so is its field
    sent = {(crm, _same(value)) for wrote in written for crm, value in wrote.items()}
    if not sent:
        return replace(after, fields=fields) if fields != after.fields else after
    for name, crm in spec.fields.items():
        if before.fields.get(name) != fields.get(name) and (crm, _same(fields.get(name))) in sent:
            if name in before.fields:
                fields[name] = before.fields[name]
            else:
                fields.pop(name, None)
    stage, owner = after.stage, after.owner
    if stage != before.stage and ("STAGE_ID", _same(spec.stages.get(stage))) in sent:
        stage = before.stage
    if owner != before.owner and ("ASSIGNED_BY_ID", _same(spec.users.get(owner))) in sent:
        owner = before.owner
        if "owner" in before.fields or "owner" in fields:
            fields["owner"] = before.fields.get("owner", before.owner)
    return replace(after, fields=fields, stage=stage, owner=owner)


def _same(value: Any) -> str:
    """A value as compared with what was written: 7000, 7000.0 and "7000" (a CRM's text) alike."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    try:
        return repr(float(value)) if isinstance(value, int | float | str) and str(value).strip() else str(value)
    except ValueError:
        return str(value)
