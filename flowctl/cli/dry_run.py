"""``flowctl dry-run``: what one event would do, with the trace and the effects; nothing is sent."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from flowctl.cli.common import load_or_exit
from flowctl.engine.render import effect_json, render_effect, render_runs, run_json
from flowctl.engine.scenario import parse_now, perform_step
from flowctl.engine.simulator import SimulationError, Simulator
from flowctl.engine.state import Record, Run
from flowctl.spec.builder import Builder
from flowctl.spec.durations import DurationError, parse_duration
from flowctl.spec.issues import Issue
from flowctl.spec.loader import RawDocument, load_text
from flowctl.spec.model import Test
from flowctl.spec.places import Span
from flowctl.spec.schema import check_document

EVENT_HELP = """\b
The event file (YAML or JSON) holds one step, or 'steps:' with several, and
optionally 'records:' (the starting state) and 'now:':
  records: [{object: deal, id: "7", fields: {amount: 1000000}, stage: new}]
  steps:
    - update: {object: deal, id: "7", fields: {paid_amount: 600000}}
    - event: {event: invoice.paid, object: deal, id: "7"}
A single step may stand alone:  create: {object: contact, id: "1", fields: {...}}"""


def _as_test(data: Any) -> dict[str, Any]:
    if isinstance(data, dict) and "steps" not in data:
        extra = {k: v for k, v in data.items() if k not in ("records", "now")}
        spec = {k: v for k, v in data.items() if k in ("records", "now")}
        spec["steps"] = [{k: v} for k, v in extra.items()]
    else:
        spec = data if isinstance(data, dict) else {"steps": data}
    return {"apiVersion": "flowctl/v1", "kind": "Test", "metadata": {"name": "dry-run"}, "spec": spec}


def load_event(path: Path) -> tuple[Test | None, list[Issue]]:
    """Read the event file as a Test document, reporting problems at its own lines."""
    result = load_text(path.read_text(encoding="utf-8"), str(path), path)
    if result.issues or not result.documents:
        example = 'update: {object: deal, id: "7", fields: {paid_amount: 600000}}'
        empty = Issue(
            code="E001",
            message="the event file is empty",
            span=Span(str(path), 1, 1),
            hint=f"write one step, e.g. '{example}'",
        )
        return None, list(result.issues) or [empty]
    raw = result.documents[0]
    wrapped = _as_test(raw.data)
    single = isinstance(raw.data, dict) and "steps" not in raw.data
    marks = {}
    for key, span in raw.marks.items():
        if single and key and key[0] not in ("records", "now"):
            marks[("spec", "steps", 0, *key)] = span
        else:
            marks[("spec", *key)] = span
    marks[()] = raw.span
    doc = RawDocument(file=raw.file, index=0, data=wrapped, marks=marks, path=path)
    issues = check_document(doc)
    if issues:
        return None, issues
    test = Builder(root=path.parent).build(doc)
    assert isinstance(test, Test)  # the document was wrapped as a Test above
    return test, []


@click.command(
    "dry-run",
    epilog="""\b
Examples:
  flowctl dry-run examples/furniture-store --event paid.yaml
  flowctl dry-run . --event new-contact.yaml --now 2026-03-01T09:00:00+07:00 --advance 3d
  flowctl dry-run . --event e.json --format json | jq '.effects'

\b
Exit codes: 0 every step was accepted, 1 a step was refused (e.g. a move into a
stage whose required fields are empty; 'errors' in the JSON form) or the files are
invalid, 2 usage error. Problems of the automations themselves (a template that
fails to render) are printed and do not change the exit code.

