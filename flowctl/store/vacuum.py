"""``VACUUM`` of a SQLite file, switching it to ``auto_vacuum=INCREMENTAL`` on the way.

``auto_vacuum`` is fixed when a file's first table is made; only a ``VACUUM`` (which rewrites the
file) changes it afterwards, and that cannot run in a transaction, hence a command of its own
(``flowctl db vacuum``) rather than a migration. It runs under the writer lock, so the daemon's
writes wait for it rather than fail.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def vacuum_sqlite(store: Any) -> tuple[int, int]:
    """VACUUM ``store``'s file with ``auto_vacuum=INCREMENTAL``; its size (file and WAL) before and after."""
    path = str(store.engine.url.database)
    before = _size(path)
    with store._write_lock, store.engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        raw.executescript("PRAGMA auto_vacuum=INCREMENTAL; VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")
    return before, _size(path)


def _size(path: str) -> int:
    return sum(p.stat().st_size for p in (Path(path), Path(f"{path}-wal")) if p.exists())
