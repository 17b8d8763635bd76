"""Open the store a command inspects: ``--db`` or the config directory's database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

DB_HELP = "Database URL (default: the config directory's database, sqlite:///flowctl.db beside it)."


def open_for(directory: Path, database: str) -> Any:
    from flowctl.runtime.service import resolve_database
    from flowctl.store import open_store

    url = database
    if not url:
        from flowctl.spec.config import load_bundle

        loaded = load_bundle(directory, semantic=False)
        configured = loaded.bundle.config.database if loaded.bundle else "sqlite:///flowctl.db"
        url = resolve_database(configured, directory.resolve())
    try:
        return open_store(url)
    except Exception as exc:
        raise click.ClickException(f"cannot open the store {url}: {exc}") from exc
