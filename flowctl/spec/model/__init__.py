"""The typed, immutable model of a flowctl configuration directory.

Everything after the loader works on these values, never on raw YAML dicts. Expressions
(``if:`` conditions) and templates (``title:``, ``to:`` …) stay as source strings here; the engine
compiles them once. Durations are parsed to ``timedelta`` by the builder so every consumer agrees.
Each object carries ``where`` so checks can report ``file:line:col``.

By module: ``common`` (durations, metadata, the document base, ``Config``, ``ObjectType``),
``automation`` (actions, triggers, ``Flow``, ``Pipeline``, ``CareProcess``), ``resources``
(``Template``, ``Channel``, ``Source``, ``AllocationRule``), ``scenarios`` (``Test``); here,
``Bundle``: the whole directory. Import them from ``flowctl.spec.model``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from flowctl.spec.model.automation import (
    ACTION_TYPES,
    CONTROL_NODE_TYPES,
    MODES,
    TRIGGER_KINDS,
    Action,
    ActionType,
    Assignee,
    Attachment,
    Branch,
    CareProcess,
    CareWhen,
    Flow,
    Mode,
    Node,
    Pipeline,
    Recipient,
    Rule,
    RuleWait,
    Stage,
    Trigger,
    TriggerOn,
)
from flowctl.spec.model.common import (
    API_VERSION,
    BUILTIN_FIELDS,
    EMPTY,
    FIELD_TYPES,
    KINDS,
    AccessEntry,
    Config,
    Document,
    Duration,
    FieldSpec,
    FieldType,
    Limits,
    Metadata,
    ObjectType,
    Retention,
    User,
    WriteBack,
    empty_map,
    frozen_map,
)
from flowctl.spec.model.resources import (
    AllocationRule,
    Channel,
    ChannelFallback,
    QuietHours,
    SendPolicy,
    Source,
    SourceFetch,
    Template,
)
from flowctl.spec.model.scenarios import (
    Test,
    TestRecord,
    TestStep,
)

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


__all__ = [
    "ACTION_TYPES",
    "API_VERSION",
    "BUILTIN_FIELDS",
    "CONTROL_NODE_TYPES",
    "EMPTY",
    "FIELD_TYPES",
    "KINDS",
    "MODES",
    "TRIGGER_KINDS",
    "AccessEntry",
    "Action",
    "ActionType",
    "AllocationRule",
    "Assignee",
    "Attachment",
    "Branch",
    "Bundle",
    "CareProcess",
    "CareWhen",
    "Channel",
    "ChannelFallback",
    "Config",
    "Document",
    "Duration",
    "FieldSpec",
    "FieldType",
    "Flow",
    "Limits",
    "Metadata",
    "Mode",
    "Node",
    "ObjectType",
    "Pipeline",
    "QuietHours",
    "Recipient",
    "Retention",
    "Rule",
    "RuleWait",
    "SendPolicy",
    "Source",
    "SourceFetch",
    "Stage",
    "Template",
    "Test",
    "TestRecord",
    "TestStep",
    "Trigger",
    "TriggerOn",
    "User",
    "WriteBack",
    "empty_map",
    "frozen_map",
]
