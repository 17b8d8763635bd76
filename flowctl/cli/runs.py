"""``flowctl runs``: the runs of flows, stage rules and care processes, and their traces."""

from __future__ import annotations

import json
import sys
from datetime import tzinfo
from pathlib import Path
from typing import Any

import click

from flowctl.cli.common import directory_argument, iso, iso_or_none
from flowctl.cli.store_access import DB_HELP, open_existing, target
from flowctl.cli.terminal import echo_table
from flowctl.engine.render import render_run
from flowctl.engine.render import run_json as plain

_db = click.option("--db", "database", default="", help=DB_HELP)


@click.group(
    "runs",
    epilog="""\b
Examples:
  flowctl runs list --status waiting             # ./ and its database
  flowctl runs list config/ --record deal/7
  flowctl runs show 'c12/run1' --db postgresql+psycopg://flowctl@db/flowctl

\b
Times are ISO 8601 with their offset, in the Config's time zone (UTC without a Config).
A database that does not exist is reported (exit 1), never created.""",
)
def command() -> None:
    """Inspect runs and their traces."""


def run_json(run: Any, zone: tzinfo) -> dict[str, Any]:
    """A run as JSON, its times in ``zone`` with their offset."""
    out = plain(run)
    out["started_at"] = iso_or_none(out["started_at"], zone)
    out["updated_at"] = iso_or_none(run.updated_at, zone)
    for entry in out["trace"]:
        entry["at"] = iso_or_none(entry.get("at"), zone)
    return out


@command.command(
    "list",
    epilog="\b\nExamples:\n  flowctl runs list --status waiting\n"
    "  flowctl runs list config/ --record deal/7 --format json",
)
@click.option("--status", default="", help="running, waiting, queued, done, cancelled or failed.")
@click.option("--record", "record", default="", help="OBJECT/ID: only runs about this record.")
@click.option("--limit", default=50, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@directory_argument()
@_db
def list_(status: str, record: str, limit: int, fmt: str, directory: Path, database: str) -> None:
    """List the newest runs of DIR's database (default: .), with the time each last moved."""
    object_, _, record_id = record.partition("/")
    where = target(directory, database)
    store = open_existing(where)
    try:
        runs = store.list_runs(limit=limit, status=status, object=object_, record_id=record_id)
    finally:
        store.close()
    if fmt == "json":
        json.dump([run_json(r, where.zone) for r in runs], sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
        return
    rows = [
        [
            run.id,
            run.automation,
            f"{run.object}/{run.record_id}",
            run.status,
            run.node or "-",
            iso(run.updated_at, where.zone, seconds=True) if run.updated_at else "-",
        ]
        for run in runs
    ]
    echo_table(["RUN", "AUTOMATION", "RECORD", "STATUS", "AT NODE", "UPDATED"], rows)
    click.echo(f"{len(runs)} runs")


@command.command(
    "show", epilog="\b\nExamples:\n  flowctl runs show 'c12/run1'\n  flowctl runs show 'c12/run1' config/ --format json"
)
@click.argument("run_id")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@directory_argument()
@_db
def show(run_id: str, fmt: str, directory: Path, database: str) -> None:
    """Print one run's trace: nodes passed, conditions with their values, decisions, effects."""
    where = target(directory, database)
    store = open_existing(where)
    try:
        run = store.run(run_id)
    finally:
        store.close()
    if run is None:
        raise click.ClickException(f"no run {run_id}")
    if fmt == "json":
        click.echo(json.dumps(run_json(run, where.zone), ensure_ascii=False, indent=2))
    else:
        click.echo(render_run(run, where.zone))
