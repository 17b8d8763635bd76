"""Schema migrations, driven from code: ``upgrade`` for ``flowctl db upgrade`` and a store opened on
an empty database (``revisions`` decides when; a daemon never migrates an older schema itself).

The Alembic scripts live in ``flowctl/store/migrations``; there is no ``alembic.ini``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection, Engine

from flowctl.store.engines import make_engine, writer

MIGRATIONS = Path(__file__).parent / "migrations"

#: Replicas starting together on one PostgreSQL migrate one after the other.
_PG_LOCK = 0x666C6F77_6D696772  # "flowmigr"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    return config


@contextmanager
def migrating(engine: Engine) -> Iterator[Connection]:
    """One write transaction that migrations take turns on (DDL is transactional on both): the
    advisory lock on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite."""
    with writer(engine).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_LOCK)))
        yield conn


def run_upgrade(conn: Connection, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` on ``conn`` (inside :func:`migrating`)."""
    config = alembic_config()
    config.attributes["connection"] = conn
    command.upgrade(config, revision)


def upgrade(engine_or_url: Engine | str, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` in one transaction."""
    engine = make_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
    try:
        with migrating(engine) as conn:
            run_upgrade(conn, revision)
    finally:
        if engine is not engine_or_url:
            engine.dispose()


def downgrade(engine: Engine, revision: str) -> None:
    config = alembic_config()
    with writer(engine).begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()
