"""The shared values of the model (durations, metadata, the document base) and the ``Config``
and ``ObjectType`` documents."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType
from typing import Any, Literal

from flowctl.spec.calendars import Calendar
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
class Retention:
    """How long the store keeps what it no longer needs (Config ``retention:``).

    ``deleted_records``: a deleted record stays in the recycle bin, restorable. The others bound
    what grows with every change (``runtime/daemon/retention.py`` purges them): processed changes
    (and with them their idempotency keys: the window in which a replayed key is a duplicate),
    finished runs with their traces, sent and cancelled messages, done care occurrences. The
    purge never goes below what a guarantee needs (see ``store/retention`` and docs/operations.md).
    """

    deleted_records: timedelta = timedelta(days=30)
    processed_changes: timedelta = timedelta(days=7)
    finished_runs: timedelta = timedelta(days=30)
    sent_messages: timedelta = timedelta(days=30)
    care_occurrences: timedelta = timedelta(days=30)


@dataclass(frozen=True, kw_only=True, slots=True)
class User:
    """An employee that tasks, handovers and notifications can name."""

    name: str
    full_name: str = ""
    email: str = ""
    phone: str = ""
    supervisor: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class AccessEntry:
    """One token of the API (Config ``access:``): who holds it and what it may do. ``token`` is an
    ``${ENV}`` reference, resolved by the daemon; ``objects`` (writers only) lists the object types
    it may write, ``None`` meaning every one."""

    name: str
    token: str
    role: str
    objects: tuple[str, ...] | None = None
    where: Where = field(default=NOWHERE, compare=False)


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class Config(Document):
    kind: str = "Config"
    database: str = "sqlite:///flowctl.db"
    timezone: str = "UTC"
    #: Where a phone number without +country code is read (``flowctl.spec.phones``).
    phone_region: str = "VN"
    listen: str = "127.0.0.1:8080"
    api_token: str = ""
    access: tuple[AccessEntry, ...] = ()
    limits: Limits = field(default_factory=Limits)
    retention: Retention = field(default_factory=Retention)
    users: Mapping[str, User] = field(default_factory=empty_map)
    #: Business calendars by name (``delay: {for:, calendar:}``, ``only_during:``); only the readable ones.
    calendars: Mapping[str, Calendar] = field(default_factory=empty_map)


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


@dataclass(frozen=True, kw_only=True, slots=True)
class WriteBack:
    """Where an object's records live besides flowctl (a CRM), and how flowctl's names map to the
    CRM's: what the engine writes back there when an action changes such a record."""

    channel: str  # a Channel of type bitrix24
    entity: str = "deal"
    fields: Mapping[str, str] = field(default_factory=empty_map)  # flowctl field -> CRM field
    stages: Mapping[str, str] = field(default_factory=empty_map)  # flowctl stage -> CRM STAGE_ID
    users: Mapping[str, str] = field(default_factory=empty_map)  # flowctl user -> CRM user id
    where: Where = field(default=NOWHERE, compare=False)


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class ObjectType(Document):
    kind: str = "ObjectType"
    label: str = ""
    fields: Mapping[str, FieldSpec] = field(default_factory=empty_map)
    write_back: WriteBack | None = None
