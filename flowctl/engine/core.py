"""The engine: ``Engine(bundle).handle(state, input, now) -> Step``.

Deterministic and free of I/O: the same bundle, state, input and ``now`` always give the same
step. Record writes made by actions (update_fields, also of a linked record; move_stage, handover;
create_record) are fed back in as derived changes within the same step, up to
``limits.chain_depth`` deep, so automations can trigger automations while a runaway loop stops
with a clear problem instead of spinning.
"""

from __future__ import annotations

import functools
import operator
import re
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from jinja2 import nodes
from jinja2.parser import Parser

from flowctl.engine.actions import ActionError, ActionRenderer
from flowctl.engine.care import resume_care, run_care
from flowctl.engine.flows import FlowRunner
from flowctl.engine.links import Links, run_scope, with_saved
from flowctl.engine.pipelines import PipelineRunner
from flowctl.engine.state import (
    CareDue,
    EventReceived,
    Input,
    Record,
    RecordChanged,
    Run,
    StageEntry,
    StateView,
    Step,
    TimerFired,
    entered,
    stage_moved,
)
from flowctl.engine.tx import Tx
from flowctl.engine.write_back import write_back
from flowctl.spec import model as m
from flowctl.spec.templating import TemplateError, compile_expression, environment, referenced_fields


