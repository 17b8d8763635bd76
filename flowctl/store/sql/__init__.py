"""``SqlStore``: the ``Store`` on SQLAlchemy Core, for SQLite and PostgreSQL.

Every method is one transaction. Statements are built once and reused, so SQLAlchemy compiles
each shape once; batches go out as one ``executemany`` per table.

Claims are leases: a claimed change, timer or outbox row carries ``lease_owner``/``lease_until``;
a lease that ran out (the worker died) makes the row claimable again, with ``attempts + 1``. On
SQLite every write is a ``BEGIN IMMEDIATE`` transaction, so claimers queue. On PostgreSQL timer
and outbox claimers run side by side, ``FOR UPDATE SKIP LOCKED`` keeping them off each other's
rows; change claimers take turns (see ``PG_CLAIM_LOCK``) and skip rows being finished.

The class is composed of one mixin per role of ``flowctl.ports`` (a module each in this package)
over ``base.SqlBase``, which holds the connections, the prepared statements and the dialect
differences: a reader who needs the outbox opens ``outbox.py``.
"""

from __future__ import annotations

from flowctl.store.sql.care import SqlCareLedger
from flowctl.store.sql.changes import SqlChangeQueue
from flowctl.store.sql.channel_tokens import SqlChannelTokens
from flowctl.store.sql.deployments import SqlDeployments
from flowctl.store.sql.inspection import SqlInspection
from flowctl.store.sql.leases import SqlLeases
from flowctl.store.sql.outbox import SqlOutbox
from flowctl.store.sql.record_state import SqlRecordState
from flowctl.store.sql.recycle_bin import SqlRecycleBin
from flowctl.store.sql.retention import SqlPurging
from flowctl.store.sql.sources import SqlSourceCursors

__all__ = ["SqlStore"]


class SqlStore(
    SqlRecordState,
    SqlChangeQueue,
    SqlOutbox,
    SqlCareLedger,
    SqlDeployments,
    SqlLeases,
    SqlSourceCursors,
    SqlInspection,
    SqlRecycleBin,
    SqlPurging,
    SqlChannelTokens,
):
    """The store on a database URL: ``sqlite:///path/flowctl.db`` or ``postgresql+psycopg://…``.

    The schema must be current (``flowctl.store.open_store`` migrates before opening).
    """
