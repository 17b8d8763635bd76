"""A consistent copy of a live SQLite database, and putting one back: ``flowctl db backup|restore``.

**Backup.** SQLite's online backup API copies the file page by page, a few hundred pages a step,
while the daemon goes on writing. A stepped backup restarts from the first page whenever another
connection writes between two steps (so under a steady load it would never end), unless the
source connection holds one read transaction across all steps: then every step reads the same
snapshot, and that snapshot is what the copy holds, whatever was committed after it began. In WAL
mode a reader never blocks a writer, so the daemon's writes go on during the copy, and the copy
takes neither the daemon's writer lock (``store/writelock.py``) nor SQLite's write lock. Its
costs are the disk and the CPU it shares with the daemon, and a WAL that cannot be checkpointed
past the snapshot until the copy ends (it grows by what the daemon writes meanwhile and is
reclaimed after). So each step is followed by a pause proportional to the step, and the copy is
flushed to disk every few MiB: on ext4 a ``fsync`` of the daemon's commit also waits for other
files' dirty pages, and a gigabyte of them would stall its commits. The copy is written to
``FILE.partial``, checked (``PRAGMA integrity_check``, the schema revision read back), synced and
only then renamed to ``FILE``: a ``FILE`` that exists is a whole, checked backup. The full check
reads every index against its table, which costs a large file several seconds of CPU; ``quick``
(``PRAGMA quick_check``) checks every page and b-tree but not that, which is what a page-for-page
copy can damage (an index that disagrees with its table was so in the source).

**Restore.** The backup is checked, copied beside the database as ``DB.restoring``, synced and
renamed over it. It refuses while a daemon runs on the database (the daemon holds ``DB.lock``
for its life, see ``runtime/daemon/leases.py``), and is held for the restore so none starts
meanwhile. A database, WAL or shared-memory file already there is kept, renamed to
``DB.before-restore-<time>`` (``--force``; without it the restore refuses): a WAL left by a daemon
killed on the old file must never be replayed onto the restored one.

What the restored database resends: rows the backup recorded as ``sent`` are never sent again;
rows pending or in flight at the backup, and everything the daemon did after it, are done again,
each message with the same outbox key (the ``Idempotency-Key`` / ``Message-ID``), so a gateway
that honours the key drops the copies. See docs/operations.md, "Backup and restore".
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

#: Pages copied per step (1 MiB of 4 KiB pages): the unit of progress and of pacing.
STEP_PAGES = 256
#: After a step, pause this share of the time the step took, leaving the disk and a core to the daemon.
PAUSE_SHARE = 0.5
#: Flush the copy to disk after every this many bytes, so that dirty pages never pile up.
SYNC_BYTES = 16 << 20

#: How a copy is checked: the name a user gives, and the PRAGMA.
CHECKS = {"full": "integrity_check", "quick": "quick_check"}

#: Where the docs explain a PostgreSQL backup and every restore.
DOCS = 'docs/operations.md, "Backup and restore"'

Progress = Callable[[int, int], None]  # (pages copied, pages in all)


class BackupError(Exception):
    """The backup or restore was not made; the message says why and what to do."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Checked:
    """What a SQLite file holds, read back from it."""

    file: Path
    bytes: int
    pages: int
    page_size: int
    revision: str  # the schema revision (alembic), "" for a file flowctl never migrated
    integrity: str  # "ok", or the first problems the check found
    how: str  # "full" (PRAGMA integrity_check) or "quick" (PRAGMA quick_check)
    seconds: float  # how long the check took


@dataclass(frozen=True, slots=True, kw_only=True)
class Backup:
    """A backup made: where from, where to, what it holds and how long it took."""

    source: Path
    checked: Checked
    copy_seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Restored:
    """A restore made: the database now holds the backup; ``kept`` are the files moved aside."""

    database: Path
    checked: Checked
    kept: tuple[Path, ...]
    resumes: dict[str, int]  # what the daemon will pick up: timers, waiting runs, messages to send


