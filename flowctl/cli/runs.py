"""``flowctl runs``: the runs of flows, stage rules and care processes, and their traces."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from flowctl.cli.store_access import DB_HELP, open_for

_dir = click.option("--dir", "directory", default=".", type=click.Path(path_type=Path), show_default=True,
                    help="Config directory (for its database).")
_db = click.option("--db", "database", default="", help=DB_HELP)


@click.group("runs")
def command() -> None:
    """Inspect runs and their traces."""


@command.command("list", epilog="\b\nExamples:\n  flowctl runs list --status waiting\n"
                                "  flowctl runs list --record deal/7 --format json")
@click.option("--status", default="", help="running, waiting, queued, done, cancelled or failed.")
@click.option("--record", "record", default="", help="OBJECT/ID: only runs about this record.")
@click.option("--limit", default=50, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@_dir
@_db
def list_(status: str, record: str, limit: int, fmt: str, directory: Path, database: str) -> None:
    """List the newest runs."""
    from flowctl.engine.render import run_json

    object_, _, record_id = record.partition("/")
    store = open_for(directory, database)
    try:
        runs = store.list_runs(limit=limit, status=status, object=object_, record_id=record_id)
    finally:
        store.close()
    if fmt == "json":
        json.dump([run_json(r) for r in runs], sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
        return
    for run in runs:
        click.echo(f"{run.id}  {run.automation}  {run.object}/{run.record_id}  {run.status}  at {run.node}  "
                   f"{run.updated_at[:19]}")  # fmt: skip
    click.echo(f"{len(runs)} runs")


@command.command("show", epilog="\b\nExample:\n  flowctl runs show 'c12/run1'")
@click.argument("run_id")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@_dir
@_db
def show(run_id: str, fmt: str, directory: Path, database: str) -> None:
    """Print one run's trace: nodes passed, conditions with their values, decisions, effects."""
    from flowctl.engine.render import render_run, run_json

    store = open_for(directory, database)
    try:
        run = store.run(run_id)
    finally:
        store.close()
    if run is None:
        raise click.ClickException(f"no run {run_id}")
    if fmt == "json":
        click.echo(json.dumps(run_json(run), ensure_ascii=False, indent=2))
    else:
        click.echo(render_run(run))
