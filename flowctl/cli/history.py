"""``flowctl history``: the deployed versions, newest first, the current one marked."""

from __future__ import annotations

from pathlib import Path

import click

from flowctl.cli.common import iso
from flowctl.cli.gitops_common import FORMAT, echo_json
from flowctl.cli.store_access import DB_HELP, open_existing, target
from flowctl.cli.terminal import echo_table


@click.command(
    "history",
    epilog="""\b
Examples:
  flowctl history
  flowctl history --db postgresql+psycopg://flowctl@db/flowctl --limit 5
  flowctl history --format json | jq '.[0].id'

\b
Then 'flowctl rollback VERSION' (an id or an unambiguous prefix) deploys an older one again.
Times are ISO 8601 with their offset, in the Config's time zone. Exit codes: 0, 1 when there
is no database (it is never created here).""",
)
@click.argument("directory", default=".", metavar="[DIR]", type=click.Path(path_type=Path))
@click.option("--db", "database", default="", help=DB_HELP)
@click.option("--limit", default=20, show_default=True, help="How many versions to show.")
@FORMAT
def command(directory: Path, database: str, limit: int, fmt: str) -> None:
    """List deployed configuration versions, newest first; '*' marks the current one. Times are
    ISO 8601 with their offset, in the Config's time zone."""
    where = target(directory, database)
    store = open_existing(where)
    try:
        versions = store.versions(limit)
        current = store.current_version()
    finally:
        store.close()
    current_id = current.id if current else None
    zone = where.zone
    if fmt == "json":
        echo_json(
            [
                {
                    "id": v.id,
                    "current": v.id == current_id,
                    "applied_at": iso(v.applied_at, zone),
                    "commit": v.commit,
                    "author": v.author,
                    "message": v.message,
                    "documents": len(v.documents),
                    "rebuildable": bool(v.files),
                }
                for v in versions
            ]
        )
        return
    if not versions:
        click.echo("no version deployed yet; run 'flowctl apply'")
        return
    rows = [
        [
            "*" if v.id == current_id else "",
            v.id,
            iso(v.applied_at, zone, seconds=True),
            v.commit[:12] if v.commit else "-",
            v.author or "-",
            str(len(v.documents)),
            ("" if v.files else "(no files: cannot be rolled back to) ") + v.message,
        ]
        for v in versions
    ]
    echo_table(["", "VERSION", "APPLIED", "COMMIT", "AUTHOR", "DOCUMENTS", "MESSAGE"], rows)
