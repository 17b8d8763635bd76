"""``flowctl records``: read and write records in the store."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import click

from flowctl.cli.common import directory_argument, load_or_exit
from flowctl.cli.store_access import DB_HELP, open_existing, open_for, target
from flowctl.cli.terminal import echo_table
from flowctl.engine.records import check_fields, check_stage
from flowctl.engine.state import Record
from flowctl.ports import NewChange
from flowctl.runtime.reads.common import zone_of
from flowctl.runtime.reads.timeline import timeline, timeline_lines
from flowctl.sources.errors import NotFound

_dir = directory_argument("Config directory (default: .), for its database and object types.")
_db = click.option("--db", "database", default="", help=DB_HELP)


@click.group(
    "records",
    epilog="""\b
Examples:
  flowctl records list deal --stage documents    # ./ and its database
  flowctl records get deal 7 config/
  flowctl records timeline deal 7
  flowctl records restore deal 7
  flowctl records put contact 1 '{"full_name": "Lan"}' --db postgresql+psycopg://flowctl@db/flowctl

\b
list and get report a database that does not exist (exit 1); put creates it, like the daemon.""",
)
def command() -> None:
    """Read and write records in the store."""


def _record_json(record: Record) -> dict[str, object]:
    return {
        "object": record.object,
        "id": record.id,
        "stage": record.stage,
        "pipeline": record.pipeline,
        "owner": record.owner,
        "version": record.version,
        "deleted": record.deleted,
        "fields": dict(record.fields),
    }


@command.command(
    "list",
    epilog="\b\nExamples:\n  flowctl records list deal --stage documents\n"
    "  flowctl records list contact config/ --format json\n"
    "  flowctl records list deal --deleted    # the recycle bin",
)
@click.argument("object")
@click.option("--stage", default="", help="Only records in this stage.")
@click.option("--deleted", is_flag=True, help="The records in the recycle bin (restorable) instead of the live ones.")
@click.option("--limit", default=50, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@_dir
@_db
def list_(object: str, stage: str, deleted: bool, limit: int, fmt: str, directory: Path, database: str) -> None:
    """List records of OBJECT in DIR's database (default: .)."""
    store = open_existing(target(directory, database))
    try:
        records = store.list_records(object, stage=stage, limit=limit, deleted=deleted)
    finally:
        store.close()
    if fmt == "json":
        json.dump([_record_json(r) for r in records], sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
        return
    rows = [
        [f"{r.object}/{r.id}", r.stage or "-", str(r.version), json.dumps(dict(r.fields), ensure_ascii=False)]
        for r in records
    ]
    echo_table(["RECORD", "STAGE", "VERSION", "FIELDS"], rows)
    click.echo(f"{len(records)} records")


@command.command("get", epilog="\b\nExamples:\n  flowctl records get deal 7\n  flowctl records get deal 7 config/")
@click.argument("object")
@click.argument("id")
@_dir
@_db
def get(object: str, id: str, directory: Path, database: str) -> None:
    """Print one record as JSON."""
    store = open_existing(target(directory, database))
    try:
        record = store.record(object, id)
    finally:
        store.close()
    if record is None:
        raise click.ClickException(f"no record {object}/{id}")
    click.echo(json.dumps(_record_json(record), ensure_ascii=False, indent=2))


@command.command(
    "put",
    epilog="""\b
Examples:
  flowctl records put contact 1 '{"full_name": "Lan", "phone": "0901234567"}'
  flowctl records put deal 7 '{"title": "Sofa", "amount": 15000000}' config/ --stage new

\b
The change is queued like an API write: a running daemon (or the next one
started) processes it and runs the automations it triggers.""",
)
@click.argument("object")
@click.argument("id")
@click.argument("fields_json")
@click.option("--stage", default="", help="Put the record into this stage.")
@_dir
@_db
def put(object: str, id: str, fields_json: str, stage: str, directory: Path, database: str) -> None:
    """Create or replace a record (FIELDS_JSON is a JSON object)."""
    try:
        fields = json.loads(fields_json)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="FIELDS_JSON") from exc
    if not isinstance(fields, dict):
        raise click.BadParameter("must be a JSON object", param_hint="FIELDS_JSON")
    bundle = load_or_exit(directory).bundle
    problems = check_fields(bundle, object, fields, complete=True) + check_stage(bundle, object, stage)
    if problems:
        raise click.ClickException("; ".join(problems))
    store = open_for(directory, database)
    try:
        (result,) = store.append_changes(
            [
                NewChange(
                    object=object,
                    record_id=id,
                    op="put",
                    fields=fields,
                    stage=stage,
                    idempotency_key=uuid.uuid4().hex,
                    source="cli",
                )
            ]
        )
    finally:
        store.close()
    click.echo(f"queued change {result.seq} for {object}/{id}")


@command.command(
    "restore",
    epilog="""\b
Examples:
  flowctl records restore deal 7
  flowctl records restore deal 7 config/ --db postgresql+psycopg://flowctl@db/flowctl

\b
The record comes back with its fields, stage and owner; its on: restored
automations run (not on: created). Like put, the change is queued: a running
daemon (or the next one started) processes it. A deleted record can be
restored until Config retention.deleted_records (default 30d) has passed.""",
)
@click.argument("object")
@click.argument("id")
@_dir
@_db
def restore(object: str, id: str, directory: Path, database: str) -> None:
    """Restore a deleted record from the recycle bin."""
    store = open_existing(target(directory, database))
    try:
        record = store.record(object, id)
        if record is None:
            raise click.ClickException(f"no record {object}/{id} (never written, or purged from the recycle bin)")
        if not record.deleted:
            raise click.ClickException(f"{object}/{id} is not deleted: only a record in the recycle bin is restored")
        (result,) = store.append_changes(
            [
                NewChange(
                    object=object,
                    record_id=id,
                    op="restore",
                    idempotency_key=uuid.uuid4().hex,
                    source="cli",
                )
            ]
        )
    finally:
        store.close()
    click.echo(f"queued change {result.seq}: restore {object}/{id}")


@command.command(
    "timeline",
    epilog="""\b
Examples:
  flowctl records timeline deal 7
  flowctl records timeline deal 7 config/ --format json

\b
Lists the stages the record entered, the notes add_note wrote on it, its
runs, its messages and its pending timers, as GET /v1/records/OBJECT/ID/timeline
answers (the newest 100 runs, messages and notes).""",
)
@click.argument("object")
@click.argument("id")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@_dir
@_db
def timeline_(object: str, id: str, fmt: str, directory: Path, database: str) -> None:
    """Show a record's timeline: stages, notes, runs, messages and timers."""
    bundle = load_or_exit(directory).bundle
    store = open_existing(target(directory, database))
    try:
        found = timeline(store, bundle, zone_of(bundle), object, id)
    except NotFound as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    if fmt == "json":
        click.echo(json.dumps(found, ensure_ascii=False, indent=2))
        return
    for line in timeline_lines(found):
        click.echo(line)
