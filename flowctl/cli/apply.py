"""``flowctl apply``: plan, then deploy atomically; a running daemon picks the version up."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from flowctl.channels.env import unset_env
from flowctl.cli.common import config_zone
from flowctl.cli.gitops_common import ALLOW_CANCEL, FORCE, FORMAT, NOW, echo_json, parse_now, render_plan
from flowctl.cli.store_access import DB_HELP, open_for
from flowctl.gitops.deploy import DeployConflict, deploy
from flowctl.gitops.plan import make_plan
from flowctl.gitops.versions import read_directory

if TYPE_CHECKING:
    from flowctl.gitops.plan import Plan
    from flowctl.ports import Store


@click.command(
    "apply",
    epilog="""\b
Examples:
  flowctl apply                                  # ./ into its own database
  flowctl apply config/ --db postgresql+psycopg://flowctl@db/flowctl -m "birthday SMS at 9"
  flowctl apply --allow-cancel                   # cancel runs on removed nodes/rules
  flowctl apply --force                          # a version that removes most documents

\b
Makes the same checks as 'flowctl plan'. One transaction stores the version (content hash,
git commit and author, the files themselves), makes it current and cancels the runs listed
(with --allow-cancel); a refused plan changes nothing. A running daemon switches to the new
version within seconds; runs already started stay on the version they started on.

\b
Every ${ENV} variable a channel, a source or an API token needs that is not set
where apply runs is named in a warning (JSON: unset_env); it does not stop the
deploy, since the daemon may run elsewhere: 'flowctl validate --env' checks
them where it does.

\b
Exit codes: 0 applied or nothing to apply, 1 refused, invalid or the deployed version changed
meanwhile.""",
)
@click.argument("directory", default=".", type=click.Path(path_type=Path))
@click.option("--db", "database", default="", help=DB_HELP)
@click.option("-m", "--message", default="", help="Why (default: the git commit's subject).")
@FORMAT
@ALLOW_CANCEL
@FORCE
@NOW
def command(
    directory: Path, database: str, message: str, fmt: str, allow_cancel: bool, force: bool, now_text: str
) -> None:
    """Deploy DIR as the current configuration, after the checks of 'flowctl plan'."""

    if not directory.exists():
        raise click.BadParameter(f"no such file or directory: {directory}", param_hint="DIR")
    now = parse_now(now_text, config_zone(directory))
    proposed = read_directory(directory)
    store = open_for(directory, database)
    try:
        plan = make_plan(store, proposed, now, allow_cancel=allow_cancel, force=force)
        bundle = proposed.loaded.bundle
        unset = [str(u) for u in unset_env(bundle, os.environ)] if bundle is not None else []
        sys.exit(finish(store, plan, now, message, fmt, unset))
    finally:
        store.close()


def finish(store: Store, plan: Plan, now: datetime, message: str, fmt: str, unset: Sequence[str] = ()) -> int:
    """Deploy ``plan`` if it may be, print the outcome, return the exit code (shared with rollback).
    ``unset``: the ``${ENV}`` variables the version needs that are not set here, named in a warning."""

    applied, error = False, ""
    if plan.status == "changes":
        try:
            applied = deploy(store, plan, now, message=message)
        except DeployConflict as exc:
            error = str(exc)
    if fmt == "json":
        echo_json({**plan.to_json(), "applied": applied, "error": error, "unset_env": list(unset)})
    else:
        click.echo(render_plan(plan))
        if unset:
            click.echo(
                f"Warning: not set where this runs: {'; '.join(unset)}. The daemon needs them where it "
                "runs; until then the messages of those channels are held",
                err=True,
            )
        if applied:
            cancelled = len(plan.cancel_runs)
            click.echo(
                f"Applied: version {plan.proposed.id} is now current"
                + (f"; cancelled {cancelled} runs" if cancelled else "")
            )
        elif error:
            click.echo(f"Error: {error}", err=True)
    return 1 if error or plan.status in ("invalid", "refused") else 0
