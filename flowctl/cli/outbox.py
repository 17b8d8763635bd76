"""``flowctl outbox``: outgoing messages, their state, and retrying dead letters."""

from __future__ import annotations

import json
import sys
from datetime import tzinfo
from pathlib import Path
from typing import Any

import click

from flowctl.cli.common import directory_argument, iso, iso_or_none, pick_directory
from flowctl.cli.store_access import DB_HELP, open_existing, target
from flowctl.cli.terminal import echo_table
from flowctl.runtime.daemon.clock import SystemClock

_db = click.option("--db", "database", default="", help=DB_HELP)


def row_json(row: Any, zone: tzinfo) -> dict[str, Any]:
    """An outbox row as JSON, its times in ``zone`` with their offset."""
    return {
        "id": row.id,
        "key": row.key,
        "channel": row.channel,
        "action": row.action,
        "object": row.object,
        "record_id": row.record_id,
        "run_id": row.run_id,
        "status": row.status,
        "attempts": row.attempts,
        "next_attempt_at": iso_or_none(row.next_attempt_at, zone),
        "last_error": row.last_error,
        "recipient": row.recipient,
        "created_at": iso_or_none(row.created_at, zone),
        "sent_at": iso_or_none(row.sent_at, zone),
        "payload": dict(row.payload),
    }


@click.group(
    "outbox",
    epilog="""\b
Examples:
  flowctl outbox list --status dead              # ./ and its database
  flowctl outbox show 12 config/
  flowctl outbox retry 12 13 --db postgresql+psycopg://flowctl@db/flowctl

\b
Times are ISO 8601 with their offset, in the Config's time zone (UTC without a Config).
A database that does not exist is reported (exit 1), never created.""",
)
def command() -> None:
    """Inspect and retry outgoing messages."""


@command.command(
    "list",
    epilog="\b\nExamples:\n  flowctl outbox list --status dead\n"
    "  flowctl outbox list config/ --status held --format json",
)
@click.option("--status", default="", help="pending, sending, sent, retry, held or dead.")
@click.option("--limit", default=50, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@directory_argument()
@_db
def list_(status: str, limit: int, fmt: str, directory: Path, database: str) -> None:
    """List the newest outbox rows of DIR's database (default: .), with the time each was created."""
    where = target(directory, database)
    store = open_existing(where)
    try:
        rows = store.list_outbox(limit=limit, status=status)
    finally:
        store.close()
    if fmt == "json":
        json.dump([row_json(r, where.zone) for r in rows], sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
        return
    table = [
        [
            str(row.id),
            row.status,
            iso(row.created_at, where.zone, seconds=True) if row.created_at else "-",
            row.channel,
            row.action,
            row.recipient or "-",
            f"{row.object}/{row.record_id}",
            f"attempts {row.attempts}: {row.last_error}" if row.last_error else "",
        ]
        for row in rows
    ]
    echo_table(["ID", "STATUS", "CREATED", "CHANNEL", "ACTION", "RECIPIENT", "RECORD", "LAST ERROR"], table)
    click.echo(f"{len(rows)} rows")


@command.command("show", epilog="\b\nExamples:\n  flowctl outbox show 12\n  flowctl outbox show 12 config/")
@click.argument("row_id", type=int)
@directory_argument()
@_db
def show(row_id: int, directory: Path, database: str) -> None:
    """Print one outbox row with its rendered message as JSON."""
    where = target(directory, database)
    store = open_existing(where)
    try:
        row = store.outbox_row(row_id)
    finally:
        store.close()
    if row is None:
        raise click.ClickException(f"no outbox row {row_id}")
    click.echo(json.dumps(row_json(row, where.zone), ensure_ascii=False, indent=2, default=str))


@command.command(
    "retry",
    epilog="""\b
Examples:
  flowctl outbox retry 12              # a dead letter goes out again
  flowctl outbox retry 12 13 config/   # the last argument is DIR when it is not a row number""",
)
@click.argument("args", nargs=-1, required=True, metavar="ROW_ID... [DIR]")
@click.option(
    "--dir",
    "dir_option",
    type=click.Path(path_type=Path),
    metavar="DIR",
    help="Config directory (default: .), for its database. Same as the DIR argument.",
)
@_db
def retry(args: tuple[str, ...], dir_option: Path | None, database: str) -> None:
    """Queue dead or failed rows for delivery again (same idempotency key)."""
    *ids, last = args
    directory: Path | None = None
    if not last.isdigit():
        directory = Path(last)
    else:
        ids.append(last)
    if not ids or not all(i.isdigit() for i in ids):
        raise click.BadParameter(f"row ids are numbers: {' '.join(args)}", param_hint="ROW_ID...")
    row_ids = [int(i) for i in ids]
    store = open_existing(target(pick_directory(directory, dir_option), database))
    missing = []
    try:
        for row_id in row_ids:
            if not store.retry_outbox(row_id, SystemClock().now()):
                missing.append(row_id)
    finally:
        store.close()
    for row_id in row_ids:
        if row_id not in missing:
            click.echo(f"row {row_id} queued for delivery")
    if missing:
        raise click.ClickException(f"not retried (no such row, or already pending/sent): {missing}")
