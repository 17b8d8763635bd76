"""What ``plan``, ``apply`` and ``rollback`` share: options, the clock, and rendering a plan."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta, tzinfo
from typing import Any

import click

from flowctl.cli.common import iso
from flowctl.cli.terminal import diff, paint
from flowctl.runtime.daemon.clock import SystemClock
from flowctl.spec.durations import DurationError, parse_duration

FORMAT = click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True, help="Output format."
)
ALLOW_CANCEL = click.option(
    "--allow-cancel",
    is_flag=True,
    help="Cancel runs and timers on removed flow nodes or stage rules instead of refusing.",
)
FORCE = click.option(
    "--force",
    is_flag=True,
    help="Allow removing every document, or more than half of them, "
    "and requiring a field that records already in the stage lack.",
)
NOW = click.option(
    "--now",
    "now_text",
    default="",
    metavar="TIME",
    help="Plan as of this time (default: now), for 'today' in care checks and the blast windows: "
    "an ISO time (without an offset, in the Config's zone), a date, or yesterday/today.",
)

TIME_FORMS = (
    "give an ISO date or time (2026-03-01, 2026-03-01T09:00, 2026-03-01T09:00:00+07:00; without an "
    "offset it is in the Config's time zone), a duration ago (1d, 2h30m), or now, today, yesterday"
)


def parse_now(text: str, zone: tzinfo | None = None, option: str = "--now") -> datetime:
    """The time ``option`` gives, as people type it: ISO date or time, ``1d`` (that long ago), or
    ``now``/``today``/``yesterday`` (midnight in ``zone``); empty is now. A time without an
    offset is in ``zone``; with no zone known (None), an offset is required."""

    word = text.strip().lower()
    now = SystemClock().now()
    if zone is not None:
        now = now.astimezone(zone)
    if word in ("", "now"):
        return now
    if word in ("today", "yesterday"):
        if zone is None:
            raise click.BadParameter(
                f"'{text}' needs the Config's time zone; give an ISO time with an offset", param_hint=option
            )
        day = now.date() - timedelta(days=1 if word == "yesterday" else 0)
        return datetime.combine(day, time(0), tzinfo=zone)
    try:
        ago = parse_duration(word)
    except DurationError:
        pass
    else:
        if ago < timedelta(0):
            raise click.BadParameter(
                f"'{text}': a duration counts back from now; write it without '-'", param_hint=option
            )
        return now - ago
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise click.BadParameter(f"'{text}' is not a time: {TIME_FORMS}", param_hint=option) from exc
    if value.tzinfo is None:
        if zone is None:
            raise click.BadParameter(
                f"'{text}' has no offset: give one, e.g. 2026-03-01T09:00:00+07:00", param_hint=option
            )
        value = value.replace(tzinfo=zone)
    return value


def _value(value: Any, width: int = 70) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


_MARK = {"added": "+", "changed": "~", "removed": "-"}
_SEVERITY = {"refuse": "REFUSED", "warn": "WARNING", "notice": "NOTE"}


def render_plan(plan: Any, zone: tzinfo = UTC) -> str:
    """The plan as an operator reads it, times in ``zone`` (``plan.to_json()`` is the machine form)."""
    lines: list[str] = []
    p, current = plan.proposed, plan.current
    origin = ", ".join(x for x in (f"commit {p.commit[:12]}" if p.commit else "", p.author) if x)
    lines.append(f"Proposed: version {p.id} from {p.origin}" + (f" ({origin})" if origin else ""))
    if current is None:
        lines.append("Deployed: nothing yet")
    else:
        commit = f", commit {current.commit[:12]}" if current.commit else ""
        lines.append(f"Deployed: version {current.id}, applied {iso(current.applied_at, zone, seconds=True)}{commit}")
    if plan.errors:
        lines.append("")
        lines.append(f"The proposed configuration is invalid ({len(plan.errors)} errors):")
        lines.extend(f"  {e}" for e in plan.errors)
        lines.append("")
        lines.append("Result: invalid; nothing would be applied")
        return "\n".join(lines)
    if plan.baseline and current is not None:
        lines.append(f"  ({plan.baseline}; documents are compared by name only)")
    counts = {op: sum(1 for d in plan.documents if d.op == op) for op in ("added", "changed", "removed")}
    lines.append("")
    lines.append("Documents: " + ", ".join(f"{n} {op}" for op, n in counts.items()))
    for doc in plan.documents:
        lines.append(diff(f"  {_MARK[doc.op]} {doc.key}", doc.op))
        for change in doc.fields:
            if change.op == "changed":
                shown = f"      ~ {change.path}: {_value(change.old, 40)} → {_value(change.new, 40)}"
                lines.append(diff(shown, "changed"))
            elif change.op == "added":
                lines.append(diff(f"      + {change.path}: {_value(change.new)}", "added"))
            else:
                lines.append(diff(f"      - {change.path}: {_value(change.old)}", "removed"))
    files = plan.files
    other = [f for f in files.changed if not f.endswith((".yaml", ".yml"))]
    moved = not plan.documents and (files.added or files.removed or files.changed)
    if other or moved:
        parts = [
            f"{len(v)} {k}"
            for k, v in (("added", files.added), ("changed", files.changed), ("removed", files.removed))
            if v
        ]
        lines.append(f"Files: {', '.join(parts)}: " + ", ".join([*files.added, *files.changed, *files.removed]))
    if plan.findings:
        lines.append("")
        lines.append("Live state:")
        order = {"refuse": 0, "warn": 1, "notice": 2}
        for f in sorted(plan.findings, key=lambda f: order[f.severity]):
            severity = f"{_SEVERITY[f.severity]:<8}"
            if f.severity != "notice":
                severity = paint(severity, "error" if f.severity == "refuse" else "warning")
            lines.append(f"  {severity} {f.message}")
    if plan.blast:
        lines.append("")
        lines.append(f"Blast radius (from {iso(plan.now, zone, seconds=True)}):")
        for reach in plan.blast:
            lines.append(f"  care process {reach.process} ({reach.status}, {reach.object}):")
            for window, label in (("day", "next 24h"), ("week", "next 7 days")):
                lines.append(f"    {label:<11} {_tally(reach.new[window], reach.old[window], reach.status)}")
    lines.append("")
    if plan.layout_only:
        lines.append(
            f"Result: no change to the documents (comments or layout in {', '.join(files.changed)}); "
            "apply would store the new text as a new version"
        )
        return "\n".join(lines)
    lines.append(
        "Result: "
        + {
            "refused": f"refused ({len(plan.refusals)} refusal{'s' if len(plan.refusals) != 1 else ''}); "
            "nothing would be applied",
            "unchanged": "no changes; this version is already deployed",
            "changes": f"{len(plan.documents)} document change{'s' if len(plan.documents) != 1 else ''} to apply"
            + (f", {len(plan.cancel_runs)} runs to cancel" if plan.cancel_runs else ""),
        }[plan.status]
    )
    return "\n".join(lines)


def _tally(new: Any, old: Any, status: str) -> str:
    def delta(a: int, b: int) -> str:
        return "" if status != "changed" or a == b else f" ({a - b:+,})"

    parts = [f"{new.records:,} record{'s' if new.records != 1 else ''}{delta(new.records, old.records)}"]
    for label in sorted(set(new.effects) | set(old.effects)):
        a, b = new.effects.get(label, 0), old.effects.get(label, 0)
        parts.append(f"{label} {a:,}{delta(a, b)}")
    if status == "removed":
        parts = [f"stops {old.records:,} record{'s' if old.records != 1 else ''}"]
        parts += [f"{label} {n:,}" for label, n in sorted(old.effects.items())]
    if new.errors:
        parts.append(f"{new.errors} condition errors")
    return ", ".join(parts)


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2, default=str))
