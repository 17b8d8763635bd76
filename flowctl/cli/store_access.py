"""Open the store a command inspects: ``--db`` or the config directory's database.

Commands that only read (``plan``, ``history``, ``runs``, ``outbox``, ``records``, ``replay``,
``rollback``'s lookup) open it with ``open_existing``: a SQLite file that does not exist is
reported, never created, so a typo in DIR or a fresh checkout leaves no stray ``flowctl.db``.
``apply``, ``run``, ``db upgrade`` and ``records put`` use ``open_for``, which creates it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo
from pathlib import Path
from typing import Any

import click

from flowctl.cli.common import config_of, zone_of
from flowctl.runtime.settings import resolve_database

DB_HELP = "Database URL (default: the config directory's database, sqlite:///flowctl.db beside it)."


class NoDatabase(click.ClickException):
    """The SQLite file a reading command was pointed at does not exist (exit 1)."""

    exit_code = 1

    def __init__(self, path: Path) -> None:
        super().__init__(
            f"no database at {path}: nothing has been deployed here (run 'flowctl apply' or "
            "'flowctl run' in this directory first, or give the database with --db URL)"
        )
        self.path = path


@dataclass(frozen=True, slots=True)
class Target:
    """Where a command's store is, and the zone it prints times in."""

    url: str
    zone: tzinfo
    file: Path | None  # the SQLite file, when the store is one

    @property
    def missing(self) -> bool:
        return self.file is not None and not self.file.exists()


def target(directory: Path, database: str) -> Target:
    """``--db`` if given, else the Config's ``database`` (default ``sqlite:///flowctl.db`` beside it)."""
    if not database and not directory.exists():
        raise click.BadParameter(f"no such file or directory: {directory}", param_hint="DIR")
    config = config_of(directory)
    url = database or resolve_database(
        config.database if config is not None else "sqlite:///flowctl.db", directory.resolve()
    )
    return Target(url=url, zone=zone_of(config), file=_sqlite_file(url))


def _sqlite_file(url: str) -> Path | None:
    from flowctl.store.errors import BadUrl, sqlite_database  # lazy: start-up time (it loads SQLAlchemy)

    try:
        database = sqlite_database(url)
    except BadUrl:
        return None  # open_store reports it
    if database is None:
        return None
    if database.startswith("file:"):
        return None  # a SQLite URI: its own rules
    return Path(database)


def open_url(url: str) -> Any:
    from flowctl.store import open_store  # lazy: start-up time (SQLAlchemy only once a command opens a store)

    try:
        return open_store(url)
    except Exception as exc:
        raise click.ClickException(f"cannot open the store {url}: {exc}") from exc


def open_for(directory: Path, database: str) -> Any:
    """The store, created and migrated if needed (for commands that write)."""
    return open_url(target(directory, database).url)


def open_existing(where: Target) -> Any:
    """The store at ``where``; ``NoDatabase`` when it is a SQLite file that does not exist."""
    if where.file is not None and where.missing:
        raise NoDatabase(where.file)
    return open_url(where.url)
