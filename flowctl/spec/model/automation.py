"""What runs: actions, triggers, and the ``Flow``, ``Pipeline`` and ``CareProcess`` documents."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from flowctl.spec.model.common import Document, Duration, empty_map
from flowctl.spec.places import NOWHERE, Where

# --------------------------------------------------------------------------------------------
# Actions (shared by flow nodes, stage rules and care processes)

ActionType = Literal[
    "send_email",
    "send_sms",
    "create_task",
    "update_fields",
    "move_stage",
    "handover",
    "notify",
    "create_document",
    "webhook",
    "add_care_card",
    "call",
    "add_note",
    "create_record",
]
ACTION_TYPES: tuple[str, ...] = ActionType.__args__  # type: ignore[attr-defined]


@dataclass(frozen=True, kw_only=True, slots=True)
class Assignee:
    """Who gets a task, record or notice.

    ``kind`` is ``user`` (``value`` names a user), ``owner`` (the record's owner), ``supervisor``
    (the owner's supervisor), ``rule`` (an AllocationRule named by ``value``) or ``field`` (a
    user-typed field of the record named by ``value``, e.g. an order's ``salesperson``).
    """

    kind: Literal["user", "owner", "supervisor", "rule", "field"]
    value: str = ""
    where: Where = field(default=NOWHERE, compare=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class Recipient:
    """One person or address a message goes to (``to:`` of send_email, send_sms and notify).

    ``kind`` is ``owner`` (the record's owner), ``supervisor`` (the owner's supervisor), ``user``
    (``value`` names a Config user), ``field`` (``value`` names a field of the record), ``linked``
    (``value`` is ``REF.FIELD``: a field of the record a ``ref`` field links to) or ``address``
    (``value`` is a Jinja2 template giving the address itself). See ``engine.recipients``.
    """

    kind: Literal["owner", "supervisor", "user", "field", "linked", "address"]
    value: str = ""
    #: as written (``linked.customer.email``): for messages, and so that whatever scans an
    #: automation's strings for ``linked.<ref>`` reads (to load those links) finds this one too
    spelled: str = field(default="", compare=False)
    where: Where = field(default=NOWHERE, compare=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class Attachment:
    """A document rendered from a template and attached to an email."""

    template: str
    format: Literal["pdf", "html", "original"] = "pdf"
    filename: str = ""  # a template; default "<template>.<ext>"
    where: Where = field(default=NOWHERE, compare=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class Action:
    """One side effect. ``type`` selects which of the optional fields apply:

    * send_email: template, to, cc, bcc, channel, attach
    * send_sms: template or text, to, channel
    * create_task: title, description, due, task_type, priority, assignee, watchers
    * update_fields: set (field -> template); target (a ref field: change the linked record)
    * move_stage: stage (and pipeline when the object has several)
    * handover: assignee
    * notify: assignee (user or supervisor), text or template
    * create_document: template, format, save_as
    * webhook: channel, url, method, body (templates), headers
    * add_care_card: assignee (owner), care_date, layout, set (extra fields), notify_owner
    * call: to, channel, template or text (script)
    * add_note: text (a note on the record's timeline)
    * create_record: object, pipeline, stage, set (field -> template), save_as

    ``to``/``title``/``text``/… are Jinja2 template strings; ``body`` keeps its JSON shape with
    template strings at the leaves.
    """

    type: str
    template: str = ""
    text: str = ""
    to: str = ""
    cc: str = ""
    bcc: str = ""
    channel: str = ""
    attach: tuple[Attachment, ...] = ()
    title: str = ""
    description: str = ""
    due: str = ""  # a duration ("1d") or a date template
    task_type: str = ""
    priority: str = ""
    assignee: Assignee | None = None
    watchers: tuple[Assignee, ...] = ()
    set: Mapping[str, Any] = field(default_factory=empty_map)
    stage: str = ""
    pipeline: str = ""
    format: Literal["pdf", "html", "original"] = "pdf"
    save_as: str = ""
    url: str = ""
    method: str = "POST"
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=empty_map)
    care_date: str = ""
    layout: str = ""
    notify_owner: bool = False
    #: A Config calendar: outside its working time the action waits for the next working minute.
    only_during: str = ""
    #: send_email, send_sms, notify: who gets it, when ``to:`` names people (owner, supervisor,
    #: users, record or linked fields, or a list); empty: ``to``/``assignee`` as before
    recipients: tuple[Recipient, ...] = ()
    object: str = ""  # create_record: the object type of the new record
    target: str = ""  # update_fields: a ref field of the record; the linked record is changed
    where: Where = field(default=NOWHERE, compare=False)


# --------------------------------------------------------------------------------------------
# Triggers

TriggerOn = Literal["created", "updated", "deleted", "restored", "stage_changed", "event"]
TRIGGER_KINDS: tuple[str, ...] = TriggerOn.__args__  # type: ignore[attr-defined]


@dataclass(frozen=True, kw_only=True, slots=True)
class Trigger:
    """What starts a flow, or moves a record into a stage.

    ``changed`` limits ``updated`` to changes of those fields; ``event`` names the event for
    ``on: event``; ``from_stage``/``to_stage`` limit ``stage_changed``; ``if_`` is a condition
    over ``record``, ``before``, ``event`` (the event's data) and ``changed``.
    """

    on: str
    changed: tuple[str, ...] = ()
    event: str = ""
    from_stage: str = ""
    to_stage: str = ""
    if_: str = ""
    allow_backward: bool = False  # stage triggers only
    where: Where = field(default=NOWHERE, compare=False)


# --------------------------------------------------------------------------------------------
# Flow


@dataclass(frozen=True, kw_only=True, slots=True)
class Branch:
    if_: str
    next: str
    where: Where = field(default=NOWHERE, compare=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class Node:
    """One node of a flow graph. ``type`` is a control type or an action type.

    * branch: branches (first true wins), default
    * delay: for_ (a duration, in working time when ``calendar`` names one) or until (a datetime
      template) and offset, next
    * wait_event: event, if_ (on the event), for_ (timeout), on_timeout, next
    * goto: target, max_visits
    * goto_flow: flow
    * stop
    * an action type: action, next
    """

    id: str
    type: str
    next: str = ""
    branches: tuple[Branch, ...] = ()
    default: str = ""
    for_: Duration | None = None
    calendar: str = ""  # delay: count ``for_`` in this calendar's working time
    until: str = ""
    offset: Duration | None = None  # added to until ("-2h")
    event: str = ""
    if_: str = ""
    on_timeout: str = ""
    target: str = ""
    max_visits: int = 0
    flow: str = ""
    action: Action | None = None
    where: Where = field(default=NOWHERE, compare=False)

    @property
    def is_action(self) -> bool:
        return self.action is not None

    def successors(self) -> tuple[str, ...]:
        """Node ids this node can lead to, in a stable order."""
        out = [b.next for b in self.branches]
        out += [n for n in (self.default, self.next, self.on_timeout, self.target) if n]
        return tuple(dict.fromkeys(out))


CONTROL_NODE_TYPES = ("branch", "delay", "wait_event", "goto", "goto_flow", "stop")
Mode = Literal["single", "restart", "queued", "parallel"]
MODES: tuple[str, ...] = Mode.__args__  # type: ignore[attr-defined]


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class Flow(Document):
    kind: str = "Flow"
    object: str
    trigger: Trigger | None = None  # None: reached only through goto_flow
    enabled: bool = True
    mode: str = "single"
    max_parallel: int = 10
    start: str
    nodes: Mapping[str, Node] = field(default_factory=empty_map)


# --------------------------------------------------------------------------------------------
# Pipeline


@dataclass(frozen=True, kw_only=True, slots=True)
class RuleWait:
    """What a stage rule waits for before its action: an ``event`` about the record, or a change
    of one of the ``changed`` fields; ``for_`` bounds the wait (the rule's ``on_timeout`` says
    what then)."""

    event: str = ""
    changed: tuple[str, ...] = ()
    for_: Duration | None = None
    where: Where = field(default=NOWHERE, compare=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class Rule:
    """A stage rule: runs its action when a record enters the stage.

    ``after`` names rules of the same stage that must finish first; ``delay`` postpones it
    (``delay: 2h`` or ``delay: {for: 2h}``); ``delay_until`` (``delay: {until: …, offset: …}``)
    postpones it to a moment rendered from a date field, plus ``delay_offset``, and follows that
    field when it changes. ``wait`` then holds it until an event or a field change, and
    ``on_timeout`` (``run`` or ``skip``) says what a wait that lasts ``wait.for_`` does. ``if_``
    is checked when it runs (after the delay and the wait, so a stale rule does nothing).
    """

    name: str
    action: Action
    after: tuple[str, ...] = ()
    delay: Duration | None = None
    #: A Config calendar: the delay counts only its working time (``delay: {for: 4h, calendar: office}``).
    delay_calendar: str = ""
    delay_until: str = ""
    delay_offset: Duration | None = None
    wait: RuleWait | None = None
    on_timeout: str = ""
    if_: str = ""
    where: Where = field(default=NOWHERE, compare=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class Stage:
    id: str
    name: str = ""
    fields: tuple[str, ...] = ()  # shown and required when a record enters this stage
    rules: tuple[Rule, ...] = ()
    triggers: tuple[Trigger, ...] = ()
    final: Literal["", "success", "failure"] = ""
    where: Where = field(default=NOWHERE, compare=False)


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class Pipeline(Document):
    kind: str = "Pipeline"
    object: str
    stages: tuple[Stage, ...] = ()

    def stage(self, stage_id: str) -> Stage | None:
        for stage in self.stages:  # a handful of stages: a loop beats building a map
            if stage.id == stage_id:
                return stage
        return None

    def index(self, stage_id: str) -> int:
        return next((i for i, s in enumerate(self.stages) if s.id == stage_id), -1)


# --------------------------------------------------------------------------------------------
# CareProcess


@dataclass(frozen=True, kw_only=True, slots=True)
class CareWhen:
    """When care happens: exactly one of ``anniversary_of``, ``date`` (fields) or ``cron``."""

    anniversary_of: str = ""
    date: str = ""
    cron: str = ""
    offset: Duration | None = None  # may be negative: "-1d"
    at: str = "09:00"  # local time, HH:MM
    where: Where = field(default=NOWHERE, compare=False)


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class CareProcess(Document):
    kind: str = "CareProcess"
    object: str
    enabled: bool = True
    priority: int = 100
    when: CareWhen
    if_: str = ""
    feb29: Literal["feb28", "mar1"] = "feb28"
    on_missed: Literal["catch_up", "skip"] = "catch_up"
    grace: Duration | None = None  # default 24h
    dst_gap: Literal["shift", "skip"] = "shift"
    dst_overlap: Literal["once", "twice"] = "once"
    actions: tuple[Action, ...] = ()
    #: Policies the author left out, so ``validate`` can state the default it applied.
    defaulted: tuple[str, ...] = ()
