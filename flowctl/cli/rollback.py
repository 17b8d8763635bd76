"""``flowctl rollback VERSION``: deploy a stored version again, planned and checked like apply."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from flowctl.cli.apply import finish
from flowctl.cli.gitops_common import ALLOW_CANCEL, FORCE, FORMAT, NOW, parse_now
from flowctl.cli.store_access import DB_HELP, open_existing, target
from flowctl.gitops.plan import make_plan
from flowctl.gitops.versions import NotRebuildable, VersionNotFound, from_version, resolve


@click.command(
    "rollback",
    epilog="""\b
Examples:
  flowctl history                                # find the version
  flowctl rollback 3f2a9c1e                      # an id or an unambiguous prefix
  flowctl rollback 3f2a9c1e --db postgresql+psycopg://flowctl@db/flowctl --allow-cancel

\b
The stored version is rebuilt from its files and planned against the live state with the same
checks as 'flowctl plan' (records in removed stages refuse it; runs on removed nodes need
--allow-cancel). Exit codes: 0 rolled back or already current, 1 refused, not possible or no
database.""",
)
@click.argument("version")
@click.argument("directory", default=".", metavar="[DIR]", type=click.Path(path_type=Path))
@click.option("--db", "database", default="", help=DB_HELP)
@click.option("-m", "--message", default="", help="Why (default: 'rollback to VERSION').")
@FORMAT
@ALLOW_CANCEL
@FORCE
@NOW
def command(
    version: str, directory: Path, database: str, message: str, fmt: str, allow_cancel: bool, force: bool, now_text: str
) -> None:
    """Deploy the stored VERSION again (DIR only locates the default database)."""
    where = target(directory, database)
    now = parse_now(now_text, where.zone)
    store = open_existing(where)
    try:
        try:
            chosen = resolve(store.versions(limit=100_000), version)
            snapshot = from_version(chosen)
        except (VersionNotFound, NotRebuildable) as exc:
            raise click.ClickException(str(exc)) from exc
        plan = make_plan(store, snapshot, now, allow_cancel=allow_cancel, force=force)
        sys.exit(finish(store, plan, now, message or f"rollback to {chosen.id}", fmt))
    finally:
        store.close()
