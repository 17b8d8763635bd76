"""Checks only the live state can answer: what a new version would do to what is in flight.

Each check yields ``Finding``s. ``refuse`` stops the deploy (``--allow-cancel`` or ``--force``
lift the ones that say so), ``warn`` and ``notice`` are shown and let it through.

* records in a stage that would disappear: refused, as Salework refuses to delete a step that
  still holds customers (move them first);
* runs waiting on a flow node or stage rule that would disappear, and their timers: refused
  unless ``--allow-cancel``; with it, the deploy cancels them in the same transaction;
* care processes that changed and already ran today: the edit applies from tomorrow (AMIS);
* a stage that holds records and gains a required field (``fields:``), or an object field that
  becomes ``required``, while records lack it: refused unless ``--force`` (then a warning), as
  Salework refuses to edit a step that holds records; the finding counts them and names the first;
* object fields removed while records still hold values: a warning, not a refusal. Records keep
  their values (nothing is deleted; the store is not the CRM's schema), the field simply stops
  being declared, and putting it back restores it; automations that still read the field are
  already refused by validation (E031).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from flowctl.engine.state import Record, Run
from flowctl.ports import Store
from flowctl.spec import model as m

Severity = Literal["refuse", "warn", "notice"]

#: Records and runs named per finding (the count is always complete).
SAMPLE = 10
PAGE = 1000


@dataclass(frozen=True, kw_only=True, slots=True)
class Finding:
    code: str
    severity: Severity
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "severity": self.severity, "message": self.message, **self.details}


def zone(bundle: m.Bundle) -> ZoneInfo:
    try:
        return ZoneInfo(bundle.config.timezone or "UTC")
    except (KeyError, ValueError):
        return ZoneInfo("UTC")


def records_of(store: Store, object: str) -> Iterator[Record]:
    """Every live record of ``object``, a page at a time."""
    after = ""
    while True:
        page = store.list_records(object, limit=PAGE, after=after)
        yield from page
        if len(page) < PAGE:
            return
        after = page[-1].id


# ------------------------------------------------------------------------------------ stages


def stage_checks(store: Store, old: m.Bundle | None, new: m.Bundle) -> Iterator[Finding]:
    """Records sitting in a stage the new version no longer has. Without the old version (none
    deployed, or stored without its files) every stage the records are in is checked."""
    for (object_, pipeline, stage), count in sorted(store.stage_counts().items()):
        if not pipeline or not stage or count == 0:
            continue
        if old is not None and not _has_stage(old, pipeline, stage):
            continue  # not a stage of the deployed version either: this change does not strand them
        target = new.pipelines.get(pipeline)
        if target is not None and target.stage(stage) is not None:
            continue
        where = (
            f"pipeline '{pipeline}' is removed"
            if target is None
            else f"stage '{stage}' of pipeline '{pipeline}' is removed"
        )
        sample = [r.id for r, _ in zip(_in_stage(store, object_, stage, pipeline), range(SAMPLE), strict=False)]
        yield Finding(
            code="stage-not-empty",
            severity="refuse",
            message=(
                f"{where} but {count} {object_} record{_s(count)} {_are(count)} in stage '{stage}' "
                f"({_ids(sample, count)}); move them to another stage first"
            ),
            details={"object": object_, "pipeline": pipeline, "stage": stage, "records": count, "sample": sample},
        )


def _has_stage(bundle: m.Bundle, pipeline: str, stage: str) -> bool:
    found = bundle.pipelines.get(pipeline)
    return found is not None and found.stage(stage) is not None


def _in_stage(store: Store, object_: str, stage: str, pipeline: str) -> Iterator[Record]:
    after = ""
    while True:
        page = store.list_records(object_, stage=stage, limit=PAGE, after=after)
        yield from (r for r in page if r.pipeline == pipeline)
        if len(page) < PAGE:
            return
        after = page[-1].id


# ------------------------------------------------------------------------------------ runs


def gone(run: Run, bundle: m.Bundle) -> str:
    """Why ``run`` cannot go on under ``bundle`` ("" when it can)."""
    if run.kind == "flow":
        flow = bundle.flows.get(run.name)
        if flow is None:
            return f"flow '{run.name}' is removed"
        if run.node and run.node not in flow.nodes:
            return f"node '{run.node}' of flow '{run.name}' is removed"
        return ""
    if run.kind == "rule":
        pipeline_name, _, rest = run.name.partition("/")
        stage_id, _, rule_name = rest.partition("/")
        pipeline = bundle.pipelines.get(pipeline_name)
        if pipeline is None:
            return f"pipeline '{pipeline_name}' is removed"
        stage = pipeline.stage(stage_id)
        if stage is None:
            return f"stage '{stage_id}' of pipeline '{pipeline_name}' is removed"
        if not any(rule.name == rule_name for rule in stage.rules):
            return f"rule '{rule_name}' of stage '{stage_id}' ({pipeline_name}) is removed"
    return ""


def run_checks(store: Store, new: m.Bundle, *, allow_cancel: bool) -> tuple[list[Finding], list[str]]:
    """Runs in flight on flow nodes or stage rules the new version removes; and their ids."""
    groups: dict[str, list[tuple[Run, int]]] = {}
    for run, timers in store.pending_work():
        why = gone(run, new)
        if why:
            groups.setdefault(why, []).append((run, timers))
    findings: list[Finding] = []
    ids: list[str] = []
    for why, found in groups.items():
        ids.extend(run.id for run, _ in found)
        timers = sum(n for _, n in found)
        waiting = sorted({run.status for run, _ in found})
        records = [f"{run.object} {run.record_id}" for run, _ in found[:SAMPLE]]
        what = f"{len(found)} run{_s(len(found))} ({'/'.join(waiting)}) with {timers} pending timer{_s(timers)}"
        action = "will be cancelled" if allow_cancel else "would be cancelled; pass --allow-cancel to cancel them"
        findings.append(
            Finding(
                code="runs-cancelled",
                severity="notice" if allow_cancel else "refuse",
                message=f"{why}: {what} {action} ({_ids(records, len(found))})",
                details={
                    "reason": why,
                    "runs": [r.id for r, _ in found],
                    "timers": timers,
                    "records": [
                        {"object": r.object, "id": r.record_id, "node": r.node, "status": r.status} for r, _ in found
                    ],
                },
            )
        )
    return findings, ids


# ------------------------------------------------------------------------------------ care


def care_checks(store: Store, changed: list[str], new: m.Bundle, now: datetime) -> Iterator[Finding]:
    """Changed care processes that already ran today (in the configured zone): as in AMIS, the
    edit applies from tomorrow; today's occurrences are not run again."""
    if not changed:
        return
    tz = zone(new)
    local = now.astimezone(tz)
    midnight = datetime.combine(local.date(), time(0), tzinfo=tz)
    ran = store.care_claims_since(midnight)
    tomorrow = local.date() + timedelta(days=1)
    for name in changed:
        count = ran.get(name, 0)
        if count:
            yield Finding(
                code="care-applies-tomorrow",
                severity="notice",
                message=(
                    f"care process '{name}' already ran today for {count} record{_s(count)}; "
                    f"this edit applies from tomorrow ({tomorrow.isoformat()}, {tz.key})"
                ),
                details={"process": name, "ran_today": count, "applies_from": tomorrow.isoformat()},
            )


