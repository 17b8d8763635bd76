"""Alembic's environment for flowctl: always run from ``flowctl.store.migrate`` with a connection.

There is no ``alembic.ini``: ``migrate.py`` builds the config in code and hands over the
connection in ``config.attributes["connection"]``.
"""

from __future__ import annotations

from alembic import context

from flowctl.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - offline mode is not supported
    raise RuntimeError("flowctl migrations run through flowctl.store.migrate.upgrade(), with a connection")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
