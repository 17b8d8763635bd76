"""Pipelines: stage entry starts rules, stage exit cancels them, triggers move records forward.

Each rule started by a stage entry is a run (``rule:<pipeline>/<stage>/<rule>``) sharing an
``entry`` id with its siblings. A rule with ``after:`` waits (status ``queued``) until the rules
it names have ended; a rule with ``delay:`` waits on a timer and re-checks its ``if:`` when it
wakes. ``delay: {until, offset}`` and ``wait:`` are kept in ``rule_waits``. Leaving the stage
cancels whatever of that entry has not run yet.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from flowctl.engine.business import delay_text, held_until, hold_detail, wake_at
from flowctl.engine.flows import event_data, starts_on_update
from flowctl.engine.records import no_stage, pipeline_problem
from flowctl.engine.rule_waits import WaitIndex, until_label, until_moment, wait_label
from flowctl.engine.state import EventReceived, Record, RecordChanged, Run, Timer, copier, stage_moved
from flowctl.engine.tx import Tx, evolve
from flowctl.engine.view import EngineView
from flowctl.spec import model as m
from flowctl.spec.templating import TemplateError

# replace() without its checks: every new record is placed in its pipeline
_record: Callable[..., Record] = copier(Record)
_change: Callable[..., RecordChanged] = copier(RecordChanged)
_BLANK_RUN = Run(id="", automation="", object="", record_id="")


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str | list | dict) and len(value) == 0)


class PipelineRunner:
    def __init__(self, engine: EngineView) -> None:
        self.engine = engine
        self.bundle = engine.bundle
        self.by_object: dict[str, list[m.Pipeline]] = {}
        for pipeline in self.bundle.pipelines.values():
            self.by_object.setdefault(pipeline.object, []).append(pipeline)
        self.waits = WaitIndex.of(self.bundle)

    # ------------------------------------------------------------------ lookups

    def pipeline_of(self, record: Record) -> m.Pipeline | None:
        if record.pipeline:
            return self.bundle.pipelines.get(record.pipeline)
        candidates = self.by_object.get(record.object, ())
        if record.stage:
            for pipeline in candidates:
                if pipeline.stage(record.stage):
                    return pipeline
        return candidates[0] if len(candidates) == 1 else None

    def refuse_move(self, record: Record, stage_id: str, pipeline: str = "") -> str:
        """Why ``record`` may not move into stage ``stage_id`` ('' when it may): the one rule for
        moves by the API, the worker, ``flowctl test`` and actions.

        ``pipeline`` names the pipeline of the stage when the move leaves the record's own (it
        must be one of the record's object); the target stage's required fields must be set.
        """
        if pipeline and pipeline != record.pipeline:
            problem = pipeline_problem(self.bundle, record.object, pipeline)
            if problem:
                return problem
            target: m.Pipeline | None = self.bundle.pipelines[pipeline]
        else:
            target = self.pipeline_of(record)
        if target is None:
            return f"{record.object} {record.id} is in no pipeline"
        stage = target.stage(stage_id)
        if stage is None:
            return no_stage(target, stage_id)
        missing = [f for f in stage.fields if _empty(record.fields.get(f))]
        if missing:
            where = f" of pipeline {target.name}" if target.name != record.pipeline else ""
            return (
                f"cannot move {record.object} {record.id} into stage '{stage_id}'{where}: "
                f"required field{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                f"{'are' if len(missing) > 1 else 'is'} empty"
            )
        return ""

    def refuse_write(self, before: Record, after: Record) -> str:
        """Why an action may not write ``after`` over ``before`` ('' when it may): a write that
        moves the record (``move_stage``, ``update_fields`` setting ``stage``) is a move."""
        if not after.stage or not stage_moved(before, after):
            return ""
        return self.refuse_move(replace(after, pipeline=before.pipeline), after.stage, after.pipeline)

    def place_new(self, tx: Tx, change: RecordChanged) -> RecordChanged:
        """A new record without a stage enters the furthest stage whose ``on: created`` trigger
        holds, else the first stage of its object's pipeline. A trigger's stage with empty
        required fields is refused (a ``move_refused`` problem) and the first stage taken."""
        record = change.record
        pipeline = self.pipeline_of(record)
        if pipeline is None or not pipeline.stages:
            return change
        stage = record.stage
        if not stage:
            stage = self.created_trigger_stage(tx, pipeline, record)
            refusal = self.refuse_move(replace(record, pipeline=pipeline.name), stage) if stage else ""
            if refusal:
                tx.problem("move_refused", refusal, record=record)
            if refusal or not stage:
                stage = pipeline.stages[0].id
        if stage == record.stage and record.pipeline == pipeline.name:
            return change
        placed = _record(record, stage=stage, pipeline=pipeline.name)
        tx.put_record(placed)
        return _change(change, after=placed)

    def created_trigger_stage(self, tx: Tx, pipeline: m.Pipeline, record: Record) -> str:
        """The furthest stage whose ``on: created`` trigger holds for a new record ('' if none)."""
        ctx = self.engine.context(record, now=tx.now, tx=tx)
        found = ""
        for stage in pipeline.stages:
            for trigger in stage.triggers:
                if trigger.on != "created":
                    continue
                if self.trigger_holds(tx, pipeline, stage, trigger, ctx, record):
                    found = stage.id
        return found

    def trigger_holds(
        self, tx: Tx, pipeline: m.Pipeline, stage: m.Stage, trigger: m.Trigger, ctx: Mapping[str, Any], record: Record
    ) -> bool:
        """Whether ``trigger``'s condition holds in ``ctx``. A condition that fails to render is a
        problem named for its pipeline and stage, and counts as not holding: the other triggers
        still run, as a broken template in one stage must not stop the record's other moves."""
        try:
            ok, _ = self.engine.condition(trigger.if_, ctx)
        except TemplateError as exc:
            tx.problem("condition_failed", f"pipeline {pipeline.name} stage {stage.id} trigger: {exc}", record=record)
            return False
        return ok

    # ------------------------------------------------------------------ changes

    def on_change(self, tx: Tx, change: RecordChanged, changed: tuple[str, ...]) -> None:
        before, after = change.before, change.after
        if change.op == "restored":  # back in the stage it was deleted in: not an entry, no rules
            assert after is not None
            self.apply_triggers(tx, after, "restored")
            return
        if after is None or after.deleted:
            if before is not None and not before.deleted:
                self.leave(tx, before, "record deleted")
            return
        old = before if before is not None and not before.deleted and before.stage else None
        if old is None or stage_moved(old, after):
            if old is not None:
                self.leave(tx, old, f"moved to {after.stage}")
            if after.stage:
                self.enter(tx, after)
            return
        if change.op == "updated":
            self.apply_triggers(tx, after, "updated", changed=changed, before=before)
            self.follow(tx, after, changed)

    def on_event(self, tx: Tx, record: Record, event: EventReceived) -> None:
        self.apply_triggers(tx, record, "event", event=event)

    def apply_triggers(
        self,
        tx: Tx,
        record: Record,
        on: str,
        *,
        changed: tuple[str, ...] = (),
        before: Record | None = None,
        event: EventReceived | None = None,
    ) -> None:
        pipeline = self.pipeline_of(record)
        if pipeline is None or not record.stage:
            return
        current = pipeline.index(record.stage)
        if current >= 0 and pipeline.stages[current].final:
            return  # final stages are left only by an explicit move
        ctx = self.engine.context(
            record, before=before, changed=changed, event=event.data if event else None, now=tx.now, tx=tx
        )
        target: m.Stage | None = None
        for index, stage in enumerate(pipeline.stages):
            if index == current:
                continue
            for trigger in stage.triggers:
                if trigger.on != on or (on == "event" and event and trigger.event != event.event):
                    continue
                if on == "updated" and not starts_on_update(trigger, changed):
                    continue
                if index < current and not trigger.allow_backward:
                    continue
                if self.trigger_holds(tx, pipeline, stage, trigger, ctx, record):
                    target = stage  # the furthest matching stage wins
        if target is None:
            return
        moved = replace(record, stage=target.id, pipeline=pipeline.name, version=record.version + 1)
        self.engine.apply_record(tx, record, moved)

    # ------------------------------------------------------------------ entering and leaving

    def enter(self, tx: Tx, record: Record) -> None:
        pipeline = self.pipeline_of(record)
        stage = pipeline.stage(record.stage) if pipeline else None
        if pipeline is None or stage is None or not stage.rules:
            return
        entry = tx.new_id("entry")
        runs: dict[str, Run] = {}
        for rule in stage.rules:
            run = evolve(  # Run(...) without the keyword checks of a frozen dataclass
                _BLANK_RUN,
                id=tx.new_id("run"),
                automation=f"rule:{pipeline.name}/{stage.id}/{rule.name}",
                object=record.object,
                record_id=record.id,
                status="queued" if rule.after else "running",
                node=rule.name,
                entry=entry,
                started_at=tx.now_iso,
                config_version=tx.config_version,
                seq=int(tx.now.timestamp() * 1000),
            )
            runs[rule.name] = tx.trace(run, rule.name, "enter", f"entered stage {stage.id}")
        for rule in stage.rules:
            if not rule.after:
                self.start_rule(tx, runs[rule.name], rule)

    def leave(self, tx: Tx, record: Record, why: str) -> None:
        for run in tx.active_runs(record.object, record.id):
            if run.kind != "rule" or run.status == "running":
                continue  # a running rule is the one moving the record: it finishes normally
            tx.cancel_timers(run.id)
            tx.trace(run, run.node, "end", f"left the stage ({why})", status="cancelled")

    # ------------------------------------------------------------------ rules

    def rule_of(self, run: Run) -> tuple[m.Pipeline, m.Stage, m.Rule] | None:
        pipeline_name, stage_id, rule_name = run.name.split("/", 2)
        pipeline = self.bundle.pipelines.get(pipeline_name)
        stage = pipeline.stage(stage_id) if pipeline else None
        rule = next((r for r in stage.rules if r.name == rule_name), None) if stage else None
        if pipeline is None or stage is None or rule is None:
            return None
        return pipeline, stage, rule

    def start_rule(self, tx: Tx, run: Run, rule: m.Rule) -> None:
        if rule.delay is not None and (rule.delay.seconds > 0 or rule.delay_calendar):
            due = wake_at(self.bundle, rule.delay_calendar, tx.now, rule.delay.value)
            if due > tx.now:
                text = delay_text(rule.delay, rule.delay_calendar)
                tx.wait(run, rule.name, due, "rule", f"delay {text} until {due.isoformat()}")
                return
        if rule.delay_until:
            self.wait_until(tx, run, rule)
            return
        self.after_delay(tx, run, rule)

    def after_delay(self, tx: Tx, run: Run, rule: m.Rule) -> None:
        """The rule's delay is over: hold it on its ``wait:``, else run it."""
        if rule.wait is None:
            self.run_rule(tx, run, rule)
            return
        timeout = tx.now + rule.wait.for_.value if rule.wait.for_ is not None else None
        label = wait_label(rule)
        detail = label + (f" until {timeout.isoformat()} (then {rule.on_timeout})" if timeout else "")
        tx.wait(run, rule.name, timeout, "timeout", detail, waiting_for=label)

    def wait_until(self, tx: Tx, run: Run, rule: m.Rule) -> None:
        """Wait for the rule's ``delay: {until, offset}`` moment, computed from the record now.

        A moment already past runs the rule at once while the field's own moment is still ahead
        (a reminder two hours before a visit one hour away still goes) and skips it once that is
        past too (no reminder for a visit that is over). While the field is empty the run waits
        without a timer; setting the field starts the timer (``follow``).
        """
        record = tx.record(run.object, run.record_id)
        if record is None or record.deleted:
            self.finish(tx, run, "cancelled", "record deleted")
            return
        label = until_label(rule)
        try:
            moments = until_moment(rule, self.engine.context(record, now=tx.now), self.engine.tz)
        except TemplateError as exc:
            tx.problem("render_failed", f"{run.automation}: {exc}", run=run)
            self.finish(tx, run, "failed", str(exc))
            return
        if moments is None:
            tx.wait(run, rule.name, None, "rule", f"{label}: empty, waiting for it to be set", waiting_for=label)
            return
        moment, due = moments
        if due > tx.now:
            tx.wait(run, rule.name, due, "rule", f"{label}: {due.isoformat()}", waiting_for=label)
            return
        if moment <= tx.now:
            self.finish(tx, run, "done", f"{label}: {due.isoformat()} and {moment.isoformat()} passed: skipped")
            return
        late = f"{label}: {due.isoformat()} passed, {moment.isoformat()} ahead: runs now"
        run = tx.trace(run, rule.name, "decision", late)
        self.after_delay(tx, tx.put_run(evolve(run, status="running", waiting_for="")), rule)

    def follow(self, tx: Tx, record: Record, changed: tuple[str, ...]) -> None:
        """Move the timers of rules waiting for a ``delay: {until}`` moment that reads a changed field."""
        current = tx.record(record.object, record.id) or record
        pipeline = self.pipeline_of(current)
        fields = self.waits.follow.get((pipeline.name, current.stage)) if pipeline is not None else None
        if not fields or fields.isdisjoint(changed):
            return
        for run in tx.active_runs(record.object, record.id):
            found = self.rule_of(run) if run.kind == "rule" and run.status == "waiting" else None
            if found is None or not found[2].delay_until or run.waiting_for != until_label(found[2]):
                continue
            tx.cancel_timers(run.id)
            moved = tx.trace(run, run.node, "decision", f"{', '.join(changed)} changed: the moment is computed again")
            self.wait_until(tx, moved, found[2])

    def waiters(self, tx: Tx, record: Record, event: str, changed: tuple[str, ...] = ()) -> list[tuple[str, str]]:
        """(run id, label) of the rule runs of ``record`` whose ``wait:`` ``event`` (or a change of
        ``changed``) ends, taken before the input is handled: a rule this very input starts waits
        for the next one."""
        if event not in self.waits.events and not (changed and record.object in self.waits.watched):
            return []
        out = []
        for run in tx.active_runs(record.object, record.id):
            found = self.rule_of(run) if run.kind == "rule" and run.status == "waiting" else None
            wait = found[2].wait if found is not None else None
            if found is None or wait is None or run.waiting_for != wait_label(found[2]):
                continue
            if (wait.event and wait.event == event) or not set(wait.changed).isdisjoint(changed):
                out.append((run.id, run.waiting_for))
        return out

    def wake(self, tx: Tx, waiters: list[tuple[str, str]], what: str, data: Mapping[str, Any]) -> None:
        """Run the rules of ``waiters`` whose wait ended, unless they left the stage meanwhile."""
        for run_id, label in waiters:
            run = tx.run(run_id)
            found = self.rule_of(run) if run is not None else None
            if run is None or found is None or run.status != "waiting" or run.waiting_for != label:
                continue
            tx.cancel_timers(run.id)
            run = tx.trace(run, run.node, "event", what, values=dict(data), waiting_for="")
            self.run_rule(tx, run, found[2], data)

    def on_timer(self, tx: Tx, run: Run, timer: Timer) -> None:
        found = self.rule_of(run)
        why = {"timeout": "wait timed out", "hold": "held action due"}.get(timer.kind, "delay due")
        run = tx.trace(run, run.node, "timer", f"{why} {timer.due.isoformat()}", waiting_for="")
        if found is None:
            self.finish(tx, run, "failed", "the rule no longer exists")
            return
        rule = found[2]
        if timer.kind == "hold":  # only_during: the working minute came; the if: is checked again
            self.run_rule(tx, run, rule, event_data(run) or None)  # the event that ended a wait:
        elif timer.kind != "timeout":
            self.after_delay(tx, run, rule)
        elif rule.on_timeout == "run":
            self.run_rule(tx, run, rule)
        else:
            self.finish(tx, run, "done", f"wait timed out (on_timeout: {rule.on_timeout or 'skip'}): skipped")

    def run_rule(self, tx: Tx, run: Run, rule: m.Rule, event: Mapping[str, Any] | None = None) -> None:
        record = tx.record(run.object, run.record_id)
        if record is None or record.deleted:
            self.finish(tx, run, "cancelled", "record deleted")
            return
        ctx = self.engine.context(record, now=tx.now, event=event, tx=tx)
        try:
            ok, seen = self.engine.condition(rule.if_, ctx)
        except TemplateError as exc:
            tx.problem("condition_failed", f"{run.automation}: {exc}", run=run)
            self.finish(tx, run, "failed", str(exc))
            return
        if rule.if_:
            run = tx.trace(run, rule.name, "condition", rule.if_, values=seen, result=ok)
        if not ok:
            self.finish(tx, run, "done", "condition false: skipped")
            return
        held = held_until(self.bundle, rule.action, tx.now)
        if held is not None:  # the if: is checked again when the working minute comes
            tx.wait(run, rule.name, held, "hold", hold_detail(rule.action, held))
            return
        run = tx.put_run(evolve(run, status="running"))
        run, success = self.engine.perform(tx, run, rule.action, rule.name, record, ctx)
        self.finish(tx, run, "done" if success else "failed", "done" if success else "action failed")

    def finish(self, tx: Tx, run: Run, status: str, why: str) -> None:
        run = tx.run(run.id) or run
        if not run.active:
            return  # cancelled meanwhile (the action moved the record out of the stage)
        run = tx.trace(run, run.node, "end", why, status=status)
        self.start_followers(tx, run)

    def start_followers(self, tx: Tx, ended: Run) -> None:
        """Start queued sibling rules whose ``after:`` rules have all ended."""
        found = self.rule_of(ended)
        if found is None:
            return
        _, stage, _ = found
        siblings = {r.node: r for r in tx.active_runs(ended.object, ended.record_id) if r.entry == ended.entry}
        for rule in stage.rules:
            run = siblings.get(rule.name)
            if run is None or run.status != "queued":
                continue
            if ended.node not in rule.after:
                continue
            if any(name in siblings for name in rule.after):
                continue  # some predecessor still running or waiting
            if ended.status != "done":
                self.finish(tx, run, "cancelled", f"after: {ended.node} did not succeed")
                continue
            self.start_rule(tx, tx.run(run.id) or run, rule)
