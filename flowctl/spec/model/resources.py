"""What automations use: ``Template``, ``Channel``, ``Source`` and ``AllocationRule`` documents."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from flowctl.spec.model.common import Document, Duration, empty_map

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
    # zalo: an approved ZNS template and its parameters (each value a template over the record)
    template_id: str = ""
    template_data: Mapping[str, str] = field(default_factory=empty_map)


# --------------------------------------------------------------------------------------------
# Channel


@dataclass(frozen=True, kw_only=True, slots=True)
class QuietHours:
    start: str  # "22:00"
    end: str  # "07:00"
    timezone: str = ""  # default: the recipient's, else Config's


@dataclass(frozen=True, kw_only=True, slots=True)
class ChannelFallback:
    """Where a message goes when a ``zalo_zns`` channel is refused the phone for good."""

    channel: str
    template: str


@dataclass(frozen=True, kw_only=True, slots=True)
class SendPolicy:
    rate: str = ""  # "20/s", "100/m"
    quiet_hours: QuietHours | None = None
    daily_budget: int = 0
    per_recipient: str = ""  # "1/d"


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class Channel(Document):
    """Where effects leave: ``smtp``, ``http`` (SMS gateways, webhooks, call centres), ``zalo_zns``
    (Zalo template messages), ``bitrix24`` (a portal's REST webhook: write-back) or ``log``.

    Values may hold ``${ENV}`` references; they are resolved when the daemon delivers.
    """

    kind: str = "Channel"
    type: Literal["smtp", "http", "log", "zalo_zns", "bitrix24"] = "log"
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
    # zalo_zns (url: the ZNS endpoint; secrets as ${ENV} references)
    app_id: str = ""
    secret_key: str = ""
    refresh_token: str = ""
    token_url: str = ""
    fallback: ChannelFallback | None = None
    # delivery
    max_attempts: int = 8
    policy: SendPolicy = field(default_factory=SendPolicy)


# --------------------------------------------------------------------------------------------
# Source


@dataclass(frozen=True, kw_only=True, slots=True)
class SourceFetch:
    """``fetch:`` of a webhook Source: the REST call that reads the full record an event names
    (``sources.fetch``). ``url`` holds an ``${ENV}`` reference; ``params`` are templates over ``payload``."""

    url: str
    method: Literal["GET", "POST"] = "POST"
    params: Mapping[str, Any] = field(default_factory=empty_map)
    timeout: Duration | None = None  # None: 10 seconds
    retries: int = 3


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class Source(Document):
    """Where record changes come from: ``webhook`` (pushed) or ``sql`` (polled)."""

    kind: str = "Source"
    type: Literal["webhook", "sql"] = "webhook"
    # webhook
    path: str = ""
    auth: Literal["hmac", "bearer", "none", "body_token", "zalo_oa"] = "hmac"
    secret: str = ""
    auth_options: tuple[str, ...] = ()  # the keys written under an ``auth:`` mapping (for checks)
    auth_field: str = ""  # body_token: dotted path of the body field holding the token
    app_id: str = ""  # zalo_oa: the Zalo app's id (may be an ${ENV} reference)
    signature_header: str = "X-Signature"
    max_bytes: int = 1_048_576
    map: Mapping[str, Any] = field(default_factory=empty_map)  # object, id, fields, op, event, event_id (templates)
    fetch: SourceFetch | None = None  # read the full record before mapping (``fetched.`` in map)
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
