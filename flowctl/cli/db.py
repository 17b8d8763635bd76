"""``flowctl db``: database maintenance."""

from __future__ import annotations

import click

from flowctl.cli import db_stats, db_upgrade
from flowctl.cli.db_backup import backup, restore


@click.group(
    "db",
    epilog="""\b
Examples:
  flowctl db upgrade --check                     # exit 1 when an upgrade is due
  flowctl db upgrade                             # ./ and its database
  flowctl db upgrade --db postgresql+psycopg://flowctl@db/flowctl
  flowctl db backup /backups/flowctl-$(date +%F).db      # while the daemon runs
  flowctl db stats --format json                 # rows and bytes per kind, the next purge""",
)
def command() -> None:
    """Database maintenance: schema upgrades (a daemon never migrates an older schema itself),
    backup and restore, sizes and retention, giving space back."""


command.add_command(db_upgrade.command)
command.add_command(backup)
command.add_command(restore)
command.add_command(db_stats.stats)
command.add_command(db_stats.vacuum)
