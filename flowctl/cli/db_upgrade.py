"""``flowctl db upgrade``: migrate the schema to this release's head, the one way an older schema moves.

A daemon never migrates an older schema itself (a replica still running the old code would meet
tables it does not know); it refuses to start and names this command. The upgrade refuses while
another replica holds a live lease, or while a daemon holds a SQLite file's lock, unless
``--force``. ``--check`` only reads, for CI and deploy scripts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from flowctl.cli.store_access import DB_HELP, target

#: ``--check``'s exit codes besides 0 (the schema is current, or empty and created on first open).
DUE, AHEAD = 1, 2


@click.command(
    "upgrade",
    epilog="""\b
Examples:
  flowctl db upgrade --check                              # exit 1 when an upgrade is due
  flowctl db upgrade                                      # ./flowctl.db
  flowctl db upgrade --db postgresql+psycopg://flowctl@db/flowctl --format json

\b
Order with replicas: stop every replica of the old release, run this once,
then start the new release's replicas (see docs/operations.md, "Upgrading").
--check exits 0 when the schema is current (or the database is empty: it is
created at the newest revision when first opened), 1 when an upgrade is due,
2 when the database is newer than this flowctl.""",
)
@click.argument("directory", default=".", metavar="[DIR]", type=click.Path(path_type=Path))
@click.option("--db", "database", default="", help=DB_HELP)
@click.option("--check", is_flag=True, help="Only say where the schema is; exit 1 when an upgrade is due.")
@click.option(
    "--force", is_flag=True, help="Upgrade even while another replica holds leases or a daemon holds the SQLite lock."
)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def command(directory: Path, database: str, check: bool, force: bool, fmt: str) -> None:
    """Apply the schema migrations up to this flowctl's newest revision."""
    from flowctl.store import revisions as rv  # lazy: start-up time (alembic and SQLAlchemy)
    from flowctl.store.engines import make_engine  # lazy: start-up time (SQLAlchemy)

    where = target(directory, database)
    if check and where.missing:
        _report(
            fmt,
            _outcome(rv.Revisions(current=None, head=rv.head()), upgraded=False),
            "no database yet: it is created at the newest revision when first opened",
        )
        return
    try:
        engine = make_engine(where.url)
    except Exception as exc:
        raise click.ClickException(f"cannot open the store {where.url}: {exc}") from exc
    try:
        found = rv.revisions(engine)
        if check:
            _checked(fmt, found)
            return
        if found.state == "current":
            _report(fmt, _outcome(found, upgraded=False), f"the database is at revision {found.head}: nothing to do")
            return
        if found.state == "ahead":
            _refuse(fmt, _outcome(found, upgraded=False), str(rv.SchemaAhead(str(found.current), found.head)))
        with _alone(where.url, engine, found, force, fmt) as replicas:
            before = rv.upgrade(engine)
        text = f"upgraded the database from revision {before.current or '(empty)'} to {before.head}"
        _report(fmt, _outcome(before, upgraded=True, replicas=replicas), text)
    finally:
        engine.dispose()


def _checked(fmt: str, found: Any) -> None:
    outcome = _outcome(found, upgraded=False)
    if found.state == "behind":
        text = f"the database is at revision {found.current}, this flowctl needs {found.head}: run `flowctl db upgrade`"
        _report(fmt, outcome, text, exit_code=DUE)
    elif found.state == "ahead":
        _report(fmt, outcome, f"the database is at revision {found.current}, newer than {found.head}", exit_code=AHEAD)
    else:
        _report(fmt, outcome, f"the database is at revision {found.current or '(empty)'}, head {found.head}: current")


@contextmanager
def _alone(url: str, engine: Any, found: Any, force: bool, fmt: str) -> Iterator[list[str]]:
    """Hold the SQLite lock (no daemon starts meanwhile) and check that no replica holds a live
    lease; ``--force`` skips both. Yields the replicas found (in the output even when forced)."""
    from flowctl.runtime.daemon.clock import SystemClock  # lazy: start-up time (the runtime)
    from flowctl.runtime.daemon.leases import AnotherDaemon, lock_sqlite  # lazy: start-up time (the runtime)
    from flowctl.store.revisions import lease_holders  # lazy: start-up time (SQLAlchemy)

    where = f"from revision {found.current or '(empty)'} to {found.head}"
    lock = None
    if not force:
        try:
            lock = lock_sqlite(url)
        except AnotherDaemon as exc:
            _refuse(fmt, _outcome(found, upgraded=False), f"{exc}: stop it before upgrading {where}")
    try:
        replicas = lease_holders(engine, SystemClock().now())
        if replicas and not force:
            _refuse(
                fmt,
                _outcome(found, upgraded=False, replicas=replicas),
                f"replicas hold live leases on this database: {', '.join(replicas)}; stop them before "
                f"upgrading {where} (or give --force if they are gone and their leases have not run out)",
            )
        yield replicas
    finally:
        if lock is not None:
            lock.close()


def _outcome(found: Any, *, upgraded: bool, replicas: list[str] | None = None) -> dict[str, Any]:
    return {
        "current": found.head if upgraded else found.current,
        "from": found.current,
        "head": found.head,
        "state": "current" if upgraded else found.state,
        "upgraded": upgraded,
        "replicas": replicas or [],
    }


def _report(fmt: str, outcome: dict[str, Any], text: str = "", *, exit_code: int = 0) -> None:
    click.echo(json.dumps(outcome) if fmt == "json" else text)
    if exit_code:
        raise click.exceptions.Exit(exit_code)


def _refuse(fmt: str, outcome: dict[str, Any], message: str) -> None:
    if fmt == "json":
        click.echo(json.dumps({**outcome, "error": message}))
        raise click.exceptions.Exit(1)
    raise click.ClickException(message)