class Engine:
    """Holds the bundle and indexes built once; ``handle`` is the only entry point."""

    def __init__(self, bundle: m.Bundle, version: str = "") -> None:
        self.bundle = bundle
        self.version = version
        self.tz = _zone(bundle.config.timezone)
        self.limits = bundle.config.limits
        self.actions = ActionRenderer(bundle)
        self.links = Links(bundle)
        self.flows = FlowRunner(self)
        self.pipelines = PipelineRunner(self)
        self.flows_by_trigger: dict[tuple[str, str], list[m.Flow]] = defaultdict(list)
        for flow in bundle.flows.values():
            if flow.enabled and flow.trigger is not None:
                self.flows_by_trigger[(flow.object, flow.trigger.on)].append(flow)
        self.writes_back = any(obj.write_back is not None for obj in bundle.objects.values())
        self.declared: dict[str, tuple[str, ...]] = {name: tuple(obj.fields) for name, obj in bundle.objects.items()}
        self._nothing_before: dict[str, dict[str, Any]] = {
            name: dict.fromkeys((*fields, "id", "object", "stage", "pipeline", "owner"))
            for name, fields in self.declared.items()
        }
        self._owners: dict[str, dict[str, str]] = {
            name: {"name": u.name, "full_name": u.full_name, "email": u.email, "phone": u.phone}
            for name, u in bundle.config.users.items()
        }
        self._local: tuple[datetime | None, Any, Any] = (None, None, None)
        self._iso: tuple[datetime | None, str] = (None, "")
        #: Events some wait_event node waits for: only these need a look at the waiting runs.
        self.waited: frozenset[str] = frozenset(
            node.event for flow in bundle.flows.values() for node in flow.nodes.values() if node.type == "wait_event"
        )

    # ------------------------------------------------------------------ contexts

    def context(
        self,
        record: Record,
        *,
        before: Record | None = None,
        event: Mapping[str, Any] | None = None,
        changed: tuple[str, ...] = (),
        now: datetime | None = None,
        tx: Tx | None = None,
    ) -> dict[str, Any]:
        """What conditions and templates see. Declared but unset fields read as None; ``linked``
        (the records the automations read one hop away) is read through ``tx``.

        Built for every condition and node, so it is kept lean; the parts that do not depend on
        the record (an all-None ``before``, the owner's details, the local time) are shared.
        Templates run in Jinja's immutable sandbox, so sharing them is safe.
        """
        view = self._blank(record.object)
        view.update(record.fields)
        view.update(id=record.id, object=record.object, stage=record.stage, pipeline=record.pipeline)
        if record.owner:
            view["owner"] = record.owner
        elif "owner" not in view:
            view["owner"] = ""
        ctx: dict[str, Any] = {"record": view, "changed": list(changed), "event": event if event is not None else {}}
        if before is not None:
            prior = self._blank(before.object)
            prior.update(before.view())
            ctx["before"] = prior
        else:
            ctx["before"] = self._nothing_before.get(record.object) or dict.fromkeys(view)
        if now is not None:
            if self._local[0] != now:
                local = now.astimezone(self.tz)
                self._local = (now, local, local.date())
            ctx["now"], ctx["today"] = self._local[1], self._local[2]
        owner = self._owners.get(str(view["owner"] or ""))
        if owner is not None:
            ctx["owner"] = owner
        if record.object in self.links.read:
            ctx["linked"] = self.links.linked(tx, record)
        return ctx

    def node_context(self, ctx: Mapping[str, Any]) -> dict[str, Any]:
        """A trigger's context as flow nodes see it: the same record, event and time, no change."""
        record = ctx["record"]
        return {**ctx, "changed": [], "before": self._nothing_before.get(record["object"]) or dict.fromkeys(record)}

    def _blank(self, object: str) -> dict[str, Any]:
        return dict.fromkeys(self.declared.get(object, ()))

    def condition(self, source: str, ctx: Mapping[str, Any]) -> tuple[bool, dict[str, Any]]:
        """Evaluate a condition; returns the result and the record values it looked at."""
        if not source:
            return True, {}
        simple = simple_condition(source)
        value = simple(ctx) if simple is not None else _JINJA
        if value is _JINJA:
            value = compile_expression(source).evaluate(ctx)
        return bool(value), _seen_values(source, ctx)

    # ------------------------------------------------------------------ entry point

    def handle(self, state: StateView, event: Input, now: datetime) -> Step:
        if self._iso[0] != now:
            self._iso = (now, now.isoformat())
        tx = Tx(state, now, event.key, self.version, self._iso[1])
        if isinstance(event, RecordChanged):
            if changes_something(event):  # an update that changes nothing (a CRM's echo) runs nothing
                self.on_change(tx, event)
        elif isinstance(event, EventReceived):
            self.on_event(tx, event)
        elif isinstance(event, TimerFired):
            self.on_timer(tx, event)
        elif isinstance(event, CareDue):
            run_care(self, tx, event)
        tx.step.stage_entries = stage_entries(event, tx.step, now)
        return tx.step

    def on_change(self, tx: Tx, change: RecordChanged) -> None:
        record = change.record
        if change.after is not None and change.op == "created":
            change = self.pipelines.place_new(tx, change)
            record = change.record
        changed = changed_fields(change.before, change.after)
        name = f"{record.object}.{change.op}"
        # Only runs already waiting before this change may be woken by it: a run that this very
        # change starts and that waits for the same event must wait for the next one.
        waiters = self.flows.waiters(tx, record, name) if name in self.waited else []
        rule_waiters = self.pipelines.waiters(tx, record, name, changed if change.op == "updated" else ())
        if change.op == "deleted":
            self.flows.cancel_runs(tx, record, "record deleted")
        # Pipelines first: stage exit/entry and triggers move the record, flows see the result.
        self.pipelines.on_change(tx, change, changed)
        self.flows.on_change(tx, change, changed)
        self.flows.wake(tx, waiters, name, {"changed": list(changed)})
        self.pipelines.wake(tx, rule_waiters, name, {"changed": list(changed)})

    def on_event(self, tx: Tx, event: EventReceived) -> None:
        record = tx.record(event.object, event.id)
        if record is None or record.deleted:
            tx.problem(
                "unknown_record",
                f"event {event.event} about {event.object} {event.id}, which does not exist; nothing ran",
                record=Record(object=event.object, id=event.id),
            )
            return
        waiters = self.flows.waiters(tx, record, event.event) if event.event in self.waited else []
        rule_waiters = self.pipelines.waiters(tx, record, event.event)
        self.pipelines.on_event(tx, record, event)
        self.flows.on_event(tx, record, event)
        self.flows.wake(tx, waiters, event.event, event.data)
        self.pipelines.wake(tx, rule_waiters, event.event, event.data)

    def on_timer(self, tx: Tx, fired: TimerFired) -> None:
        run = tx.run(fired.timer.run_id)
        if run is None or run.status != "waiting" or run.node != fired.timer.node:
            return  # cancelled, finished or moved on since (or fired twice): a stale timer does nothing
        if run.kind == "flow":
            self.flows.on_timer(tx, run, fired.timer)
        elif run.kind == "rule":
            self.pipelines.on_timer(tx, run, fired.timer)
        elif run.kind == "care":
            resume_care(self, tx, run, fired.timer)

    # ------------------------------------------------------------------ record writes

    def apply_record(self, tx: Tx, before: Record, after: Record, by: Run | None = None, node: str = "") -> None:
        """Store a record changed by an action and let it trigger automations (one level deeper).

        Past ``limits.chain_depth`` the write is kept but triggers nothing more; the problem goes
        on the trace of the run ``by`` that wrote it, so ``flowctl runs show`` tells why it stopped.
        """
        refusal = self.pipelines.refuse_write(before, after)
        if refusal:
            tx.problem("move_refused", refusal, record=before)
            after = replace(after, stage=before.stage, pipeline=before.pipeline)
            if after.fields == before.fields and after.owner == before.owner:
                return
        tx.put_record(after)
        self._chain(tx, RecordChanged(key=tx.key, op="updated", before=before, after=after), by, node)

    def create_record(self, tx: Tx, record: Record, by: Run | None = None, node: str = "") -> None:
        """Store a record an action created, placed in its pipeline, and let its own automations
        run (one level deeper, like any write an action makes)."""
        tx.put_record(record)
        created = self.pipelines.place_new(tx, RecordChanged(key=tx.key, op="created", before=None, after=record))
        self._chain(tx, created, by, node)

    def _chain(self, tx: Tx, derived: RecordChanged, by: Run | None, node: str) -> None:
        after = derived.record
        tx.step.changes.append(derived)
        if tx.depth >= self.limits.chain_depth:
            message = (
                f"automations triggered each other more than {self.limits.chain_depth} levels deep "
                f"on {after.object} {after.id}; stopped here "
                "(raise limits.chain_depth or break the loop)"
            )
            tx.problem("chain_depth", message, run=by, record=after)
            if by is not None:
                tx.trace(tx.run(by.id) or by, node, "error", message)
            return
        tx.depth += 1
        try:
            self.on_change(tx, derived)
        finally:
            tx.depth -= 1

    def perform(
        self, tx: Tx, run: Run, action: m.Action, node: str, record: Record, ctx: Mapping[str, Any], /, **changes: Any
    ) -> tuple[Run, bool]:
        """Perform one action for a run; returns the traced run and whether it succeeded.

        The action's trace line (its effect, or the error) names ``node``: it is the record of
        passing that node. ``changes`` are applied to the run with it (the node, its visits).
        """
        key = f"{run.id}:{run.steps}"
        if len(tx.step.effects) >= self.limits.effects_per_change:
            message = (
                f"{run.automation} node {node} on {run.object} {run.record_id}: more than "
                f"{self.limits.effects_per_change} effects from one change, event or timer; stopped here "
                "(raise limits.effects_per_change)"
            )
            tx.problem("effects_limit", message, run=run)
            return tx.trace(run, node, "error", message, **changes), False
        tx.acting = (run_scope(run), node)
        if self.links.saved and self.links.reads_saved(action):
            ctx = with_saved(ctx, self.links.saved_view(tx, run))
        try:
            outcome = self.actions.perform(action, record, ctx, tx, key, run.id)
        except (ActionError, TemplateError) as exc:
            tx.problem("action_failed", f"{run.automation} node {node}: {exc}", run=run)
            return tx.trace(run, node, "error", str(exc), steps=run.steps + 1, **changes), False
        moved = outcome.record
        # the record the action changed: this one, a linked one (update_fields target) or, when
        # None, one it creates
        before = record if moved is None or moved.key == record.key else tx.record(*moved.key)
        if moved is not None and before is not None:
            refusal = self.pipelines.refuse_write(before, moved)
            if refusal:  # the action fails: no effect for a move that does not happen
                tx.problem("move_refused", refusal, run=run)
                return tx.trace(run, node, "error", refusal, steps=run.steps + 1, **changes), False
        tx.add_effect(outcome.effect)
        back = write_back(self.bundle, outcome.effect, record, before, moved) if self.writes_back else None
        if back is not None:  # the same change, applied in the CRM the record comes from
            tx.add_effect(back)
        values = _summary(outcome.effect.params)
        if outcome.more:  # one message per recipient: the trace line names them all
            for effect in outcome.more:
                tx.add_effect(effect)
            values = {**values, "to": [e.params.get("to") for e in (outcome.effect, *outcome.more)]}
        if outcome.missing:
            missing = ", ".join(outcome.missing)
            tx.problem(
                "no_address", f"{run.automation} node {node}: no address for {missing}; sent to the others", run=run
            )
        run = tx.trace(run, node, "effect", action.type, values=values, steps=run.steps + 1, **changes)
        if moved is not None:
            if before is None:
                self.create_record(tx, moved, run, node)
            else:
                self.apply_record(tx, before, moved, run, node)
            run = tx.run(run.id) or run
        return run, True


