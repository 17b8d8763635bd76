"""``flowctl replay``: the recorded changes of a period through DIR, compared with what really went out."""

from __future__ import annotations

import json
import sys
from datetime import tzinfo
from pathlib import Path
from typing import TYPE_CHECKING

import click

from flowctl.cli.common import iso
from flowctl.cli.gitops_common import FORMAT, echo_json, parse_now
from flowctl.cli.store_access import DB_HELP, open_existing, target

if TYPE_CHECKING:
    from flowctl.gitops.replay import Replay

WIDTH = 60  # longest value shown whole


@click.command(
    "replay",
    epilog="""\b
Examples:
  flowctl replay --since yesterday                            # ./ against its own traffic
  flowctl replay --since 2h                                   # the last two hours
  flowctl replay config/ --since 2026-03-01 --until 2026-03-02T12:00 \\
      --db postgresql+psycopg://flowctl@db/flowctl --format json

\b
--since and --until take an ISO date or time (without an offset, in the Config's time
zone), a duration counted back from now (1d, 2h30m), or now, today, yesterday.

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
Exit codes: 0 same effects as really produced (baseline differences aside), 2 different, 1 invalid
or no database.""",
)
@click.argument("directory", default=".", metavar="[DIR]", type=click.Path(path_type=Path))
@click.option("--since", "since_text", required=True, metavar="TIME",
              help="Start of the period: 2026-03-01, 2026-03-01T09:00, 1d (ago), yesterday…")
@click.option("--until", "until_text", default="", metavar="TIME", help="End of the period (default: now).")
@click.option("--db", "database", default="", help=DB_HELP)
@click.option("--limit", default=50, show_default=True, help="Records shown in text output.")
@FORMAT
def command(directory: Path, since_text: str, until_text: str, database: str, limit: int, fmt: str) -> None:
    """Replay the changes recorded since --since through DIR and show how the effects would differ."""
    from flowctl.cli.common import load_or_exit
    from flowctl.gitops.plan import deployed
    from flowctl.gitops.replay import replay

    where = target(directory, database)
    zone = where.zone
    since = parse_now(since_text, zone, "--since").astimezone(zone)
    until = parse_now(until_text, zone, "--until").astimezone(zone)
    if until <= since:
        raise click.BadParameter(f"{iso(until, zone)} is not after --since {iso(since, zone)}", param_hint="--until")
    loaded = load_or_exit(directory)
    store = open_existing(where)
    try:
        snapshot, why = deployed(store.current_version())
        base = snapshot.loaded.bundle if snapshot is not None and snapshot.loaded.ok else None
        result = replay(store, loaded.bundle, since, until, base, why)
    finally:
        store.close()
    if fmt == "json":
        echo_json(result.to_json())
    else:
        click.echo(render(result, limit, zone))
    sys.exit(2 if result.differences else 0)


def render(r: Replay, limit: int, zone: tzinfo) -> str:
    lines = [
        f"Replay {iso(r.since, zone)} .. {iso(r.until, zone)}: {r.changes} changes"
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


def _short(value: object, width: int = WIDTH) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"