def backup(
    source: Path,
    target: Path,
    *,
    overwrite: bool = False,
    progress: Progress | None = None,
    step_pages: int = STEP_PAGES,
    pause_share: float = PAUSE_SHARE,
    how: str = "full",
) -> Backup:
    """Copy the SQLite database ``source`` to ``target`` as one consistent snapshot, while it is
    in use; check the copy. ``progress`` is called after each step."""
    if not source.is_file():
        raise BackupError(f"no database at {source}: give the SQLite file the daemon uses (--db or DIR)")
    if target.exists() and not overwrite:
        raise BackupError(f"{target} exists: choose another name, or --force to replace it")
    if target.resolve() == source.resolve():
        raise BackupError(f"{target} is the database itself: write the backup to another file")
    if not target.parent.is_dir():
        raise BackupError(f"no directory {target.parent} for the backup {target.name}: create it first")
    partial = target.with_name(target.name + ".partial")
    _remove(partial)
    started = time.monotonic()
    try:
        with _snapshot(source) as reader, _closing(sqlite3.connect(partial, isolation_level=None)) as writer:
            # the copy is synced at the end (and on the way, for the daemon's sake): no journal needed
            writer.execute("PRAGMA journal_mode=OFF")
            writer.execute("PRAGMA synchronous=OFF")
            pace = _Pace(partial, progress, pause_share)
            reader.backup(writer, pages=step_pages, progress=pace)
            # the pages carry the source's WAL flag: a backup is one self-contained file instead
            writer.execute("PRAGMA journal_mode=DELETE")
        _fsync(partial)
        copy_seconds = time.monotonic() - started
        checked = check(partial, how)
        if checked.integrity != "ok":
            raise BackupError(f"the copy of {source} failed its integrity check: {checked.integrity}")
        partial.replace(target)
        _fsync_directory(target.parent)
    except (sqlite3.Error, OSError) as exc:
        _remove(partial)
        raise BackupError(f"the backup of {source} to {target} failed ({exc}); {target} is unchanged") from exc
    except BaseException:
        _remove(partial)
        raise
    return Backup(source=source, checked=_renamed(checked, target), copy_seconds=copy_seconds)


def check(file: Path, how: str = "full") -> Checked:
    """Read ``file`` back: ``PRAGMA integrity_check`` (``quick``: ``quick_check``), its pages and
    its schema revision."""
    if how not in CHECKS:
        raise ValueError(f"check {how!r}: one of {', '.join(CHECKS)}")
    if not file.is_file():
        raise BackupError(f"no such file: {file}")
    started = time.monotonic()
    try:
        with _closing(sqlite3.connect(f"file:{file}?mode=ro", uri=True, isolation_level=None)) as db:
            problems = [row[0] for row in db.execute(f"PRAGMA {CHECKS[how]}(20)")]
            pages = int(db.execute("PRAGMA page_count").fetchone()[0])
            page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
            revision = _revision(db)
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{file} is not a readable SQLite database: {exc}") from exc
    return Checked(
        file=file,
        bytes=file.stat().st_size,
        pages=pages,
        page_size=page_size,
        revision=revision,
        integrity="; ".join(problems),
        how=how,
        seconds=time.monotonic() - started,
    )


def restore(copy: Path, database: Path, *, overwrite: bool = False) -> Restored:
    """Make ``database`` a copy of the backup ``copy``; refuse while a daemon runs on it, and
    keep (``overwrite``) or refuse to touch what is there."""
    checked = check(copy)
    if checked.integrity != "ok":
        raise BackupError(f"{copy} failed its integrity check, not restored: {checked.integrity}")
    if not checked.revision:
        raise BackupError(f"{copy} holds no flowctl schema (no alembic_version): is it a flowctl backup?")
    if copy.resolve() == database.resolve():
        raise BackupError(f"{copy} is the database itself: restore into another file")
    database.parent.mkdir(parents=True, exist_ok=True)
    with _no_daemon(database):
        there = [p for p in _files_of(database) if p.exists()]
        if there and not overwrite:
            raise BackupError(
                f"{database} exists: restore into a new database (--db sqlite:///new.db), or --force "
                f"to replace it (the old files are kept as {database.name}.before-restore-<time>)"
            )
        kept = _move_aside(database, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
        restoring = database.with_name(database.name + ".restoring")
        try:
            _copy(copy, restoring)
            restoring.replace(database)
            _fsync_directory(database.parent)
        except OSError as exc:
            _remove(restoring)
            before = f"; the previous files are kept as {', '.join(map(str, kept))}" if kept else ""
            raise BackupError(f"the restore of {copy} to {database} failed: {exc}{before}") from exc
        except BaseException:
            _remove(restoring)
            raise
    return Restored(database=database, checked=_renamed(checked, database), kept=kept, resumes=resumes(database))


def resumes(database: Path) -> dict[str, int]:
    """What a daemon started on ``database`` picks up: pending timers, waiting runs, messages to send."""
    queries = {
        "timers": "SELECT count(*) FROM timers",
        "waiting_runs": "SELECT count(*) FROM runs WHERE status = 'waiting'",
        "messages_to_send": "SELECT count(*) FROM outbox WHERE status IN ('pending', 'sending')",
        "changes_to_process": "SELECT count(*) FROM changes WHERE status IN ('pending', 'claimed')",
    }
    with _closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, isolation_level=None)) as db:
        found: dict[str, int] = {}
        for name, sql in queries.items():
            with contextlib.suppress(sqlite3.OperationalError):  # a table an older schema lacks
                found[name] = int(db.execute(sql).fetchone()[0])
        return found