def stage_entries(event: Input, step: Step, now: datetime) -> list[StageEntry]:
    """The stages records entered while handling ``event``, in order, read off the step's own
    before/after pairs: the input's change (a new record as placed into its pipeline) and then
    every derived change (trigger, rule and action writes), so no code path that moves a record
    has to remember to note it."""
    moves: list[tuple[Record | None, Record]] = []
    if isinstance(event, RecordChanged) and event.after is not None and event.op != "restored":
        after = event.after
        # a new record is placed (first stage, ``on: created`` trigger) before anything else
        # writes it: its placed version is the first derived change's ``before``, else the step's
        placed = next((c.before for c in step.changes if c.before is not None and c.before.key == after.key), None)
        moves.append((event.before, placed or step.records.get(after.key) or after))
    moves.extend((c.before, c.after) for c in step.changes if c.after is not None)
    return [
        StageEntry(
            object=after.object,
            record_id=after.id,
            pipeline=after.pipeline,
            stage=after.stage,
            at=now,
            key=event.key,
        )
        for before, after in moves
        if entered(before, after)
    ]


def changes_something(change: RecordChanged) -> bool:
    """Whether ``change`` is more than an echo: an update that leaves the fields, stage, pipeline
    and owner as they were (a CRM telling flowctl what flowctl just wrote back to it) is not."""
    before, after = change.before, change.after
    if change.op != "updated" or before is None or after is None:
        return True
    return (
        before.fields != after.fields
        or before.stage != after.stage
        or before.pipeline != after.pipeline
        or before.owner != after.owner
    )


