"""The ports the runtime talks through: small Protocols named for a role.

Adapters are named for a technology (``SqlStore``, ``MemoryStore``, ``SmtpChannel``…). The engine
never sees these: the runtime reads state through a ``Store``, hands it to the engine as a
``StateView`` and commits the resulting ``Step`` back through the same ``Store``.

The store has one port per role, so a reader who needs the outbox opens one protocol and a part
of the daemon names only what it uses: ``RecordState`` (what the engine reads), ``ChangeQueue``
(accepted writes and due timers, claimed and committed by workers), ``Outbox``, ``CareLedger``,
``Deployments``, ``Leases``, ``SourceCursors``, ``ChannelTokens``, ``RecycleBin``,
``Purging`` and ``Inspection`` (the read side
for the CLI and the console). ``Store`` is only their combination, for where the daemon is wired; the adapters
(``store/sql/``, ``store/memory/``) are built from one mixin per role.

The values they pass are in ``ports/values.py``, the roles in ``ports/roles.py``; a new role
gets its own module here when it is more than a method or two.
"""

from flowctl.ports.channel_tokens import ChannelToken, ChannelTokens
from flowctl.ports.recycle_bin import RecycleBin
from flowctl.ports.retention import PURGE_KINDS, PurgeKind, Purging
from flowctl.ports.roles import (
    CareLedger,
    ChangeQueue,
    Deployments,
    InlineRun,
    Inspection,
    Leases,
    Outbox,
    RecordState,
    SourceCursors,
    Store,
    WorkerStore,
)
from flowctl.ports.values import (
    AppendResult,
    CareOccurrence,
    CareSummary,
    ChangeOp,
    Clock,
    ConfigVersion,
    LeaseLost,
    NewChange,
    Note,
    OutboxFilter,
    OutboxRow,
    OutboxStatus,
    Processed,
    RunFilter,
    StoredChange,
)

__all__ = [
    "PURGE_KINDS",
    "AppendResult",
    "CareLedger",
    "CareOccurrence",
    "CareSummary",
    "ChangeOp",
    "ChangeQueue",
    "ChannelToken",
    "ChannelTokens",
    "Clock",
    "ConfigVersion",
    "Deployments",
    "InlineRun",
    "Inspection",
    "LeaseLost",
    "Leases",
    "NewChange",
    "Note",
    "Outbox",
    "OutboxFilter",
    "OutboxRow",
    "OutboxStatus",
    "Processed",
    "PurgeKind",
    "Purging",
    "RecordState",
    "RecycleBin",
    "RunFilter",
    "SourceCursors",
    "Store",
    "StoredChange",
    "WorkerStore",
]
