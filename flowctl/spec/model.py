"""The typed, immutable model of a flowctl configuration directory.

Everything after the loader works on these values, never on raw YAML dicts. Expressions
(``if:`` conditions) and templates (``title:``, ``to:`` …) stay as source strings here; the engine
compiles them once. Durations are parsed to ``timedelta`` by the builder so every consumer agrees.
Each object carries ``where`` so checks can report ``file:line:col``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType
from typing import Any, Literal

from flowctl.spec.places import NOWHERE, Where

API_VERSION = "flowctl/v1"

KINDS = (
    "Config",
    "ObjectType",
    "Pipeline",
    "Flow",
    "CareProcess",
    "Template",
    "Channel",
    "Source",
    "AllocationRule",
    "Test",
)

EMPTY: Mapping[str, Any] = MappingProxyType({})


def empty_map() -> Mapping[str, Any]:
    return EMPTY


def frozen_map(values: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    """A read-only view, so model objects cannot be mutated through their mappings."""
    return MappingProxyType(dict(values or {}))


@dataclass(frozen=True, kw_only=True, slots=True)
class Duration:
    """A duration as written (``1d12h``) and its value."""

    text: str
    value: timedelta

    @property
    def seconds(self) -> int:
        return int(self.value.total_seconds())


@dataclass(frozen=True, kw_only=True, slots=True)
class Metadata:
    name: str
    description: str = ""
    labels: Mapping[str, str] = field(default_factory=empty_map)


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class Document:
    """Common head of every kind: ``apiVersion``, ``kind``, ``metadata``; ``where`` is the document."""

    kind: str
    metadata: Metadata
    where: Where = NOWHERE

    @property
    def name(self) -> str:
        return self.metadata.name


# --------------------------------------------------------------------------------------------
# Config


@dataclass(frozen=True, kw_only=True, slots=True)
class Limits:
    care_processes_per_object: int = 10
    chain_depth: int = 8
    effects_per_change: int = 100
    fields_per_record: int = 200
    request_bytes: int = 1_048_576
    max_visits: int = 100
    sends_in_flight: int = 1
    engine_stall_seconds: int = 60
    ready_lag_seconds: int = 300


@dataclass(frozen=True, kw_only=True, slots=True)
class User:
    """An employee that tasks, handovers and notifications can name."""

    name: str
    full_name: str = ""
    email: str = ""
    phone: str = ""
    supervisor: str = ""


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class Config(Document):
    kind: str = "Config"
    database: str = "sqlite:///flowctl.db"
    timezone: str = "UTC"
    listen: str = "127.0.0.1:8080"
    api_token: str = ""
    limits: Limits = field(default_factory=Limits)
    users: Mapping[str, User] = field(default_factory=empty_map)


# --------------------------------------------------------------------------------------------
# ObjectType

FieldType = Literal[
    "string",
    "text",
    "number",
    "integer",
    "money",
    "boolean",
    "date",
    "datetime",
    "email",
    "phone",
    "url",
    "enum",
    "user",
    "ref",
    "list",
    "json",
]
FIELD_TYPES: tuple[str, ...] = FieldType.__args__  # type: ignore[attr-defined]

#: Fields every record has whatever its type declares; conditions and templates may use them.
BUILTIN_FIELDS = ("id", "object", "stage", "pipeline", "owner", "created_at", "updated_at")


@dataclass(frozen=True, kw_only=True, slots=True)
class FieldSpec:
    name: str
    type: str = "string"
    required: bool = False
    label: str = ""
    values: tuple[str, ...] = ()  # for enum
    object: str = ""  # for ref
    where: Where = field(default=NOWHERE, compare=False)


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class ObjectType(Document):
    kind: str = "ObjectType"
    label: str = ""
    fields: Mapping[str, FieldSpec] = field(default_factory=empty_map)


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
    * update_fields: set (field -> template)
    * move_stage: stage (and pipeline when the object has several)
    * handover: assignee
    * notify: assignee (user or supervisor), text or template
    * create_document: template, format, save_as
    * webhook: channel, url, method, body (templates), headers
    * add_care_card: assignee (owner), care_date, layout, set (extra fields), notify_owner
    * call: to, channel, template or text (script)

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
    where: Where = field(default=NOWHERE, compare=False)


# --------------------------------------------------------------------------------------------
# Triggers

TriggerOn = Literal["created", "updated", "deleted", "stage_changed", "event"]
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
    * delay: for_ (a duration) or until (a datetime template), next
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
    until: str = ""
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
class Rule:
    """A stage rule: runs its action when a record enters the stage.

    ``after`` names rules of the same stage that must finish first; ``delay`` postpones it and
    ``if_`` is checked when it runs (after the delay, so a stale rule does nothing).
    """

    name: str
    action: Action
    after: tuple[str, ...] = ()
    delay: Duration | None = None
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


# --------------------------------------------------------------------------------------------
# Template


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class Template(Document):
    """A message or document template. ``*_file`` paths are resolved by the builder: the text
    is read into ``text``/``html`` and the path kept for messages."""

    kind: str = "Template"
    channel: str = ""  # medium: email, sms, call, task, document, webhook, notify
    subject: str = ""
    text: str = ""
    html: str = ""
    text_file: str = ""
    html_file: str = ""


# --------------------------------------------------------------------------------------------
# Channel


@dataclass(frozen=True, kw_only=True, slots=True)
class QuietHours:
    start: str  # "22:00"
    end: str  # "07:00"
    timezone: str = ""  # default: the recipient's, else Config's


@dataclass(frozen=True, kw_only=True, slots=True)
class SendPolicy:
    rate: str = ""  # "20/s", "100/m"
    quiet_hours: QuietHours | None = None
    daily_budget: int = 0
    per_recipient: str = ""  # "1/d"


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class Channel(Document):
    """Where effects leave: ``smtp``, ``http`` (SMS gateways, webhooks, call centres) or ``log``.

    Values may hold ``${ENV}`` references; they are resolved when the daemon delivers.
    """

    kind: str = "Channel"
    type: Literal["smtp", "http", "log"] = "log"
    # smtp
    host: str = ""
    port: int = 0
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: str = ""
    password: str = ""
    sender: str = ""  # the From address ("from:" in YAML)
    # http
    url: str = ""
    method: str = "POST"
    headers: Mapping[str, str] = field(default_factory=empty_map)
    body: Any = None
    timeout: Duration | None = None
    # delivery
    max_attempts: int = 8
    policy: SendPolicy = field(default_factory=SendPolicy)


# --------------------------------------------------------------------------------------------
# Source


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class Source(Document):
    """Where record changes come from: ``webhook`` (pushed) or ``sql`` (polled)."""

    kind: str = "Source"
    type: Literal["webhook", "sql"] = "webhook"
    # webhook
    path: str = ""
    auth: Literal["hmac", "bearer", "none"] = "hmac"
    secret: str = ""
    signature_header: str = "X-Signature"
    max_bytes: int = 1_048_576
    map: Mapping[str, Any] = field(default_factory=empty_map)  # object, id, fields, op, event, event_id (templates)
    # sql
    url: str = ""
    table: str = ""
    key: str = "id"
    cursor: tuple[str, ...] = ()
    interval: Duration | None = None
    object: str = ""


# --------------------------------------------------------------------------------------------
# AllocationRule


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class AllocationRule(Document):
    kind: str = "AllocationRule"
    strategy: Literal["round_robin", "least_loaded"] = "round_robin"
    users: tuple[str, ...] = ()


# --------------------------------------------------------------------------------------------
# Test


@dataclass(frozen=True, kw_only=True, slots=True)
class TestRecord:
    """A record of a test: a seed in ``records:`` or the record of a step. ``texts`` holds, by
    field, how a plain YAML number was written when that differs from the number
    (``phone: 0944000111``), so a text field can keep what the author wrote."""

    object: str
    id: str
    fields: Mapping[str, Any] = field(default_factory=empty_map)
    stage: str = ""
    pipeline: str = ""
    texts: Mapping[str, str] = field(default_factory=empty_map)
    where: Where = field(default=NOWHERE, compare=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class TestStep:
    """One scenario step. ``op`` is create, update, move, delete, event, advance or expect.

    * create/update/delete: record (object, id, fields)
    * move: record (object, id, stage)
    * event: event, record (object, id), data
    * advance: by (a duration) or to (an ISO timestamp)
    * expect: effects (None = not checked; () = none; ``exactly``: no other effect),
      record (object, id, stage?, fields?), refused (None = not checked; otherwise the step
      before was refused with a reason containing it, '' for any reason)
    """

    op: str
    record: TestRecord | None = None
    event: str = ""
    data: Mapping[str, Any] = field(default_factory=empty_map)
    by: Duration | None = None
    to: str = ""
    effects: tuple[Mapping[str, Any], ...] | None = None
    exactly: bool = False
    expect_record: Mapping[str, Any] | None = None
    refused: str | None = None
    where: Where = field(default=NOWHERE, compare=False)


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class Test(Document):
    __test__ = False  # not a pytest class
    kind: str = "Test"
    now: str = ""
    records: tuple[TestRecord, ...] = ()
    steps: tuple[TestStep, ...] = ()


# --------------------------------------------------------------------------------------------
# The whole directory


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class Bundle:
    """Every document of a config directory, by kind and name."""

    root: str
    config: Config
    objects: Mapping[str, ObjectType] = field(default_factory=empty_map)
    pipelines: Mapping[str, Pipeline] = field(default_factory=empty_map)
    flows: Mapping[str, Flow] = field(default_factory=empty_map)
    care: Mapping[str, CareProcess] = field(default_factory=empty_map)
    templates: Mapping[str, Template] = field(default_factory=empty_map)
    channels: Mapping[str, Channel] = field(default_factory=empty_map)
    sources: Mapping[str, Source] = field(default_factory=empty_map)
    rules: Mapping[str, AllocationRule] = field(default_factory=empty_map)
    tests: Mapping[str, Test] = field(default_factory=empty_map)

    def documents(self) -> list[Document]:
        out: list[Document] = [self.config]
        for group in (
            self.objects,
            self.pipelines,
            self.flows,
            self.care,
            self.templates,
            self.channels,
            self.sources,
            self.rules,
            self.tests,
        ):
            out.extend(group.values())
        return out

    def pipelines_for(self, object_name: str) -> list[Pipeline]:
        return [p for p in self.pipelines.values() if p.object == object_name]
