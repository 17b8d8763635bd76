"""The engine: ``Engine(bundle).handle(state, input, now) -> Step``.

Deterministic and free of I/O: the same bundle, state, input and ``now`` always give the same
step. Record writes made by actions (update_fields, move_stage, handover) are fed back in as
derived changes within the same step, up to ``limits.chain_depth`` deep, so automations can
trigger automations while a runaway loop stops with a clear problem instead of spinning.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from flowctl.engine.actions import ActionError, ActionRenderer
from flowctl.engine.state import (
    CareDue,
    EventReceived,
    Input,
    Record,
    RecordChanged,
    Run,
    StateView,
    Step,
    TimerFired,
)
from flowctl.engine.templating import TemplateError, compile_expression
from flowctl.engine.tx import Tx
from flowctl.spec import model as m


class ChainTooDeep(Exception):
    """Automations kept triggering each other past ``limits.chain_depth``."""


class Engine:
    """Holds the bundle and indexes built once; ``handle`` is the only entry point."""

    def __init__(self, bundle: m.Bundle, version: str = "") -> None:
        from flowctl.engine.flows import FlowRunner
        from flowctl.engine.pipelines import PipelineRunner

        self.bundle = bundle
        self.version = version
        self.tz = _zone(bundle.config.timezone)
        self.limits = bundle.config.limits
        self.actions = ActionRenderer(bundle)
        self.flows = FlowRunner(self)
        self.pipelines = PipelineRunner(self)
        self.flows_by_trigger: dict[tuple[str, str], list[m.Flow]] = defaultdict(list)
        for flow in bundle.flows.values():
            if flow.enabled and flow.trigger is not None:
                self.flows_by_trigger[(flow.object, flow.trigger.on)].append(flow)
        self.declared: dict[str, tuple[str, ...]] = {
            name: tuple(obj.fields) for name, obj in bundle.objects.items()
        }

    # ------------------------------------------------------------------ contexts

    def context(self, record: Record, *, before: Record | None = None, event: Mapping[str, Any] | None = None,
                changed: tuple[str, ...] = (), now: datetime | None = None) -> dict[str, Any]:  # fmt: skip
        """What conditions and templates see. Declared but unset fields read as None."""
        view = dict.fromkeys(self.declared.get(record.object, ()))
        view.update(record.view())
        ctx: dict[str, Any] = {"record": view, "changed": list(changed), "event": dict(event or {})}
        if before is not None:
            prior = dict.fromkeys(self.declared.get(before.object, ()))
            prior.update(before.view())
            ctx["before"] = prior
        else:
            ctx["before"] = dict.fromkeys(view)
        if now is not None:
            ctx["now"] = now.astimezone(self.tz)
            ctx["today"] = ctx["now"].date()
        owner = self.bundle.config.users.get(str(view.get("owner") or ""))
        if owner is not None:
            ctx["owner"] = {"name": owner.name, "full_name": owner.full_name, "email": owner.email,
                            "phone": owner.phone}  # fmt: skip
        return ctx

    def condition(self, source: str, ctx: Mapping[str, Any]) -> tuple[bool, dict[str, Any]]:
        """Evaluate a condition; returns the result and the record values it looked at."""
        if not source:
            return True, {}
        result = bool(compile_expression(source).evaluate(ctx))
        return result, _seen_values(source, ctx)

    # ------------------------------------------------------------------ entry point

    def handle(self, state: StateView, event: Input, now: datetime) -> Step:
        tx = Tx(state, now, event.key, self.version)
        if isinstance(event, RecordChanged):
            self.on_change(tx, event)
        elif isinstance(event, EventReceived):
            self.on_event(tx, event)
        elif isinstance(event, TimerFired):
            self.on_timer(tx, event)
        elif isinstance(event, CareDue):
            from flowctl.engine.care import run_care

            run_care(self, tx, event)
        return tx.step

    def on_change(self, tx: Tx, change: RecordChanged) -> None:
        if tx.depth > self.limits.chain_depth:
            tx.problem("chain_depth", f"automations triggered each other more than {self.limits.chain_depth} "
                       f"levels deep on {change.record.object} {change.record.id}; stopped here "
                       "(raise limits.chain_depth or break the loop)", record=change.record)  # fmt: skip
            return
        record = change.record
        if change.after is not None and change.op == "created":
            change = self.pipelines.place_new(tx, change)
            record = change.record
        changed = changed_fields(change.before, change.after)
        # Pipelines first: stage exit/entry and triggers move the record, flows see the result.
        self.pipelines.on_change(tx, change, changed)
        self.flows.on_change(tx, change, changed)
        self.flows.wake_waiters(tx, record, f"{record.object}.{change.op}", {"changed": list(changed)})

    def on_event(self, tx: Tx, event: EventReceived) -> None:
        record = tx.record(event.object, event.id)
        if record is None:
            record = Record(object=event.object, id=event.id)
        self.pipelines.on_event(tx, record, event)
        self.flows.on_event(tx, record, event)
        self.flows.wake_waiters(tx, record, event.event, event.data)

    def on_timer(self, tx: Tx, fired: TimerFired) -> None:
        run = tx.run(fired.timer.run_id)
        if run is None or not run.active:
            return  # cancelled or finished since: a stale timer does nothing
        if run.kind == "flow":
            self.flows.on_timer(tx, run, fired.timer)
        elif run.kind == "rule":
            self.pipelines.on_timer(tx, run, fired.timer)

    # ------------------------------------------------------------------ record writes

    def apply_record(self, tx: Tx, before: Record, after: Record) -> None:
        """Store a record changed by an action and let it trigger automations (one level deeper)."""
        if after.stage != before.stage and after.stage:
            refusal = self.pipelines.refuse_move(after, after.stage)
            if refusal:
                tx.problem("move_refused", refusal, record=before)
                after = replace(after, stage=before.stage, pipeline=before.pipeline)
                if after.fields == before.fields and after.owner == before.owner:
                    return
        tx.put_record(after)
        derived = RecordChanged(key=tx.key, op="updated", before=before, after=after)
        tx.step.changes.append(derived)
        tx.depth += 1
        try:
            self.on_change(tx, derived)
        finally:
            tx.depth -= 1

    def perform(self, tx: Tx, run: Run, action: m.Action, node: str, record: Record,
                ctx: Mapping[str, Any]) -> tuple[Run, bool]:  # fmt: skip
        """Perform one action for a run; returns the traced run and whether it succeeded."""
        key = f"{run.id}:{run.steps}"
        if len(tx.step.effects) >= self.limits.effects_per_change:
            tx.problem("effects_limit", f"more than {self.limits.effects_per_change} effects from one change; "
                       "stopped (raise limits.effects_per_change)", run=run)  # fmt: skip
            run = tx.trace(run, node, "error", "effects per change limit reached")
            return run, False
        try:
            outcome = self.actions.perform(action, record, ctx, tx, key, run.id)
        except (ActionError, TemplateError) as exc:
            tx.problem("action_failed", f"{run.automation} node {node}: {exc}", run=run)
            run = tx.trace(run, node, "error", str(exc))
            return replace(run, steps=run.steps + 1), False
        tx.add_effect(outcome.effect)
        run = tx.trace(run, node, "effect", action.type, values=_summary(outcome.effect.params))
        run = tx.put_run(replace(run, steps=run.steps + 1))
        if outcome.record is not None:
            self.apply_record(tx, record, outcome.record)
        return run, True


def changed_fields(before: Record | None, after: Record | None) -> tuple[str, ...]:
    if before is None or after is None:
        rec = after or before
        return tuple(sorted(rec.fields)) if rec else ()
    names = set(before.fields) | set(after.fields)
    out = [n for n in names if before.fields.get(n) != after.fields.get(n)]
    if before.stage != after.stage:
        out.append("stage")
    if before.owner != after.owner and "owner" not in out:
        out.append("owner")
    return tuple(sorted(out))


def _seen_values(source: str, ctx: Mapping[str, Any]) -> dict[str, Any]:
    from flowctl.engine.templating import referenced_fields

    seen: dict[str, Any] = {}
    for root in ("record", "before", "event"):
        scope = ctx.get(root)
        if not isinstance(scope, Mapping) or root not in source:
            continue
        for ref in referenced_fields(source, expression=True, root=root):
            seen[f"{root}.{ref.name}"] = scope.get(ref.name)
    return seen


def _summary(params: Mapping[str, Any]) -> dict[str, Any]:
    """Trace-sized view of effect parameters (long texts cut)."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key in ("html", "attachments", "body"):
            out[key] = "…"
        elif isinstance(value, str) and len(value) > 120:
            out[key] = value[:117] + "…"
        else:
            out[key] = value
    return out


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (KeyError, ValueError):
        return ZoneInfo("UTC")
