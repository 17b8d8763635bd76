"""``flowctl db stats`` and ``flowctl db vacuum``: what the database holds, what the next purge
would remove under the configured ``retention:``, and giving a SQLite file's free pages back."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from flowctl.cli.store_access import DB_HELP, open_existing, target

#: The retention setting behind each kind the purge removes.
SETTING = {
    "changes": "processed_changes",
    "runs": "finished_runs",
    "messages": "sent_messages",
    "care": "care_occurrences",
}


def _bundle(directory: Path) -> Any:
    """The directory's bundle (its retention, channels and care processes), else the defaults."""
    from flowctl.spec import model as m  # lazy: start-up time (the spec model, for this command only)
    from flowctl.spec.config import load_bundle  # lazy: start-up time (jsonschema, for this command only)

    loaded = load_bundle(directory, semantic=False) if directory.is_dir() else None
    if loaded is not None and loaded.bundle is not None:
        return loaded.bundle
    return m.Bundle(root=str(directory), config=m.Config(metadata=m.Metadata(name="defaults")))


def collect(directory: Path, database: str) -> dict[str, Any]:
    """Sizes per kind, and the rows the next purge would remove, as one JSON-ready dict."""
    from flowctl.runtime.daemon.clock import SystemClock  # lazy: start-up time (the runtime, for this command)
    from flowctl.runtime.daemon.retention import cutoffs  # lazy: start-up time (the runtime, for this command)
    from flowctl.spec.durations import format_duration  # lazy: start-up time (for this command only)
    from flowctl.store.stats import read_stats  # lazy: start-up time (SQLAlchemy, for this command only)

    where = target(directory, database)
    store = open_existing(where)
    try:
        if not hasattr(store, "engine"):
            raise click.ClickException("db stats needs a database: memory:// holds nothing to measure")
        bundle = _bundle(directory)
        cuts = cutoffs(bundle, SystemClock().now())
        stats = read_stats(store.engine)
        out = asdict(stats)
        for kind, before in cuts.items():
            keep = getattr(bundle.config.retention, SETTING[kind])
            out["kinds"][kind]["purge"] = {
                "rows": store.purgeable(kind, before),
                "retention": f"{keep.days}d" if keep.total_seconds() % 86400 == 0 else format_duration(keep),
                "before": before.isoformat(timespec="seconds"),
            }
        out["database"] = where.url.split("@")[-1] if "@" in where.url else where.url  # no password
        return out
    finally:
        store.close()


def size(value: int | None) -> str:
    if value is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value = value / 1024  # type: ignore[assignment]
    return f"{value} B"  # pragma: no cover


def render(found: dict[str, Any]) -> str:
    lines = [f"database {found['database']} ({found['dialect']})"]
    if found["files"]:
        files = ", ".join(f"{name} {size(n)}" for name, n in found["files"].items())
        lines.append(
            f"  {files}; free inside {size(found['free_bytes'])} (auto_vacuum {found['auto_vacuum']}"
            + (", run 'flowctl db vacuum' once to give purged space back" if found["auto_vacuum"] == "none" else "")
            + ")"
        )
    lines.append(f"{'kind':<16}{'rows':>12}{'size':>12}  {'next purge':>10}  by status")
    for kind, k in found["kinds"].items():
        purge = k.get("purge")
        due = f"{purge['rows']:>10,}" if purge else f"{'-':>10}"
        by = ", ".join(f"{status} {n:,}" for status, n in sorted(k["by"].items()))
        lines.append(f"{kind:<16}{k['rows']:>12,}{size(k['bytes']):>12}  {due}  {by}".rstrip())
    kept = ", ".join(f"{kind} {k['purge']['retention']}" for kind, k in found["kinds"].items() if k.get("purge"))
    lines.append(f"retention: {kept} (the next purge removes what is older; see docs/operations.md#retention)")
    return "\n".join(lines)


@click.command(
    "stats",
    epilog="""\b
Examples:
  flowctl db stats                                # ./ and its database
  flowctl db stats config/ --format json          # for a script or a dashboard
  flowctl db stats config/ --db postgresql+psycopg://flowctl@db/flowctl""",
)
@click.argument("directory", default=".", metavar="[DIR]", type=click.Path(path_type=Path))
@click.option("--db", "database", default="", help=DB_HELP)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def stats(directory: Path, database: str, fmt: str) -> None:
    """Rows and size on disk per kind (changes, runs, timers, messages by status, care…), the
    database's file or relation sizes, and how many rows the next purge would remove under the
    retention: of DIR's Config (the defaults without one)."""
    found = collect(directory, database)
    click.echo(json.dumps(found, indent=2) if fmt == "json" else render(found))


@click.command(
    "vacuum",
    epilog="""\b
Examples:
  flowctl db vacuum                               # ./flowctl.db, with the daemon stopped
  flowctl db vacuum config/ --db sqlite:///var/lib/flowctl/flowctl.db""",
)
@click.argument("directory", default=".", metavar="[DIR]", type=click.Path(path_type=Path))
@click.option("--db", "database", default="", help=DB_HELP)
def vacuum(directory: Path, database: str) -> None:
    """Rewrite a SQLite file compactly and switch it to auto_vacuum=INCREMENTAL, so that from
    then on the daemon's purges give space back as they go. Needed once for a file created before
    flowctl set it (new files have it). It holds the writer lock while it copies the whole file:
    stop the daemon first, or expect writes to wait. On PostgreSQL it does nothing: autovacuum
    makes purged space reusable (VACUUM FULL in a maintenance window shrinks the files)."""
    from flowctl.store.vacuum import vacuum_sqlite  # lazy: start-up time (SQLAlchemy, for this command only)

    store = open_existing(target(directory, database))
    try:
        if getattr(store, "dialect", "") != "sqlite":
            click.echo("not a SQLite file: nothing to do (PostgreSQL's autovacuum reuses purged space)")
            return
        before, after = vacuum_sqlite(store)
        click.echo(f"vacuumed: {size(before)} → {size(after)}; auto_vacuum=incremental")
    finally:
        store.close()
