"""``flowctl db``: database maintenance."""

from __future__ import annotations

import click

from flowctl.cli import db_upgrade
from flowctl.cli.db_backup import backup, restore


@click.group(
    "db",
    epilog="""\b
Examples:
  flowctl db upgrade --check                     # exit 1 when an upgrade is due
  flowctl db upgrade                             # ./ and its database
  flowctl db upgrade --db postgresql+psycopg://flowctl@db/flowctl
  flowctl db backup /backups/flowctl-$(date +%F).db      # while the daemon runs""",
)
def command() -> None:
    """Database maintenance: schema upgrades (a daemon never migrates an older schema itself)."""


command.add_command(db_upgrade.command)
command.add_command(backup)
command.add_command(restore)
