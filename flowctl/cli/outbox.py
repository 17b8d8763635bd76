"""``flowctl outbox``: outgoing messages, their state, and retrying dead letters."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from flowctl.cli.store_access import DB_HELP, open_for

_dir = click.option("--dir", "directory", default=".", type=click.Path(path_type=Path), show_default=True,
                    help="Config directory (for its database).")
_db = click.option("--db", "database", default="", help=DB_HELP)


def row_json(row: Any) -> dict[str, Any]:
    return {"id": row.id, "key": row.key, "channel": row.channel, "action": row.action, "object": row.object,
            "record_id": row.record_id, "run_id": row.run_id, "status": row.status, "attempts": row.attempts,
            "next_attempt_at": row.next_attempt_at.isoformat() if row.next_attempt_at else None,
            "last_error": row.last_error, "recipient": row.recipient,
            "created_at": row.created_at.isoformat() if row.created_at else None,
            "sent_at": row.sent_at.isoformat() if row.sent_at else None, "payload": dict(row.payload)}  # fmt: skip


@click.group("outbox")
def command() -> None:
    """Inspect and retry outgoing messages."""


@command.command("list", epilog="\b\nExamples:\n  flowctl outbox list --status dead\n"
                                "  flowctl outbox list --status held --format json")
@click.option("--status", default="", help="pending, sending, sent, retry, held or dead.")
@click.option("--limit", default=50, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@_dir
@_db
def list_(status: str, limit: int, fmt: str, directory: Path, database: str) -> None:
    """List the newest outbox rows."""
    store = open_for(directory, database)
    try:
        rows = store.list_outbox(limit=limit, status=status)
    finally:
        store.close()
    if fmt == "json":
        json.dump([row_json(r) for r in rows], sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
        return
    for row in rows:
        extra = f" (attempts {row.attempts}: {row.last_error})" if row.last_error else ""
        click.echo(f"{row.id}  {row.status:7}  {row.channel:8} {row.action:14} {row.recipient or '-'}  "
                   f"{row.object}/{row.record_id}{extra}")  # fmt: skip
    click.echo(f"{len(rows)} rows")


@command.command("show", epilog="\b\nExample:\n  flowctl outbox show 12")
@click.argument("row_id", type=int)
@_dir
@_db
def show(row_id: int, directory: Path, database: str) -> None:
    """Print one outbox row with its rendered message as JSON."""
    store = open_for(directory, database)
    try:
        row = store.outbox_row(row_id)
    finally:
        store.close()
    if row is None:
        raise click.ClickException(f"no outbox row {row_id}")
    click.echo(json.dumps(row_json(row), ensure_ascii=False, indent=2, default=str))


@command.command("retry", epilog="\b\nExample:\n  flowctl outbox retry 12   # a dead letter goes out again")
@click.argument("row_ids", type=int, nargs=-1, required=True)
@_dir
@_db
def retry(row_ids: tuple[int, ...], directory: Path, database: str) -> None:
    """Queue dead or failed rows for delivery again (same idempotency key)."""
    from flowctl.runtime.clock import SystemClock

    store = open_for(directory, database)
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
