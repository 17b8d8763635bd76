"""``flowctl db``: database maintenance."""

from __future__ import annotations

from pathlib import Path

import click

from flowctl.cli import db_stats
from flowctl.cli.db_backup import backup, restore
from flowctl.cli.store_access import DB_HELP, open_for
from flowctl.store.migrate import current_revision


@click.group(
    "db",
    epilog="""\b
Examples:
  flowctl db upgrade                             # ./ and its database
  flowctl db upgrade --db postgresql+psycopg://flowctl@db/flowctl
  flowctl db backup /backups/flowctl-$(date +%F).db      # while the daemon runs""",
)
def command() -> None:
    """Database maintenance (migrations are also applied when the daemon starts)."""


@command.command(
    "upgrade",
    epilog="""\b
Examples:
  flowctl db upgrade                                      # ./flowctl.db
  flowctl db upgrade --db postgresql+psycopg://flowctl@db/flowctl""",
)
@click.argument("directory", default=".", metavar="[DIR]", type=click.Path(path_type=Path))
@click.option("--db", "database", default="", help=DB_HELP)
def upgrade(directory: Path, database: str) -> None:
    """Apply the schema migrations to the newest revision."""
    store = open_for(directory, database)  # opening migrates
    try:
        click.echo(f"database at revision {current_revision(store.engine)}")
    finally:
        store.close()


command.add_command(backup)
command.add_command(restore)
command.add_command(db_stats.stats)
command.add_command(db_stats.vacuum)
