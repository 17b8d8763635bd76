"""``flowctl run``: the daemon on a config directory (SQLite and the log channel by default)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from flowctl.cli.common import load_or_exit
from flowctl.runtime import compose
from flowctl.runtime.daemon.logs import setup_logging
from flowctl.runtime.settings import BadListen, Settings


@click.command(
    "run",
    epilog="""\b
Examples:
  flowctl run                                   # ./ with sqlite:///flowctl.db and the log channel
  flowctl run examples/furniture-store --listen 127.0.0.1:9000
  flowctl run . --db postgresql+psycopg://flowctl@db/flowctl --log-format json

\b
Then, for example:
  curl -X PUT localhost:8080/v1/records/contact/1 -H 'Content-Type: application/json' \\
       -d '{"fields": {"full_name": "Lan", "phone": "0901234567"}}'
  curl localhost:8080/v1/records/contact/1
  open http://localhost:8080/ui/                # the console (boards, runs, outbox ...)

\b
On start the directory is deployed through the same checks as 'flowctl apply'.
SIGHUP (or --watch) reloads it the same way; 'flowctl apply' from elsewhere
is picked up within seconds. Runs keep the version they started on.
SIGTERM (or Ctrl-C) stops claiming work, finishes what is in flight and exits 0.
With --processes 2 (the default) the engine runs in a child process that
dies with this one and is started again if it exits.""",
)
@click.argument("directory", default=".", type=click.Path(path_type=Path))
@click.option(
    "--db",
    "database",
    default="",
    help="Database URL (default: Config's database, else sqlite:///flowctl.db beside the config).",
)
@click.option("--listen", default="", help="host:port to listen on (default: Config's listen, 127.0.0.1:8080).")
@click.option(
    "--watch",
    is_flag=True,
    help="Reload when the directory's files change (SIGHUP reloads too); "
    "an invalid or refused change is logged and the running version stays.",
)
@click.option(
    "--processes",
    type=click.IntRange(1, 2),
    default=2,
    show_default=True,
    help="2: the engine (rules, runs, timers) runs in a second process, so the daemon uses two cores; "
    "1: everything in this one process.",
)
@click.option("--no-ui", "no_ui", is_flag=True, help="Do not serve the console (the web UI at /ui/).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option(
    "--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info", show_default=True
)
def command(
    directory: Path,
    database: str,
    listen: str,
    watch: bool,
    processes: int,
    no_ui: bool,
    log_format: str,
    log_level: str,
) -> None:
    """Run the daemon: the HTTP API, the workers, the timers and the outbox delivery.

    With --log-format json every line on stderr, of both processes, is one JSON object (the ids a
    line is about are fields); the log channel prints its messages on stdout."""
    setup_logging(log_format, log_level)
    loaded = load_or_exit(directory) if log_format == "text" else _load_or_log(directory)
    for warning in loaded.warnings:
        logging.getLogger("flowctl.config").info("%s", warning)
    try:
        settings = Settings.of(
            directory,
            loaded,
            database=database,
            listen=listen,
            watch=watch,
            processes=processes,
            log_format=log_format,
            log_level=log_level,
            ui=not no_ui,
        )
    except BadListen as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from exc
    try:
        code = compose.run(settings, _say_json if log_format == "json" else _say_text)
    except compose.Refused as exc:
        if log_format == "json":
            banner.error("%s", exc)
            sys.exit(1)
        raise click.ClickException(str(exc)) from exc
    if code:
        sys.exit(code)


banner = logging.getLogger("flowctl.run")


def _say_text(text: str, fields: Mapping[str, object]) -> None:
    click.echo(text, err=True)


def _say_json(text: str, fields: Mapping[str, object]) -> None:
    """The start and stop lines as log lines: one JSON object each, the ids as fields."""
    for line in text.splitlines():
        banner.info("%s", line.removeprefix("flowctl: "), extra=dict(fields))


def _load_or_log(directory: Path) -> Any:
    """``load_or_exit`` for a JSON log: each error one JSON line, with its place as fields."""
    from flowctl.spec.config import load_bundle  # lazy: start-up time (as load_or_exit)

    if not directory.exists():
        raise click.BadParameter(f"no such file or directory: {directory}", param_hint="DIR")
    loaded = load_bundle(directory)
    for issue in loaded.errors:
        where = {"code": issue.code, "file": issue.file, "line": issue.line, "col": issue.col, "hint": issue.hint}
        logging.getLogger("flowctl.config").error("%s", issue.message, extra=where)
    if not loaded.ok:
        banner.error("%s: invalid: %d errors; run 'flowctl validate %s'", directory, len(loaded.errors), directory)
        sys.exit(1)
    return loaded
