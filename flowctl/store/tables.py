"""The database schema, as SQLAlchemy Core tables: the single source the migrations are checked against.

Types are portable: JSON columns use ``sa.JSON``; datetimes use ``UtcDateTime``, which is
``timestamptz`` on PostgreSQL and fixed-width ISO text in UTC on SQLite (so ``ORDER BY`` and ``<=``
on the text agree with time order). Run times (``started_at``/``updated_at``) stay the ISO strings
the engine wrote, so a stored ``Run`` reads back equal to the one committed.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeEngine

from flowctl.store.rows import utc

#: Named constraints and indexes, so migrations and reflection agree on every name.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING)

#: ``BIGINT`` autoincrement keys; SQLite only autoincrements an ``INTEGER PRIMARY KEY``.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class UtcDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware datetime, stored in UTC and read back as an aware UTC datetime."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.String(32))
        return dialect.type_descriptor(sa.DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return _sqlite_text(value)
        return utc(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        assert isinstance(value, datetime)
        return value.astimezone(UTC)


def _text() -> sa.String:
    return sa.String()


records = sa.Table(
    "records",
    metadata,
    sa.Column("object", _text(), primary_key=True),
    sa.Column("id", _text(), primary_key=True),
    sa.Column("fields", sa.JSON(), nullable=False),
    sa.Column("stage", _text(), nullable=False),
    sa.Column("pipeline", _text(), nullable=False),
    sa.Column("owner", _text(), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("deleted", sa.Boolean(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=True),
    sa.Index(None, "object", "stage"),
    sa.Index(None, "object", "owner"),  # least_loaded counts the open records each user owns
    sa.Index(None, "object", "pipeline", "stage", "deleted", "id"),  # a board's columns (0008)
)

changes = sa.Table(
    "changes",
    metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=True),
    sa.Column("idempotency_key", _text(), nullable=False),
    sa.Column("object", _text(), nullable=False),
    sa.Column("record_id", _text(), nullable=False),
    sa.Column("op", _text(), nullable=False),
    sa.Column("fields", sa.JSON(), nullable=False),
    sa.Column("stage", _text(), nullable=False),
    sa.Column("pipeline", _text(), nullable=False),
    sa.Column("event", _text(), nullable=False),
    sa.Column("data", sa.JSON(), nullable=False),
    sa.Column("source", _text(), nullable=False),
    sa.Column("status", _text(), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("error", sa.Text(), nullable=False),
    sa.Column("received_at", UtcDateTime(), nullable=True),
    sa.Column("processed_at", UtcDateTime(), nullable=True),
    sa.Column("lease_owner", _text(), nullable=True),
    sa.Column("lease_until", UtcDateTime(), nullable=True),
    # sha256 of what a keyed API write asked for: the same key with another body is refused (409)
    sa.Column("fingerprint", _text(), nullable=True),
    sa.UniqueConstraint("idempotency_key"),
    sa.Index(None, "status", "seq"),
    sa.Index(None, "object", "record_id", "seq"),
    sa.Index(None, "processed_at"),  # the retention purge, oldest first (0012)
    sqlite_autoincrement=True,  # a seq is never reused, even after the newest change is pruned
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", _text(), primary_key=True),
    sa.Column("automation", _text(), nullable=False),
    sa.Column("object", _text(), nullable=False),
    sa.Column("record_id", _text(), nullable=False),
    sa.Column("status", _text(), nullable=False),
    sa.Column("node", _text(), nullable=False),
    sa.Column("waiting_for", _text(), nullable=False),
    sa.Column("entry", _text(), nullable=False),
    sa.Column("visits", sa.JSON(), nullable=False),
    sa.Column("steps", sa.Integer(), nullable=False),
    sa.Column("started_at", _text(), nullable=False),
    sa.Column("updated_at", _text(), nullable=False),
    sa.Column("config_version", _text(), nullable=False),
    sa.Column("trace", sa.JSON(), nullable=False),
    sa.Column("seq", sa.BigInteger(), nullable=False),
    sa.Index(None, "object", "record_id", "status"),
    # the read API lists runs newest first by (seq, id), filtered by one of these (0008)
    sa.Index(None, "object", "record_id", "seq", "id"),
    sa.Index(None, "status", "seq", "id"),
    sa.Index(None, "automation", "seq", "id"),
    sa.Index(None, "seq", "id"),
    sa.Index(None, "updated_at"),  # the retention purge, oldest first (0012)
)

timers = sa.Table(
    "timers",
    metadata,
    sa.Column("id", _text(), primary_key=True),
    sa.Column("run_id", _text(), nullable=False),
    sa.Column("due", UtcDateTime(), nullable=False),
    sa.Column("kind", _text(), nullable=False),
    sa.Column("node", _text(), nullable=False),
    sa.Column("object", _text(), nullable=False),
    sa.Column("record_id", _text(), nullable=False),
    sa.Column("lease_owner", _text(), nullable=True),
    sa.Column("lease_until", UtcDateTime(), nullable=True),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Index(None, "due"),
    sa.Index(None, "run_id"),
    sa.Index(None, "object", "record_id"),  # the hot path's check for a record's leased timer (0013)
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("key", _text(), nullable=False),
    sa.Column("channel", _text(), nullable=False),
    sa.Column("action", _text(), nullable=False),
    sa.Column("object", _text(), nullable=False),
    sa.Column("record_id", _text(), nullable=False),
    sa.Column("run_id", _text(), nullable=False),
    sa.Column("payload", sa.JSON(), nullable=False),
    sa.Column("status", _text(), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("next_attempt_at", UtcDateTime(), nullable=True),
    sa.Column("last_error", sa.Text(), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=True),
    sa.Column("sent_at", UtcDateTime(), nullable=True),
    sa.Column("recipient", _text(), nullable=False),
    sa.Column("lease_owner", _text(), nullable=True),
    sa.Column("lease_until", UtcDateTime(), nullable=True),
    sa.UniqueConstraint("key"),
    sa.Index(None, "status", "next_attempt_at"),
    sa.Index(None, "channel", "sent_at"),  # sending policies: sent today per channel (0004)
    sa.Index(None, "channel", "recipient", "sent_at"),  # … and per recipient (0004)
    # the read API lists rows newest first by id, filtered by one of these (0008)
    sa.Index(None, "object", "record_id", "id"),
    sa.Index(None, "channel", "id"),
    sa.Index(None, "status", "id"),
    sa.Index(None, "status", "sent_at"),  # the retention purge: sent rows, oldest first (0012)
    sa.Index(None, "status", "created_at"),  # … and cancelled ones (0012)
    sqlite_autoincrement=True,
)

#: A record's stage history: one row per stage entered, in the order entered (0009).
stage_entries = sa.Table(
    "stage_entries",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("object", _text(), nullable=False),
    sa.Column("record_id", _text(), nullable=False),
    sa.Column("pipeline", _text(), nullable=False),
    sa.Column("stage", _text(), nullable=False),
    sa.Column("at", UtcDateTime(), nullable=False),
    sa.Column("key", _text(), nullable=False),
    sa.Index(None, "object", "record_id", "id"),  # no AUTOINCREMENT: a reused top id still sorts last
)

#: Notes ``add_note`` wrote on records' timelines, one per effect key (0010).
notes = sa.Table(
    "notes",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("key", _text(), nullable=False, unique=True),
    sa.Column("object", _text(), nullable=False),
    sa.Column("record_id", _text(), nullable=False),
    sa.Column("run_id", _text(), nullable=False),
    sa.Column("text", sa.Text(), nullable=False),
    sa.Column("at", UtcDateTime(), nullable=False),
    sa.Index(None, "object", "record_id", "id"),
)

allocations = sa.Table(
    "allocations",
    metadata,
    sa.Column("rule", _text(), primary_key=True),
    sa.Column("state", sa.JSON(), nullable=False),
)

config_versions = sa.Table(
    "config_versions",
    metadata,
    sa.Column("id", _text(), primary_key=True),  # the content hash
    sa.Column("applied_at", UtcDateTime(), nullable=False),
    sa.Column("commit", _text(), nullable=False),
    sa.Column("author", _text(), nullable=False),
    sa.Column("message", sa.Text(), nullable=False),
    sa.Column("documents", sa.JSON(), nullable=False),
    sa.Column("current", sa.Boolean(), nullable=False),
    sa.Column("files", sa.JSON(), nullable=True),  # path -> text, to rebuild the version (0003)
)

care_occurrences = sa.Table(
    "care_occurrences",
    metadata,
    sa.Column("process", _text(), nullable=False),
    sa.Column("object", _text(), nullable=False),
    sa.Column("record_id", _text(), nullable=False),
    sa.Column("occurrence", _text(), nullable=False),
    sa.Column("status", _text(), nullable=False),
    sa.Column("claimed_at", UtcDateTime(), nullable=True),
    sa.Column("done_at", UtcDateTime(), nullable=True),
    sa.Column("owner", _text(), nullable=True),  # who holds the claim (its lease runs from claimed_at)
    sa.Column("config_version", _text(), nullable=True),  # the version the occurrence runs on
    sa.PrimaryKeyConstraint("process", "object", "record_id", "occurrence"),  # once per occurrence
    sa.Index(None, "status", "claimed_at"),  # claims whose lease ran out
    sa.Index(None, "done_at"),  # the retention purge, oldest first (0012)
)

#: Every date-like field value of every live record, by month and day (``MMDD``: 229 is 29 February),
#: so a care tick reads only the records whose anniversary is due (see ``store/dates.py``).
record_dates = sa.Table(
    "record_dates",
    metadata,
    sa.Column("object", _text(), primary_key=True),
    sa.Column("record_id", _text(), primary_key=True),
    sa.Column("field", _text(), primary_key=True),
    sa.Column("month_day", sa.Integer(), nullable=False),
    sa.Column("value", _text(), nullable=False),  # the date, ISO
    sa.Index(None, "object", "field", "month_day"),
)

#: The config version of each care process's first run on a local day: the day's occurrences run on it.
care_days = sa.Table(
    "care_days",
    metadata,
    sa.Column("process", _text(), primary_key=True),
    sa.Column("day", _text(), primary_key=True),
    sa.Column("config_version", _text(), nullable=False),
)

source_cursors = sa.Table(
    "source_cursors",
    metadata,
    sa.Column("source", _text(), primary_key=True),
    sa.Column("cursor", sa.JSON(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=True),
)

source_rows = sa.Table(
    "source_rows",
    metadata,
    sa.Column("source", _text(), primary_key=True),
    sa.Column("key", _text(), primary_key=True),
    sa.Column("hash", _text(), nullable=False),
)


#: The newest OAuth token pair of a channel that rotates its refresh token (Zalo ZNS), per channel (0011).
channel_tokens = sa.Table(
    "channel_tokens",
    metadata,
    sa.Column("channel", _text(), primary_key=True),
    sa.Column("access_token", sa.Text(), nullable=False),
    sa.Column("refresh_token", sa.Text(), nullable=False),
    sa.Column("expires_at", UtcDateTime(), nullable=True),
    sa.Column("origin", _text(), nullable=False),  # a digest of the configured refresh token
    sa.Column("updated_at", UtcDateTime(), nullable=False),
)


@functools.lru_cache(maxsize=1024)
def _sqlite_text(value: datetime) -> str:
    """2026-03-01T09:00:00.000000+00:00: always 32 characters, so text order is time order. Cached:
    a batch stamps most of its rows with the same few instants."""
    return utc(value).isoformat(timespec="microseconds")
