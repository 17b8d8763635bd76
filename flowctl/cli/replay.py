"""``flowctl replay``: the recorded changes of a period through DIR, compared with what really went out."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from flowctl.cli.gitops_common import FORMAT, echo_json, parse_now
from flowctl.cli.store_access import DB_HELP, open_for

if TYPE_CHECKING:
    from flowctl.gitops.replay import Replay


@click.command(
    "replay",
    epilog="""\b
Examples:
  flowctl replay --since 2026-03-01T00:00:00+07:00            # ./ against last days' traffic
  flowctl replay config/ --since 2026-03-01T00:00:00+07:00 --until 2026-03-02T00:00:00+07:00 \\
      --db postgresql+psycopg://flowctl@db/flowctl --format json

\b
Every change recorded from --since (to --until, default now) runs, in order and at its
recorded time, through DIR's configuration in a simulator: nothing is sent or stored. The
effects are compared per record with the outbox rows really created in the period: added,
removed, or changed (same action and template, different rendered content).

\b
The starting state is rebuilt from the change log before --since; what automations changed
before it, and runs in flight at --since, are not. The same replay runs on the deployed
version, and differences it shows too are marked 'baseline' (not caused by DIR).

\b
Exit codes: 0 same effects as really produced (baseline differences aside), 2 different, 1 invalid.""",
)
@click.argument("directory", default=".", type=click.Path(path_type=Path))
@click.option("--since", "since_text", required=True, metavar="TIME", help="Start of the period (ISO time with zone).")
@click.option("--until", "until_text", default="", metavar="TIME", help="End of the period (default: now).")
@click.option("--db", "database", default="", help=DB_HELP)
@click.option("--limit", default=50, show_default=True, help="Records shown in text output.")
@FORMAT
def command(directory: Path, since_text: str, until_text: str, database: str, limit: int, fmt: str) -> None:
    """Replay the changes recorded since --since through DIR and show how the effects would differ."""
    from flowctl.cli.common import load_or_exit
    from flowctl.gitops.plan import deployed
    from flowctl.gitops.replay import replay

    since = parse_now(since_text)
    until = parse_now(until_text)
    loaded = load_or_exit(directory)
    store = open_for(directory, database)
    try:
        snapshot, why = deployed(store.current_version())
        base = snapshot.loaded.bundle if snapshot is not None and snapshot.loaded.ok else None
        result = replay(store, loaded.bundle, since, until, base, why)
    finally:
        store.close()
    if fmt == "json":
        echo_json(result.to_json())
    else:
        click.echo(render(result, limit))
    sys.exit(2 if result.differences else 0)


def render(r: Replay, limit: int) -> str:
    lines = [
        f"Replay {r.since.isoformat()} .. {r.until.isoformat()}: {r.changes} changes"
        f" ({r.refused} refused), {r.seeded} records seeded from the {r.seed}",
        f"Effects: {r.replayed} replayed, {r.real} really produced"
        + (f"; baseline: {r.baseline}" if r.baseline else "; baseline: the deployed version"),
    ]
    records = r.records
    if not records:
        lines.append("Same effects as really produced.")
        return "\n".join(lines)
    real = [d for d in records if not d.baseline]
    lines.append(f"{len(real)} record(s) with different effects" + (
        f", {len(records) - len(real)} more differing under the deployed version too (baseline)"
        if len(records) != len(real) else ""))  # fmt: skip
    for diff in records[:limit]:
        tag = "  (baseline)" if diff.baseline else ""
        lines.append(f"  {diff.object} {diff.record_id}{tag}")
        for sig in diff.added:
            lines.append(f"    + {sig.action} via {sig.channel}: {_short(sig.to_json())}")
        for sig in diff.removed:
            lines.append(f"    - {sig.action} via {sig.channel}: {_short(sig.to_json())}")
        for old, new in diff.changed:
            from flowctl.gitops.diff import diff_values

            changes = diff_values(json.loads(old.payload), json.loads(new.payload))
            text = "; ".join(f"{c.path}: {_short(c.old)} → {_short(c.new)}" for c in changes)
            lines.append(f"    ~ {new.action} via {new.channel}: {text}")
    if len(records) > limit:
        lines.append(f"  … {len(records) - limit} more (--limit, or --format json)")
    return "\n".join(lines)


def _short(value: object, width: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"
