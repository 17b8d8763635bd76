"""``SqlStore``: the ``Store`` on SQLAlchemy Core, for SQLite and PostgreSQL."""

from flowctl.store.sql.base import SqlStore

__all__ = ["SqlStore"]