def changed_fields(before: Record | None, after: Record | None) -> tuple[str, ...]:
    if before is None or after is None:
        rec = after or before
        return tuple(sorted(rec.fields)) if rec else ()
    names = set(before.fields) | set(after.fields)
    out = [n for n in names if before.fields.get(n) != after.fields.get(n)]
    if stage_moved(before, after):
        out.append("stage")
    if before.owner != after.owner and "owner" not in out:
        out.append("owner")
    return tuple(sorted(out))


_JINJA = object()  # what a simple condition returns when only Jinja can tell (a missing field)
_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "lteq": operator.le,
    "gt": operator.gt,
    "gteq": operator.ge,
    "in": lambda a, b: a in b,
    "notin": lambda a, b: a not in b,
}


@functools.lru_cache(maxsize=4096)
def simple_condition(source: str) -> Callable[[Mapping[str, Any]], Any] | None:
    """A plain-Python evaluator for the commonest conditions, or None for any other.

    ``record.status == 'confirmed'``, ``record.amount >= 1000``, ``record.segment in ['a', 'b']``,
    ``record.email``, ``not before.email``: one field of ``record``/``before``/``event`` compared
    with literals. Jinja compiles these to the same Python operators, so the result (and the
    message of a TypeError such as ``None >= 1000``) is the same; what only Jinja can answer (a
    field that is missing, a name a dict method shadows) returns ``_JINJA`` and goes to Jinja.
    Evaluating through Jinja costs more than the rest of handling a simple update.
    """
    try:
        parser = Parser(environment(), source, state="variable")
        expr = parser.parse_expression()
        if not parser.stream.eos:
            return None
    except jinja2.TemplateSyntaxError:
        return None
    negate = isinstance(expr, nodes.Not)
    if isinstance(expr, nodes.Not):
        expr = expr.node
    compare: tuple[Callable[[Any, Any], Any], Any] | None = None
    if isinstance(expr, nodes.Compare) and len(expr.ops) == 1 and not negate:
        operand = expr.ops[0]
        literal = _literal(operand.expr)
        if operand.op not in _COMPARE or literal is _JINJA:
            return None
        compare, expr = (_COMPARE[operand.op], literal), expr.expr
    if not (
        isinstance(expr, nodes.Getattr)
        and isinstance(expr.node, nodes.Name)
        and expr.node.name in ("record", "before", "event")
        and not hasattr(dict, expr.attr)
    ):
        return None
    root, name = expr.node.name, expr.attr

    def evaluate(ctx: Mapping[str, Any]) -> Any:
        scope = ctx.get(root)
        if type(scope) is not dict or name not in scope:
            return _JINJA
        value = scope[name]
        if compare is None:
            return not value if negate else value
        try:
            return compare[0](value, compare[1])
        except TypeError as exc:
            raise TemplateError(str(exc), source=source) from exc

    return evaluate