# ------------------------------------------------------------------------------------ fields


def field_checks(store: Store, old: m.Bundle | None, new: m.Bundle) -> Iterator[Finding]:
    """Fields (or whole object types) removed while live records still hold values in them."""
    if old is None:
        return
    for name, obj in sorted(old.objects.items()):
        kept = new.objects.get(name)
        removed = [f for f in obj.fields if kept is None or f not in kept.fields]
        if not removed:
            continue
        held = dict.fromkeys(removed, 0)
        for record in records_of(store, name):
            for f in removed:
                if record.fields.get(f) not in (None, ""):
                    held[f] += 1
        for f, count in held.items():
            if count:
                yield Finding(
                    code="field-removed-with-values",
                    severity="warn",
                    message=(
                        f"field '{f}' of '{name}' is removed but {count} record{_s(count)} hold a value; "
                        "the values stay in the store (nothing is deleted) but no automation can use them"
                    ),
                    details={"object": name, "field": f, "records": count},
                )


# ------------------------------------------------------------------------------------ required


def required_checks(store: Store, old: m.Bundle | None, new: m.Bundle, *, force: bool) -> Iterator[Finding]:
    """Records that lack a field the new version starts to require of them: the ``fields:`` a
    stage holding them gains, or an object field that becomes ``required``. Without the old
    version every required field is checked."""
    severity: Severity = "warn" if force else "refuse"
    after = (
        "; they stay as they are (--force)"
        if force
        else "; fill it in for them first, or pass --force to deploy anyway"
    )
    occupied = {
        (pipeline, stage): (object_, count)
        for (object_, pipeline, stage), count in store.stage_counts().items()
        if count and stage
    }
    for name, pipeline in sorted(new.pipelines.items()):
        before = old.pipelines.get(name) if old is not None else None
        for stage in pipeline.stages:
            if (name, stage.id) not in occupied:
                continue
            prior = before.stage(stage.id) if before is not None else None
            added = [f for f in stage.fields if prior is None or f not in prior.fields]
            if not added:
                continue
            object_ = occupied[(name, stage.id)][0]
            for field_name, count, sample in _lacking(_in_stage(store, object_, stage.id, name), added):
                yield Finding(
                    code="required-field-missing",
                    severity=severity,
                    message=(
                        f"stage '{stage.id}' of pipeline '{name}' now requires field '{field_name}', but "
                        f"{count} {object_} record{_s(count)} in it lack{'s' if count == 1 else ''} it "
                        f"({_ids(sample, count)}){after}"
                    ),
                    details={
                        "object": object_,
                        "pipeline": name,
                        "stage": stage.id,
                        "field": field_name,
                        "records": count,
                        "sample": sample,
                    },
                )
    for name, obj in sorted(new.objects.items()):
        before_obj = old.objects.get(name) if old is not None else None
        added = [
            f
            for f, spec in obj.fields.items()
            if spec.required and (before_obj is None or f not in before_obj.fields or not before_obj.fields[f].required)
        ]
        if not added:
            continue
        for field_name, count, sample in _lacking(records_of(store, name), added):
            yield Finding(
                code="required-field-missing",
                severity=severity,
                message=(
                    f"field '{field_name}' of '{name}' becomes required, but {count} {name} "
                    f"record{_s(count)} lack{'s' if count == 1 else ''} it ({_ids(sample, count)}){after}"
                ),
                details={
                    "object": name,
                    "pipeline": "",
                    "stage": "",
                    "field": field_name,
                    "records": count,
                    "sample": sample,
                },
            )


