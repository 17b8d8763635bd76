"""``flowctl db backup`` and ``flowctl db restore``: parse, call ``flowctl.store.backup``, render."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from flowctl.cli.store_access import DB_HELP, target

#: The backup's CPU priority (nice): below the daemon's, whose latency matters more than the copy's.
NICE = 10

_format = click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one document for CI and scripts.",
)
_force = click.option("--force", is_flag=True, help="Replace what is there (restore keeps it, renamed).")
_db = click.option("--db", "database", default="", help=DB_HELP)
_directory = click.argument("directory", default=".", metavar="[DIR]", type=click.Path(path_type=Path))


@click.command(
    "backup",
    epilog="""\b
Examples:
  flowctl db backup /backups/flowctl-$(date +%F).db          # ./flowctl.db, daemon running or not
  flowctl db backup nightly.db /srv/crm --format json
  flowctl db backup copy.db --db sqlite:////var/lib/flowctl/flowctl.db
  flowctl db backup big.db --check quick      # a large file on a busy host

\b
The copy is one snapshot of the database, taken while the daemon goes on
writing (SQLite's online backup API, in small paced steps); it is checked
(PRAGMA integrity_check, schema revision) before it is named FILE. It runs
at nice 10, below the daemon.
PostgreSQL: use pg_dump or pg_basebackup; see docs/operations.md,
"Backup and restore".""",
)
@click.argument("file", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path))
@_directory
@_db
@_force
@click.option(
    "--check",
    "how",
    type=click.Choice(["full", "quick"]),
    default="full",
    show_default=True,
    help="full: PRAGMA integrity_check; quick: PRAGMA quick_check (pages and b-trees, not index "
    "against table: a fraction of the CPU on a large file).",
)
@_format
def backup(file: Path, directory: Path, database: str, force: bool, how: str, fmt: str) -> None:
    """Copy the live SQLite database to FILE, consistent and checked."""
    from flowctl.store.backup import BackupError  # lazy: start-up time (flowctl --help)
    from flowctl.store.backup import backup as copy

    source = _sqlite_file(directory, database, "backup")
    shown = _Progress() if fmt == "text" and sys.stderr.isatty() else None
    try:
        with _background():
            made = copy(source, file, overwrite=force, progress=shown, how=how)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        if shown is not None:
            shown.done()
    checked = made.checked
    if fmt == "json":
        document = {"source": str(made.source), "copy_seconds": round(made.copy_seconds, 3), **_checked(checked)}
        click.echo(json.dumps(document, indent=2))
        return
    click.echo(
        f"backed up {made.source} to {checked.file}: {_size(checked.bytes)}, {checked.pages} pages, "
        f"schema {checked.revision or '(none)'}, {'integrity' if how == 'full' else 'quick check'} ok; "
        f"copied in {made.copy_seconds:.1f} s, checked in {checked.seconds:.1f} s"
    )


@click.command(
    "restore",
    epilog="""\b
Examples:
  flowctl db restore nightly.db --db sqlite:////srv/crm/restored.db   # into a new database
  flowctl db restore nightly.db /srv/crm --force     # replace ./flowctl.db (kept, renamed)

\b
Stop the daemon first: the restore refuses while one runs on the database.
Messages the backup recorded as sent are never sent again; what was sent
after the backup is sent again with the same Idempotency-Key / Message-ID.
See docs/operations.md, "Backup and restore".""",
)
@click.argument("file", metavar="BACKUP", type=click.Path(dir_okay=False, path_type=Path))
@_directory
@_db
@_force
@_format
def restore(file: Path, directory: Path, database: str, force: bool, fmt: str) -> None:
    """Make the database a copy of BACKUP (made by 'flowctl db backup')."""
    from flowctl.store.backup import BackupError  # lazy: start-up time (flowctl --help)
    from flowctl.store.backup import restore as put_back

    where = _sqlite_file(directory, database, "restore")
    try:
        done = put_back(file, where, overwrite=force)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from exc
    if fmt == "json":
        document = {"backup": str(file), "kept": [str(p) for p in done.kept], "resumes": done.resumes}
        click.echo(json.dumps({**document, **_checked(done.checked)}, indent=2))
        return
    click.echo(f"restored {file} to {done.database}: schema {done.checked.revision}, {_size(done.checked.bytes)}")
    for kept in done.kept:
        click.echo(f"  kept the previous file as {kept}")
    if done.resumes:
        click.echo(
            "  the daemon will resume: " + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in done.resumes.items())
        )


@contextlib.contextmanager
def _background() -> Iterator[None]:
    """Run at nice ``NICE``: the daemon's requests come first, the copy and its check wait for a
    free core. The priority is put back after (when allowed: it matters when called in-process)."""
    before = os.getpriority(os.PRIO_PROCESS, 0)
    os.setpriority(os.PRIO_PROCESS, 0, max(before, NICE))
    try:
        yield
    finally:
        with contextlib.suppress(PermissionError):  # raising a priority again needs CAP_SYS_NICE
            os.setpriority(os.PRIO_PROCESS, 0, before)


def _sqlite_file(directory: Path, database: str, verb: str) -> Path:
    where = target(directory, database)
    if where.file is not None:
        return where.file
    raise click.ClickException(
        f"flowctl db {verb} works on a SQLite file, and {where.url.split('@')[-1]} is not one. "
        "PostgreSQL: pg_dump --format=custom / pg_restore, or pg_basebackup with WAL archiving for "
        'point-in-time recovery; see docs/operations.md, "Backup and restore"'
    )


def _checked(checked: Any) -> dict[str, Any]:
    return {
        "file": str(checked.file),
        "bytes": checked.bytes,
        "pages": checked.pages,
        "page_size": checked.page_size,
        "revision": checked.revision,
        "integrity": checked.integrity,
        "check": checked.how,
        "check_seconds": round(checked.seconds, 3),
    }


def _size(count: int) -> str:
    return f"{count / (1 << 20):.1f} MiB" if count >= 1 << 20 else f"{count / 1024:.1f} KiB"


class _Progress:
    """``copied 120.0 of 1024.0 MiB (11 %)`` on the terminal's last line, at most 10 times a second."""

    def __init__(self) -> None:
        self.shown = 0.0
        self.any = False

    def __call__(self, copied: int, total: int) -> None:
        now = time.monotonic()
        if now - self.shown < 0.1 and copied < total:
            return
        self.shown, self.any = now, True
        share = copied * 100 // max(total, 1)
        then = ", checking the copy" if copied >= total else ""
        click.echo(f"\rcopied {copied} of {total} pages ({share} %){then}", nl=False, err=True)

    def done(self) -> None:
        if self.any:
            click.echo(err=True)
