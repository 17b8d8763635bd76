"""Channel adapters: where effects leave the system (``smtp``, ``http``, ``zalo_zns``, ``bitrix24``,
``log``), one module each.

:func:`build_senders` turns a config's Channels into the senders the delivery loop uses. A
channel that needs an ``${ENV}`` variable the environment does not set gets an
:class:`Unconfigured` sender instead: the deliverer holds its messages (``held: channel sms:
SMS_GATEWAY_URL is not set``) until a sender can be built, and never dead-letters them for that.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TextIO

from flowctl.channels.base import (
    DeliveryError,
    PermanentFailure,
    Receipt,
    Sender,
    TemporaryFailure,
    env_names,
    resolve_env,
)
from flowctl.channels.bitrix24 import Bitrix24Sender
from flowctl.channels.env import by_owner, unset_env
from flowctl.channels.http import HttpSender
from flowctl.channels.log import LogSender
from flowctl.channels.smtp import SmtpSender
from flowctl.channels.zalo import TokenStore, ZaloSender
from flowctl.ports import Clock, OutboxRow
from flowctl.spec.model import Bundle

__all__ = [
    "Bitrix24Sender",
    "DeliveryError",
    "HttpSender",
    "LogSender",
    "PermanentFailure",
    "Receipt",
    "Sender",
    "SmtpSender",
    "TemporaryFailure",
    "Unconfigured",
    "ZaloSender",
    "build_senders",
    "close_senders",
    "referenced_env",
    "resolve_env",
]


def build_senders(
    bundle: Bundle,
    env: Mapping[str, str],
    log_stream: TextIO | None = None,
    store: TokenStore | None = None,
    clock: Clock | None = None,
) -> dict[str, Sender]:
    """A sender for every Channel of ``bundle`` by name, and ``log`` (always the log sender).

    A ``zalo_zns`` channel keeps its rotating tokens (and queues its fallback) in ``store`` and
    reads the time from ``clock``; without them (outside the daemon) its messages are held.

    Senders see only the variables of ``env`` that the config references as ``${NAME}``: rendered
    record data that happens to contain ``${DATABASE_URL}`` can then never pull in anything else.
    All ``log`` channels share one :class:`LogSender`, so its ``sent`` list has every message.
    """
    names = referenced_env(bundle)
    visible = {name: value for name, value in env.items() if name in names}
    log = LogSender(log_stream)
    senders: dict[str, Sender] = {}
    unconfigured = by_owner([u for u in unset_env(bundle, env) if u.owner.startswith("channel ")])
    for name, channel in bundle.channels.items():
        why = unconfigured.get(f"channel {name}")
        if why:
            senders[name] = Unconfigured(why)
        elif channel.type == "smtp":
            senders[name] = SmtpSender(channel, visible)
        elif channel.type == "http":
            senders[name] = HttpSender(channel, visible)
        elif channel.type == "bitrix24":
            senders[name] = Bitrix24Sender(channel, visible)
        elif channel.type == "zalo_zns":
            if store is None or clock is None:
                senders[name] = Unconfigured(f"channel {name}: a zalo_zns channel sends only from the daemon")
            else:
                senders[name] = ZaloSender(channel, visible, store, clock, region=bundle.config.phone_region)
        else:
            senders[name] = log
    senders["log"] = log
    return senders


class Unconfigured:
    """The sender of a channel that cannot be configured (an ``${ENV}`` variable it needs is not
    set). ``unconfigured`` says why; the deliverer holds its rows rather than call :meth:`send`."""

    def __init__(self, why: str) -> None:
        self.unconfigured = why

    def send(self, row: OutboxRow) -> Receipt:
        raise TemporaryFailure(self.unconfigured)


def close_senders(senders: Mapping[str, Sender]) -> None:
    """Close the connections senders keep (SMTP sessions, HTTP pools); each sender once."""
    seen: set[int] = set()
    for sender in senders.values():
        close = getattr(sender, "close", None)
        if close is not None and id(sender) not in seen:
            seen.add(id(sender))
            close()


def referenced_env(bundle: Bundle) -> set[str]:
    """Every ``${NAME}`` written anywhere in the config's documents."""
    found: set[str] = set()
    seen: set[int] = set()

    def walk(value: Any) -> None:
        if isinstance(value, str):
            if "${" in value:
                found.update(env_names(value))
            return
        if id(value) in seen:
            return
        seen.add(id(value))
        if isinstance(value, Mapping):
            for key, item in value.items():
                walk(key)
                walk(item)
        elif isinstance(value, list | tuple | set | frozenset):
            for item in value:
                walk(item)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            for f in dataclasses.fields(value):
                if f.name != "where":
                    walk(getattr(value, f.name))

    for document in bundle.documents():
        walk(document)
    return found