"""
    + EVENT_HELP,
)
@click.argument("directory", default=".", metavar="[DIR]", type=click.Path(path_type=Path))
@click.option(
    "--event",
    "event_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML/JSON file with the change(s) or event(s) to simulate.",
)
@click.option("--now", default="", help="Start time (ISO 8601); default: the file's 'now' or 2026-01-01T09:00.")
@click.option("--advance", default="", help="After the steps, let this much time pass (e.g. 3d), firing timers.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def command(directory: Path, event_file: Path, now: str, advance: str, fmt: str) -> None:
    """Show what the automations under DIR (default: .) would do for the changes in --event."""
    loaded = load_or_exit(directory)
    test, issues = load_event(event_file)
    if test is None:
        for issue in issues:
            click.echo(str(issue), err=True)
        sys.exit(1)
    bundle = loaded.bundle
    try:
        sim_start = parse_now(now or test.now, _tz(bundle))
    except ValueError as exc:
        raise click.BadParameter(f"not an ISO 8601 time: {now or test.now}", param_hint="--now") from exc
    sim = Simulator(bundle, sim_start, version="dry-run")
    for rec in test.records:
        sim.seed(
            Record(
                object=rec.object,
                id=rec.id,
                fields=dict(rec.fields),
                stage=rec.stage,
                pipeline=rec.pipeline,
                owner=str(rec.fields.get("owner") or ""),
            )
        )
    errors: list[str] = []
    for step in test.steps:
        try:
            errors.extend(perform_step(sim, step))
        except SimulationError as exc:
            errors.append(f"{step.where.at()}: {step.op} refused: {exc}")
    if advance:
        try:
            sim.advance_by(parse_duration(advance))
        except DurationError as exc:
            raise click.BadParameter(str(exc), param_hint="--advance") from exc
    runs = sim.runs_touched()
    linked = linked_read(sim, runs)
    if fmt == "json":
        json.dump(
            {
                "now": sim.now.isoformat(),
                "runs": [run_json(r) for r in runs],
                "effects": [effect_json(e) for e in sim.state.effects],
                "linked": linked,
                "problems": [{"code": p.code, "message": p.message} for p in sim.state.problems],
                "errors": errors,
            },
            sys.stdout,
            ensure_ascii=False,
            indent=2,
            default=str,
        )
        sys.stdout.write("\n")
        sys.exit(1 if errors else 0)
    click.echo(f"dry run from {sim_start.isoformat()} to {sim.now.isoformat()}: nothing is sent")
    click.echo(render_runs(runs) if runs else "no automation ran")
    if linked:
        click.echo("linked records the automations read:")
        for link in linked:
            click.echo(
                f"  {link['object']} {link['id']}.{link['ref']} → {link['linked_object']} {link['linked_id']}: "
                + (json.dumps(link["fields"], ensure_ascii=False, default=str) if link["found"] else "not there")
            )
    click.echo(f"effects ({len(sim.state.effects)}):")
    for effect in sim.state.effects:
        click.echo(f"  {render_effect(effect)}")
    for problem in sim.state.problems:
        click.echo(f"problem {problem.code}: {problem.message}")
    for error in errors:
        click.echo(f"error: {error}")
    sys.exit(1 if errors else 0)


def linked_read(sim: Simulator, runs: list[Run]) -> list[dict[str, Any]]:
    """The records the runs' records link to through the ref fields their automations read
    (``linked.<ref>``, ``target:``), as the dry run left them."""
    out: list[dict[str, Any]] = []
    links = sim.engine.links
    for object, id in dict.fromkeys((r.object, r.record_id) for r in runs):
        record = sim.state.record(object, id)
        for ref in links.read.get(object, ()) if record is not None else ():
            value = record.fields.get(ref) if record is not None else None
            if value in (None, ""):
                continue
            target = links.refs[object][ref]
            found = sim.state.record(target, str(value))
            live = found is not None and not found.deleted
            out.append(
                {
                    "object": object,
                    "id": id,
                    "ref": ref,
                    "linked_object": target,
                    "linked_id": str(value),
                    "found": live,
                    "fields": dict(found.fields) if found is not None and live else {},
                }
            )
    return out


def _tz(bundle: Any) -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo(bundle.config.timezone or "UTC")