def _literal(node: nodes.Node) -> Any:
    if isinstance(node, nodes.Const) and (node.value is None or type(node.value) in (str, int, float, bool)):
        return node.value
    if isinstance(node, nodes.List | nodes.Tuple):
        items = [_literal(item) for item in node.items]
        if all(item is not _JINJA for item in items):
            return items if isinstance(node, nodes.List) else tuple(items)
    return _JINJA


def _seen_values(source: str, ctx: Mapping[str, Any]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for root, name, label in _references(source):
        scope = ctx.get(root)
        if root == "linked":  # linked.customer.full_name: the linked record's field
            ref, _, name = name.partition(".")
            scope = scope.get(ref) if isinstance(scope, Mapping) else None
        if isinstance(scope, Mapping):
            seen[label] = scope.get(name)
    return seen


@functools.lru_cache(maxsize=4096)
def _references(source: str) -> tuple[tuple[str, str, str], ...]:
    """(root, field) of every ``record.X``, ``before.X`` and ``event.X`` a condition reads, once
    per distinct condition: parsing it again for every record would cost more than evaluating it."""
    out: list[tuple[str, str]] = []
    for root in ("record", "before", "event"):
        if root not in source:
            continue
        try:
            out += [(root, ref.name) for ref in referenced_fields(source, expression=True, root=root)]
        except TemplateError:
            continue
    if "linked" in source:
        out += [("linked", f"{ref}.{name}") for ref, name in _LINKED_FIELD.findall(source)]
    return tuple((root, name, f"{root}.{name}") for root, name in dict.fromkeys(out))


_LINKED_FIELD = re.compile(r"\blinked\.([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)")


def _summary(params: Mapping[str, Any]) -> Mapping[str, Any]:
    """Trace-sized view of effect parameters (long texts and bodies cut); the parameters
    themselves when nothing needs cutting (effects are never changed once made)."""
    if not any(key in _BULKY or (type(value) is str and len(value) > 120) for key, value in params.items()):
        return params
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key in _BULKY:
            out[key] = "…"
        elif isinstance(value, str) and len(value) > 120:
            out[key] = value[:117] + "…"
        else:
            out[key] = value
    return out


_BULKY = frozenset(("html", "attachments", "body"))


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (KeyError, ValueError):
        return ZoneInfo("UTC")
