"""``flowctl plan``: what applying a directory would change, checked against the live system."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from flowctl.cli.gitops_common import ALLOW_CANCEL, FORCE, FORMAT, NOW, echo_json, parse_now, render_plan
from flowctl.cli.store_access import DB_HELP, NoDatabase, open_existing, target
from flowctl.gitops.plan import make_plan
from flowctl.gitops.versions import read_directory
from flowctl.store import MemoryStore


@click.command(
    "plan",
    epilog="""\b
Examples:
  flowctl plan                                   # ./ against its own database
  flowctl plan config/ --db postgresql+psycopg://flowctl@db/flowctl
  flowctl plan --format json | jq .findings      # in CI
  flowctl plan --allow-cancel                    # show what apply --allow-cancel would cancel

\b
Refused (exit 1): records in a stage the change removes; runs or timers waiting on a removed
flow node or stage rule (unless --allow-cancel); removing every document or more than half
of them, or requiring a field that records in an occupied stage lack (unless --force).
Warned: fields removed while records hold values. Noted: care processes that already ran
today (the edit applies from tomorrow). The blast radius counts
what changed care processes would send in the next 24 hours and 7 days.

\b
With no database yet (a fresh directory), the plan is made against an empty system and no
database is created; 'flowctl apply' creates it.

\b
Exit codes: 0 no change (or only comments and layout of YAML files), 2 changes to apply,
1 refused or invalid.""",
)
@click.argument("directory", default=".", metavar="[DIR]", type=click.Path(path_type=Path))
@click.option("--db", "database", default="", help=DB_HELP)
@FORMAT
@ALLOW_CANCEL
@FORCE
@NOW
def command(directory: Path, database: str, fmt: str, allow_cancel: bool, force: bool, now_text: str) -> None:
    """Show what applying DIR would change: documents, field by field, and the live state it touches."""
    if not directory.exists():
        raise click.BadParameter(f"no such file or directory: {directory}", param_hint="DIR")
    where = target(directory, database)
    now = parse_now(now_text, where.zone)
    proposed = read_directory(directory)
    fresh: NoDatabase | None = None
    try:
        store = open_existing(where)
    except NoDatabase as exc:  # nothing deployed: plan against an empty system, create nothing
        store, fresh = MemoryStore(), exc
    try:
        plan = make_plan(store, proposed, now, allow_cancel=allow_cancel, force=force)
    finally:
        store.close()
    if fresh is not None:
        click.echo(
            f"no database at {fresh.path} yet: planned against an empty system ('flowctl apply' creates it)", err=True
        )
    if fmt == "json":
        echo_json(plan.to_json())
    else:
        click.echo(render_plan(plan, where.zone))
    sys.exit(plan.exit_code)
