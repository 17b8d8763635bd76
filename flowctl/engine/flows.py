"""Flows: start runs on triggers (respecting the per-record mode) and walk their node graphs.

A run walks nodes until it must wait (a delay or a wait_event: a timer row and status
``waiting``) or ends (stop, no next node, goto_flow). Per record, ``mode`` decides what a new
trigger does while a run of the same flow is active: ``single`` ignores it, ``restart`` cancels
the active run and starts anew, ``queued`` starts it when the active one ends, ``parallel`` runs
up to ``max_parallel`` at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from flowctl.engine.business import held_until, hold_detail, wake_at
from flowctl.engine.state import (
    EventReceived,
    Record,
    RecordChanged,
    Run,
    Timer,
    TimerKind,
    TraceEntry,
    copier,
    stage_moved,
)
from flowctl.engine.tx import Tx, evolve
from flowctl.engine.view import EngineView
from flowctl.spec import model as m
from flowctl.spec.model import EMPTY
from flowctl.spec.templating import TemplateError, compile_template

#: Upper bound of nodes one run may pass while handling one input, whatever the config says.
MAX_NODES_PER_STEP = 1000

_run = copier(Run)  # Run(...) without the keyword checks of a frozen dataclass: one per trigger
_BLANK_RUN = Run(id="", automation="", object="", record_id="")


class FlowRunner:
    def __init__(self, engine: EngineView) -> None:
        self.engine = engine
        self.bundle = engine.bundle

    # ------------------------------------------------------------------ triggers

    def on_change(self, tx: Tx, change: RecordChanged, changed: tuple[str, ...]) -> None:
        record = change.record
        kinds: list[str] = [change.op]
        if change.before is not None and change.after is not None and stage_moved(change.before, change.after):
            kinds.append("stage_changed")
        for kind in kinds:
            for flow in self.engine.flows_by_trigger.get((record.object, kind), ()):
                trigger = flow.trigger
                assert trigger is not None
                if kind == "updated" and not starts_on_update(trigger, changed):
                    continue
                if kind == "stage_changed":
                    assert change.before is not None and change.after is not None
                    if trigger.from_stage and trigger.from_stage != change.before.stage:
                        continue
                    if trigger.to_stage and trigger.to_stage != change.after.stage:
                        continue
                # ``before`` costs a second view of the record: built only for a condition that reads it
                before = change.before if "before" in trigger.if_ else None
                ctx = self.engine.context(record, before=before, changed=changed, now=tx.now, tx=tx)
                self.trigger(tx, flow, record, ctx, kind)

    def on_event(self, tx: Tx, record: Record, event: EventReceived) -> None:
        for flow in self.engine.flows_by_trigger.get((record.object, "event"), ()):
            assert flow.trigger is not None
            if flow.trigger.event != event.event:
                continue
            ctx = self.engine.context(record, event=event.data, now=tx.now, tx=tx)
            self.trigger(tx, flow, record, ctx, f"event {event.event}", event=(event.event, event.data))

    def trigger(
        self,
        tx: Tx,
        flow: m.Flow,
        record: Record,
        ctx: Mapping[str, Any],
        why: str,
        event: tuple[str, Mapping[str, Any]] | None = None,
    ) -> None:
        assert flow.trigger is not None
        try:
            ok, seen = self.engine.condition(flow.trigger.if_, ctx)
        except TemplateError as exc:
            tx.problem("condition_failed", f"flow {flow.name} trigger condition: {exc}", record=record)
            return
        if not ok:
            return

        first = tx.entry("trigger", "condition", flow.trigger.if_ or why, seen, True)
        self.start(tx, flow, record, why, first, event, ctx)

    def start(
        self,
        tx: Tx,
        flow: m.Flow,
        record: Record,
        why: str,
        first: TraceEntry,
        event: tuple[str, Mapping[str, Any]] | None = None,
        ctx: Mapping[str, Any] | None = None,
    ) -> Run | None:
        """Start ``flow`` for ``record`` as its ``mode`` allows; ``first`` is the run's first trace line.

        Returns the new run, or None when the mode refused it (single: one is active; parallel:
        ``max_parallel`` are). ``event`` (name, data) is what ``event`` reads in the flow's nodes.
        """
        active = [r for r in tx.active_runs(record.object, record.id) if r.automation == f"flow:{flow.name}"]
        status = "running"
        if active:
            if flow.mode == "single":
                return None
            if flow.mode == "restart":
                for run in active:
                    self.cancel(tx, run, f"restarted by {why}")
            elif flow.mode == "queued":
                status = "queued"
            elif flow.mode == "parallel" and len([r for r in active if r.status != "queued"]) >= flow.max_parallel:
                tx.problem(
                    "max_parallel",
                    f"flow {flow.name} already has {flow.max_parallel} runs for "
                    f"{record.object} {record.id}; {why} ignored",
                    record=record,
                )
                return None
        run = self.new_run(tx, flow, record, status, after=active, trace=(first,))
        if event is not None:
            run = tx.trace(run, "trigger", "event", event[0], values=dict(event[1]))
        if status == "queued":
            return tx.trace(run, "trigger", "wait", "queued behind the active run")
        # The first node sees the record the trigger saw: reuse its context, without the
        # change's ``before`` and ``changed`` (nodes never see them, also not after a delay).
        seed = (record, self.engine.node_context(ctx)) if ctx is not None else None
        self.walk(tx, run, flow.start, seed)
        return tx.run(run.id)

    def new_run(
        self,
        tx: Tx,
        flow: m.Flow,
        record: Record,
        status: str = "running",
        after: list[Run] | None = None,
        trace: tuple[TraceEntry, ...] = (),
    ) -> Run:
        """A new run of ``flow``; ``after`` are the flow's active runs for the record, if known."""
        # Creation order, for queued mode: the clock's milliseconds, but always after the flow's
        # other active runs for the record (several triggers may come in the same millisecond).
        if after is None:
            after = [r for r in tx.active_runs(record.object, record.id) if r.automation == f"flow:{flow.name}"]
        seq = tx.now_ms
        for other in after:
            seq = max(seq, other.seq + 1)
        run = _run(
            _BLANK_RUN,
            id=tx.new_id("run"),
            automation=f"flow:{flow.name}",
            object=record.object,
            record_id=record.id,
            status=status,
            node=flow.start,
            started_at=tx.now_iso,
            updated_at=tx.now_iso,
            config_version=tx.config_version,
            seq=seq,
            trace=trace,
        )
        return tx.put_run(run)

    # ------------------------------------------------------------------ walking

    def walk(self, tx: Tx, run: Run, node_id: str, seed: tuple[Record, Mapping[str, Any]] | None = None) -> None:
        """Advance ``run`` from ``node_id`` until it waits or ends.

        ``seed`` is a record and the context already built for it; nodes reuse a context as long
        as the record is that same version.
        """
        flow = self.bundle.flows.get(run.name)
        if flow is None:
            self.end(tx, run, "failed", f"flow {run.name} no longer exists")
            return
        event = event_data(run)
        status: dict[str, Any] = {"status": "running"} if run.status != "running" else {}
        for _ in range(MAX_NODES_PER_STEP):
            node = flow.nodes.get(node_id)
            if node is None:
                self.end(
                    tx,
                    run,
                    "done" if not node_id else "failed",
                    "end of flow" if not node_id else f"no node '{node_id}'",
                )
                return
            record = tx.record(run.object, run.record_id)
            if record is None or (record.deleted and not _on_deleted(flow)):
                self.end(tx, run, "cancelled", "record deleted")
                return
            if seed is None or seed[0] is not record:
                seed = (record, self.engine.context(record, now=tx.now, tx=tx, event=event))
            ctx = seed[1]
            held = held_until(self.bundle, node.action, tx.now) if node.action is not None else None
            if held is not None and node.action is not None:  # counted as a visit when it runs
                self.wait(tx, run, node, held, "hold", hold_detail(node.action, held))
                return
            visits = dict(run.visits)
            visits[node.id] = visits.get(node.id, 0) + 1
            if visits[node.id] > self.engine.limits.max_visits:
                run = tx.put_run(evolve(run, node=node.id, visits=visits))
                self.end(
                    tx,
                    run,
                    "failed",
                    f"node {node.id} visited more than {self.engine.limits.max_visits} times (limits.max_visits)",
                )
                return
            if node.action is not None:  # its effect (or error) line is the trace of passing it
                run, ok = self.engine.perform(
                    tx, run, node.action, node.id, record, ctx, node=node.id, visits=visits, **status
                )
                status = {}
                if not ok:
                    self.end(tx, run, "failed", f"action {node.type} failed")
                    return
                run = tx.run(run.id) or run
                if not run.active:
                    return
                node_id = node.next
                continue
            run = tx.trace(run, node.id, "enter", node.type, node=node.id, visits=visits, **status)
            status = {}
            try:
                result = self.step(tx, run, flow, node, record, ctx)
            except TemplateError as exc:
                tx.problem("render_failed", f"flow {flow.name} node {node.id}: {exc}", run=run)
                self.end(tx, tx.run(run.id) or run, "failed", str(exc))
                return
            if result is None:
                return  # waiting or ended
            run = tx.run(run.id) or run
            if not run.active:
                return
            node_id = result
        self.end(tx, run, "failed", f"passed {MAX_NODES_PER_STEP} nodes in one step")

    def step(self, tx: Tx, run: Run, flow: m.Flow, node: m.Node, record: Record, ctx: Mapping[str, Any]) -> str | None:
        """Execute one control node; return the next node id ('' ends the run) or None when waiting."""
        t = node.type
        if t == "branch":
            for i, branch in enumerate(node.branches):
                ok, seen = self.engine.condition(branch.if_, ctx)
                run = tx.trace(run, node.id, "condition", branch.if_, values=seen, result=ok)
                if ok:
                    tx.trace(run, node.id, "decision", f"branch {i + 1} → {branch.next}")
                    return branch.next
            tx.trace(run, node.id, "decision", f"default → {node.default or 'end'}")
            return node.default
        if t == "delay":
            due = self.delay_until(tx, node, ctx)
            if due <= tx.now:
                tx.trace(run, node.id, "decision", f"until {due.isoformat()} already passed")
                return node.next
            self.wait(tx, run, node, due, "delay", f"until {due.isoformat()}")
            return None
        if t == "wait_event":
            timeout = tx.now + node.for_.value if node.for_ else None
            detail = f"event {node.event}" + (f" until {timeout.isoformat()}" if timeout else "")
            tx.wait(run, node.id, timeout, "timeout", detail, waiting_for=node.event, node=node.id)
            return None
        if t == "goto":
            count = run.visits.get(node.target, 0)
            if node.max_visits and count >= node.max_visits:
                tx.trace(
                    run,
                    node.id,
                    "decision",
                    f"{node.target} visited {count} times (max_visits {node.max_visits}) → {node.next or 'end'}",
                )
                return node.next
            tx.trace(run, node.id, "decision", f"goto {node.target}")
            return node.target
        if t == "goto_flow":
            target = self.bundle.flows.get(node.flow)
            self.end(tx, run, "done", f"continues in flow {node.flow}")
            if target is None:
                tx.problem("unknown_flow", f"flow {flow.name} node {node.id}: no flow '{node.flow}'", run=run)
                return None
            data = ctx.get("event") or {}

            first = tx.entry("start", "enter", f"from flow {flow.name} node {node.id}")
            started = self.start(
                tx, target, record, f"goto_flow from flow {flow.name}", first, ("goto_flow", data) if data else None
            )
            if started is None:
                tx.trace(
                    tx.run(run.id) or run,
                    node.id,
                    "decision",
                    f"flow {node.flow} not started: it runs for this record (mode {target.mode})",
                )
            return None
        self.end(tx, run, "done", "stop")  # stop
        return None

    def delay_until(self, tx: Tx, node: m.Node, ctx: Mapping[str, Any]) -> datetime:
        if node.for_ is not None:
            return wake_at(self.bundle, node.calendar, tx.now, node.for_.value)
        text = compile_template(node.until).render(ctx).strip()
        try:
            moment = datetime.fromisoformat(text)
        except ValueError as exc:
            raise TemplateError(
                f"until '{node.until}' rendered to '{text}', not a date and time "
                "(write e.g. {{ record.due_date }} 09:00)"
            ) from exc
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=self.engine.tz)
        return moment + node.offset.value if node.offset is not None else moment

    def wait(self, tx: Tx, run: Run, node: m.Node, due: datetime, kind: TimerKind, detail: str) -> None:
        tx.wait(run, node.id, due, kind, detail, node=node.id)

    # ------------------------------------------------------------------ wake-ups

    def on_timer(self, tx: Tx, run: Run, timer: Timer) -> None:
        flow = self.bundle.flows.get(run.name)
        node = flow.nodes.get(timer.node) if flow else None
        if flow is None or node is None:
            self.end(tx, run, "failed", f"node {timer.node} no longer exists")
            return
        run = tx.trace(run, node.id, "timer", f"{timer.kind} due {timer.due.isoformat()}", waiting_for="")
        if timer.kind == "timeout":
            self.walk(tx, run, node.on_timeout)
        elif timer.kind == "hold":
            self.walk(tx, run, node.id)  # the held action itself, now in working time
        else:
            self.walk(tx, run, node.next)

    def waiters(self, tx: Tx, record: Record, event: str) -> list[tuple[str, str]]:
        """(run id, node) of the runs of ``record`` waiting for ``event`` right now."""
        return [
            (run.id, run.node)
            for run in tx.active_runs(record.object, record.id)
            if run.kind == "flow" and run.status == "waiting" and run.waiting_for == event
        ]

    def wake(self, tx: Tx, waiters: list[tuple[str, str]], event: str, data: Mapping[str, Any]) -> None:
        """Continue the ``waiters`` (taken before the input was handled) whose wait the event satisfies."""
        for run_id, node_id in waiters:
            run = tx.run(run_id)
            if run is None or run.status != "waiting" or run.waiting_for != event or run.node != node_id:
                continue  # cancelled, restarted or moved on while this input was handled
            flow = self.bundle.flows.get(run.name)
            node = flow.nodes.get(run.node) if flow else None
            record = tx.record(run.object, run.record_id)
            if node is None or record is None:
                continue
            ctx = self.engine.context(record, event=data, now=tx.now, tx=tx)
            try:
                ok, seen = self.engine.condition(node.if_, ctx)
            except TemplateError as exc:
                tx.problem("condition_failed", f"flow {run.name} node {node.id}: {exc}", run=run)
                continue
            if node.if_:
                run = tx.trace(run, node.id, "condition", f"{event}: {node.if_}", values=seen, result=ok)
            if not ok:
                continue
            # The event's data is kept in the trace: later nodes read it as ``event``.
            run = tx.trace(run, node.id, "event", event, values=dict(data), waiting_for="")
            tx.cancel_timers(run.id)
            self.walk(tx, run, node.next)

    # ------------------------------------------------------------------ ending

    def cancel_runs(self, tx: Tx, record: Record, why: str) -> None:
        """Cancel every active flow run of ``record`` (it was deleted): nothing of it is left pending."""
        for run in tx.active_runs(record.object, record.id):
            if run.kind == "flow":
                tx.cancel_timers(run.id)
                tx.trace(run, run.node or "end", "end", why, status="cancelled", waiting_for="")

    def cancel(self, tx: Tx, run: Run, why: str) -> None:
        tx.cancel_timers(run.id)
        self.end(tx, run, "cancelled", why)

    def end(self, tx: Tx, run: Run, status: str, why: str) -> None:
        run = tx.trace(run, run.node or "end", "end", why, status=status, waiting_for="")
        if run.kind == "flow":
            self.start_queued(tx, run)

    def start_queued(self, tx: Tx, ended: Run) -> None:
        queued = [r for r in tx.active_runs(ended.object, ended.record_id) if r.automation == ended.automation]
        if not queued or any(r.status != "queued" for r in queued):
            return  # nothing waits, or another run of the flow is still active
        flow = self.bundle.flows.get(ended.name)
        if flow is None:
            return
        nxt = queued[0]
        nxt = tx.trace(nxt, "trigger", "decision", "the previous run ended; starting")
        self.walk(tx, nxt, flow.start)


def starts_on_update(trigger: m.Trigger, changed: tuple[str, ...]) -> bool:
    """Whether an update that changed ``changed`` starts an ``on: updated`` trigger.

    With ``changed:`` one of its fields must be among them (``stage`` included, for moves);
    without, some field must have changed: a pure move is a stage change, not a field update
    (what validate's loop check E080 assumes), and an update that changes nothing starts nothing.
    """
    if trigger.changed:
        return not set(trigger.changed).isdisjoint(changed)
    return any(name != "stage" for name in changed)


def _on_deleted(flow: m.Flow) -> bool:
    """Flows started by a deletion run on the deleted record (to tell someone, or call a webhook)."""
    return flow.trigger is not None and flow.trigger.on == "deleted"


def event_data(run: Run) -> Mapping[str, Any]:
    """What ``event`` reads in a run's nodes: the data of the last event it received.

    That is the event that started it (``on: event``) or, after a ``wait_event``, the event
    that ended the wait. Kept in the trace, so it survives delays, queues and restarts of the
    daemon; empty for runs started by record changes.
    """
    for entry in reversed(run.trace):
        if entry.kind == "event":
            return entry.values
    return EMPTY
