"""``flowctl replay``: the recorded changes of a period through DIR, compared with what really went out."""

from __future__ import annotations

import json
import sys
from datetime import tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from flowctl.cli.common import iso, load_or_exit
from flowctl.cli.gitops_common import FORMAT, echo_json, parse_now
from flowctl.cli.store_access import DB_HELP, open_existing, target
from flowctl.cli.terminal import Progress
from flowctl.cli.terminal import diff as painted
from flowctl.gitops.plan import deployed
from flowctl.gitops.replay import as_time, changed_fields, replay

if TYPE_CHECKING:
    from flowctl.gitops.replay import Replay, Sig

CONTEXT = 30  # characters shown on each side of the part of a text that changed
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
removed, or changed (same action and template, different rendered content: the fields that
differ are shown, a long text around the part that changed). A time counted from "now"
(due: 1d) is the same when it differs only by how late the daemon handled the change.

\b
The starting state is rebuilt from the change log before --since; what automations changed
before it, and runs in flight at --since, are not. The same replay runs on the deployed
version, and differences it shows too are marked 'baseline' (not caused by DIR).

\b
Exit codes: 0 same effects as really produced (baseline differences aside), 2 different, 1 invalid
or no database.""",
)
@click.argument("directory", default=".", metavar="[DIR]", type=click.Path(path_type=Path))
@click.option(
    "--since",
    "since_text",
    required=True,
    metavar="TIME",
    help="Start of the period: 2026-03-01, 2026-03-01T09:00, 1d (ago), yesterday…",
)
@click.option("--until", "until_text", default="", metavar="TIME", help="End of the period (default: now).")
@click.option("--db", "database", default="", help=DB_HELP)
@click.option("--limit", default=50, show_default=True, help="Records shown in text output.")
@FORMAT
def command(directory: Path, since_text: str, until_text: str, database: str, limit: int, fmt: str) -> None:
    """Replay the changes recorded since --since through DIR and show how the effects would differ."""
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
        with Progress("replay: changes run", enabled=fmt == "text") as progress:
            tick = progress.advance if progress.shown else None
            result = replay(store, loaded.bundle, since, until, base, why, tick)
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
    lines.append(
        f"{len(real)} record(s) with different effects"
        + (
            f", {len(records) - len(real)} more differing under the deployed version too (baseline)"
            if len(records) != len(real)
            else ""
        )
    )
    for diff in records[:limit]:
        tag = "  (baseline)" if diff.baseline else ""
        lines.append(f"  {diff.object} {diff.record_id}{tag}")
        for mark, op, sigs in (("+", "added", diff.added), ("-", "removed", diff.removed)):
            for sig in sigs:
                text = sig.params.get("text")
                shown = f"    {mark} {label(sig)}" + (f": {_short(text)}" if isinstance(text, str) else "")
                lines.append(painted(shown, op))
        for old, new in diff.changed:
            lines.append(painted(f"    ~ {label(new)}:", "changed"))
            for change in changed_fields(old, new):
                if change.op == "changed":
                    before, after = _excerpts(change.old, change.new, zone)
                    lines.append(painted(f"        {change.path}: {before} → {after}", "changed"))
                elif change.op == "added":
                    lines.append(painted(f"        + {change.path}: {_shown(change.new, zone)}", "added"))
                else:
                    lines.append(painted(f"        - {change.path}: {_shown(change.old, zone)}", "removed"))
    if len(records) > limit:
        lines.append(f"  … {len(records) - limit} more (--limit, or --format json)")
    return "\n".join(lines)


def label(sig: Sig) -> str:
    """What identifies an effect to a reader: action, channel, template, recipient, title."""
    params = sig.params
    text = f"{sig.action} via {sig.channel}"
    if sig.template:
        text += f" template {sig.template}"
    if params.get("to") and isinstance(params["to"], str | int):
        text += f" to {params['to']}"
    title = params.get("title") or params.get("subject")
    if isinstance(title, str) and title:
        text += f" ({title if len(title) <= WIDTH else title[: WIDTH - 1] + '…'})"
    return text


def _excerpts(old: Any, new: Any, zone: tzinfo) -> tuple[str, str]:
    """Both values as shown: two texts around the part that differs, with CONTEXT characters of
    what they share on each side (cut at a space), the rest elided."""
    if not isinstance(old, str) or not isinstance(new, str) or _time(old, zone) or _time(new, zone):
        return _shown(old, zone), _shown(new, zone)
    if len(old) <= WIDTH and len(new) <= WIDTH:
        return _quote(old), _quote(new)
    shortest = min(len(old), len(new))
    head = next((i for i in range(shortest) if old[i] != new[i]), shortest)
    tail = next((i for i in range(shortest - head) if old[-1 - i] != new[-1 - i]), shortest - head)
    return _window(old, head, len(old) - tail), _window(new, head, len(new) - tail)


def _window(text: str, start: int, end: int) -> str:
    """``text[start:end]`` (the changed part) with some context, elided beyond it."""
    left = max(0, start - CONTEXT)
    if left > 0:
        space = text.find(" ", left, start)
        left = space + 1 if space >= 0 else left
    right = min(len(text), end + CONTEXT)
    if right < len(text):
        space = text.rfind(" ", end, right)
        right = space if space >= 0 else right
    middle = text[left:right]
    if end - start > 2 * WIDTH:  # a long change: its beginning and its end
        middle = text[left : start + WIDTH] + "…" + text[end - WIDTH : right]
    return _quote(("…" if left > 0 else "") + middle + ("…" if right < len(text) else ""))


def _time(value: str, zone: tzinfo) -> str:
    moment = as_time(value)
    return iso(moment, zone) if moment is not None else ""


def _shown(value: Any, zone: tzinfo) -> str:
    if isinstance(value, str):
        return _time(value, zone) or _short(value)
    return _short(value)


def _quote(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _short(value: object, width: int = WIDTH) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"