class _Pace:
    """The backup's progress callback: report, flush the copy now and then, and pause after each
    step for ``share`` of the time it took."""

    def __init__(self, partial: Path, progress: Progress | None, share: float) -> None:
        self.partial = partial
        self.progress = progress
        self.share = share
        self.synced = 0
        self.last = time.monotonic()

    def __call__(self, status: int, remaining: int, total: int) -> None:
        step = time.monotonic() - self.last
        if self.progress is not None:
            self.progress(total - remaining, total)
        size = self.partial.stat().st_size
        if size - self.synced >= SYNC_BYTES:
            _fsync(self.partial)
            self.synced = size
        if remaining and self.share > 0:
            time.sleep(step * self.share)
        self.last = time.monotonic()


@contextlib.contextmanager
def _snapshot(source: Path) -> Iterator[sqlite3.Connection]:
    """A connection to ``source`` inside one read transaction (see the module docstring)."""
    with _closing(sqlite3.connect(source, isolation_level=None, timeout=10)) as db:
        db.execute("PRAGMA query_only=ON")
        try:
            db.execute("BEGIN")
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the snapshot starts here
        except sqlite3.DatabaseError as exc:
            raise BackupError(f"{source} is not a readable SQLite database: {exc}") from exc
        try:
            yield db
        finally:
            db.execute("COMMIT")


@contextlib.contextmanager
def _no_daemon(database: Path) -> Iterator[None]:
    """Hold ``DB.lock`` (the daemon's, see ``lock_sqlite``); refuse when a daemon holds it."""
    with open(f"{database}.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid = handle.read().strip() or "?"
            raise BackupError(
                f"a daemon (pid {pid}) runs on {database}: stop it first, or restore into a new database"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _files_of(database: Path) -> tuple[Path, Path, Path]:
    return database, Path(f"{database}-wal"), Path(f"{database}-shm")


def _move_aside(database: Path, stamp: str) -> tuple[Path, ...]:
    """Rename the database and its WAL to ``DB.before-restore-<stamp>`` (openable as they are);
    the shared-memory index is rebuilt from the WAL, so it is removed."""
    main, wal, shm = _files_of(database)
    aside = database.with_name(f"{database.name}.before-restore-{stamp}")
    kept = []
    for path, to in ((main, aside), (wal, Path(f"{aside}-wal"))):
        if path.exists():
            path.replace(to)
            kept.append(to)
    _remove(shm)
    return tuple(kept)


def _copy(source: Path, target: Path) -> None:
    with source.open("rb") as src, target.open("wb") as out:
        while chunk := src.read(SYNC_BYTES):
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())


def _revision(db: sqlite3.Connection) -> str:
    try:
        row = db.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.OperationalError:
        return ""
    return str(row[0]) if row else ""


def _renamed(checked: Checked, file: Path) -> Checked:
    return replace(checked, file=file)


@contextlib.contextmanager
def _closing(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    try:
        yield db
    finally:
        db.close()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(directory: Path) -> None:
    """Make a rename durable: sync the directory that holds the new name."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


__all__ = ["Backup", "BackupError", "Checked", "Restored", "backup", "check", "restore", "resumes"]