def _lacking(records: Iterator[Record], names: list[str]) -> Iterator[tuple[str, int, list[str]]]:
    """(field, how many records lack it, the first ids) for each of ``names`` some record lacks."""
    counts = dict.fromkeys(names, 0)
    samples: dict[str, list[str]] = {n: [] for n in names}
    for record in records:
        for name in names:
            if record.fields.get(name) in (None, ""):
                counts[name] += 1
                if len(samples[name]) < SAMPLE:
                    samples[name].append(record.id)
    for name in names:
        if counts[name]:
            yield name, counts[name], samples[name]


# ------------------------------------------------------------------------------------ removal


def removal_check(old_keys: list[str], new_keys: list[str], *, force: bool) -> Iterator[Finding]:
    """A version that removes every document, or more than half of them, needs ``--force``: a
    truncated file or a wrong directory must not wipe the automations."""
    if not old_keys:
        return
    removed = [k for k in old_keys if k not in set(new_keys)]
    if not removed or (new_keys and len(removed) * 2 <= len(old_keys)):
        return
    what = "every document" if not new_keys else f"{len(removed)} of {len(old_keys)} documents"
    yield Finding(
        code="mass-removal",
        severity="notice" if force else "refuse",
        message=f"this version removes {what}" + ("" if force else "; pass --force if that is intended"),
        details={"removed": removed, "of": len(old_keys)},
    )


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def _are(n: int) -> str:
    return "is" if n == 1 else "are"


def _ids(sample: list[str], total: int) -> str:
    text = ", ".join(sample)
    return text + (f" and {total - len(sample)} more" if total > len(sample) else "")
