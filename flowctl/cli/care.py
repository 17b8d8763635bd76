"""``flowctl care``: list care processes, preview a day, forecast firings (nothing is ever sent).

Every time printed carries its UTC offset (ISO 8601); every command has ``--format json``. The
database is the config directory's (``database:`` of its Config) unless ``--db`` names another.
"""

from __future__ import annotations

import json
import sys
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from flowctl.cli.common import load_or_exit
from flowctl.cli.store_access import DB_HELP, open_existing, open_url, target
from flowctl.cli.terminal import Progress
from flowctl.engine.care import cron_of, outcome, scan
from flowctl.engine.care_forecast import forecast as forecast_of
from flowctl.engine.care_forecast import next_look
from flowctl.engine.care_forecast import undated as undated_of
from flowctl.engine.core import Engine
from flowctl.engine.memory import MemoryState
from flowctl.engine.state import CareDue, Record
from flowctl.runtime.care.scheduler import CareScheduler
from flowctl.runtime.daemon.clock import SystemClock
from flowctl.runtime.daemon.worker import Engines
from flowctl.spec.loader import load_text
from flowctl.store import MemoryStore

if TYPE_CHECKING:  # click's ParamType is generic in its stubs from 8.2 on, a plain class at run time before
    _ParamType = click.ParamType[date, Any]
else:
    _ParamType = click.ParamType

_dir = click.argument("directory", default=".", type=click.Path(path_type=Path))
_records = click.option(
    "--records",
    "records_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML or JSON list of records: [{object, id, fields, owner}].",
)
_db = click.option("--db", "database", default="", help=DB_HELP)
_format = click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one document for CI, with the same times (ISO 8601, with offset).",
)


class Day(_ParamType):
    """A calendar day written YYYY-MM-DD; anything else is a usage error (exit 2)."""

    name = "YYYY-MM-DD"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> date:
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(str(value))
        except ValueError as exc:
            reason = str(exc) if "must be" in str(exc) or "out of range" in str(exc) else "write YYYY-MM-DD"
            self.fail(f"{str(value)!r} is not a date: {reason}, e.g. 2027-03-14", param, ctx)


@click.group(
    "care",
    epilog="""\b
Examples:
  flowctl care list examples/birthday-care
  flowctl care preview sinh-nhat-lien-he examples/birthday-care --date 2027-03-14
  flowctl care forecast sinh-nhat-lien-he examples/birthday-care --from 2027-01-01 --days 30 --format json""",
)
def command() -> None:
    """Care processes (MISA AMIS "Quy trình chăm sóc"): list, preview, forecast."""


def read_records(path: Path) -> list[Any]:
    """Records from a YAML/JSON file: a list, or ``{records: [...]}``, as a Test's ``records:``.

    Read as flowctl reads its config (YAML 1.2): ``birthday: 1990-02-29`` stays the text written,
    and a date that does not exist is a record without a usable date, not a crash."""

    def bad(why: str) -> click.BadParameter:
        return click.BadParameter(f"{path}: {why}", param_hint="'--records'")

    loaded = load_text(path.read_text(encoding="utf-8"), str(path))
    if loaded.issues:
        raise bad("; ".join(f"{i.span}: {i.message}" for i in loaded.issues))
    data = loaded.documents[0].data if loaded.documents else []
    if isinstance(data, dict):
        data = data.get("records", [])
    if not isinstance(data, list):
        raise bad("expected a list of records: [{object: contact, id: 1, fields: {birthday: 1990-05-02}}]")
    out = []
    for n, item in enumerate(data, 1):
        if not isinstance(item, dict) or item.get("object") in (None, "") or item.get("id") in (None, ""):
            raise bad(f"item {n}: needs 'object' and 'id', e.g. {{object: contact, id: 1, fields: {{...}}}}")
        fields = item.get("fields") or {}
        if not isinstance(fields, dict):
            raise bad(f"item {n}: 'fields' must be a mapping of field names to values")
        out.append(
            Record(
                object=str(item["object"]),
                id=str(item["id"]),
                fields=dict(fields),
                owner=str(item.get("owner") or fields.get("owner") or ""),
                version=1,
            )
        )
    return out


def _zone(bundle: Any) -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo(bundle.config.timezone or "UTC")


def _process(bundle: Any, name: str) -> Any:
    process = bundle.care.get(name)
    if process is None:
        known = ", ".join(sorted(bundle.care)) or "none"
        raise click.BadParameter(f"no care process '{name}' (known: {known})", param_hint="'NAME'")
    return process


def _when(process: Any) -> str:
    w = process.when
    offset = f" offset {w.offset.text}" if w.offset else ""
    if w.cron:
        return f"cron '{w.cron}'"
    return f"{'anniversary of' if w.anniversary_of else 'date'} {w.anniversary_of or w.date}{offset} at {w.at}"


def _when_json(process: Any) -> dict[str, str]:
    w = process.when
    if w.cron:
        return {"cron": w.cron}
    out = {"anniversary_of": w.anniversary_of} if w.anniversary_of else {"date": w.date}
    if w.offset:
        out["offset"] = w.offset.text
    return {**out, "at": w.at}


def _dst(process: Any) -> str:
    if process.when.cron and cron_of(process.when.cron).interval:
        return "dst: by the clock (an interval cron)"
    return f"dst_gap {process.dst_gap}, dst_overlap {process.dst_overlap}"


def _iso(moment: datetime | None, tz: Any) -> str:
    return moment.astimezone(tz).isoformat() if moment is not None else "-"


def _dump(document: Any) -> None:
    json.dump(document, sys.stdout, ensure_ascii=False, indent=2)
    sys.stdout.write("\n")


def _firing_json(firing: Any) -> dict[str, str]:
    return {
        "object": firing.object,
        "id": firing.record_id,
        "at": firing.at.isoformat(),
        "occurrence": firing.occurrence,
    }


def _undated_text(undated: list[Any]) -> str:
    return ", ".join(
        f"{u.object}/{u.id} " + (f"'{u.value}'" if u.value not in (None, "") else "(empty)") for u in undated
    )


@command.command(
    "list",
    epilog="\b\nExamples:\n  flowctl care list examples/birthday-care\n"
    "  flowctl care list --db postgresql+psycopg://…/crm --format json",
)
@_dir
@_db
@_format
def list_(directory: Path, database: str, fmt: str) -> None:
    """Every care process by object and priority: status, schedule, last and next run, outcomes."""
    bundle = load_or_exit(directory).bundle
    tz, now = _zone(bundle), SystemClock().now()
    where = target(directory, database)
    store = MemoryStore() if where.missing else open_url(where.url)  # no database yet: nothing has run
    try:
        rows = []
        for p in sorted(bundle.care.values(), key=lambda p: (p.object, p.priority, p.name)):
            summary = store.care_summary(p.name)
            rows.append(
                {
                    "name": p.name,
                    "object": p.object,
                    "enabled": p.enabled,
                    "priority": p.priority,
                    "when": _when_json(p),
                    "last_run": _iso(summary.last_done_at, tz),
                    "next_run": _iso(next_look(p, now, tz), tz),
                    "counts": {k: summary.counts.get(k, 0) for k in ("sent", "skipped", "failed")},
                }
            )
    finally:
        store.close()
    if fmt == "json":
        _dump(
            [
                {
                    **row,
                    "last_run": None if row["last_run"] == "-" else row["last_run"],
                    "next_run": None if row["next_run"] == "-" else row["next_run"],
                }
                for row in rows
            ]
        )
        return
    click.echo(
        f"{'NAME':28} {'OBJECT':12} {'STATUS':8} {'PRI':>3}  {'LAST RUN':25}  {'NEXT RUN':25}  "
        f"{'SENT':>6} {'SKIPPED':>7} {'FAILED':>6}  WHEN"
    )
    for row, p in zip(rows, sorted(bundle.care.values(), key=lambda p: (p.object, p.priority, p.name)), strict=True):
        n = row["counts"]
        click.echo(
            f"{p.name:28} {p.object:12} {'enabled' if p.enabled else 'disabled':8} {p.priority:>3}  "
            f"{row['last_run']:25}  {row['next_run']:25}  "
            f"{n['sent']:>6} {n['skipped']:>7} {n['failed']:>6}  {_when(p)}"
        )


def _day_span(day: date, tz: Any) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(), tzinfo=tz)
    return start - timedelta(microseconds=1), datetime.combine(day + timedelta(days=1), time(), tzinfo=tz) - timedelta(
        microseconds=1
    )


@command.command(
    "preview",
    epilog="\b\nExamples:\n  flowctl care preview sinh-nhat-lien-he examples/birthday-care "
    "--date 2026-05-02 --records contacts.yaml\n"
    "  flowctl care preview sinh-nhat-lien-he --format json   # today, from the "
    "config's database",
)
@click.argument("name")
@_dir
@click.option("--date", "day", type=Day(), default=None, help="The day to preview (YYYY-MM-DD; default today).")
@_records
@_db
@_format
def preview(name: str, directory: Path, day: date | None, records_file: Path | None, database: str, fmt: str) -> None:
    """Which records NAME would touch on a day and what it would send, from a records file or the
    database (the config's, or --db). Nothing is sent or stored."""

    if records_file is not None and database:
        raise click.UsageError("give --records FILE or --db URL, not both")
    bundle = load_or_exit(directory).bundle
    process = _process(bundle, name)
    tz = _zone(bundle)
    the_day = day or SystemClock().now().astimezone(tz).date()
    start, end = _day_span(the_day, tz)
    engine = Engine(bundle, "preview")
    field = process.when.anniversary_of or process.when.date
    if records_file is not None:
        records = read_records(records_file)
        found, _ = scan(process, records, start, end, tz)
        undated = undated_of(process, records)
        undated_count, of = len(undated), None
    else:
        store = open_existing(target(directory, database))
        try:
            found = CareScheduler(store, Engines(engine), SystemClock()).due(process, start, end)
            records = list(store.records_of([(f.object, f.record_id) for f in found]).values())
            of, undated_count = store.care_undated(process.object, field) if field else (None, 0)
        finally:
            store.close()
        undated = []
    state = MemoryState()
    for record in records:
        state.records[record.key] = record
    shown: list[dict[str, Any]] = []
    for firing in sorted(found, key=lambda f: (f.at, f.record_id)):
        due = CareDue(
            key=f"preview:{firing.record_id}",
            process=process.name,
            object=firing.object,
            id=firing.record_id,
            occurrence=firing.occurrence,
        )
        step = engine.handle(state, due, firing.at)
        state.apply(step)
        effects: list[dict[str, Any]] = []
        for effect in step.effects:
            params = dict(effect.params)
            what = (
                params.get("subject")
                or params.get("text")
                or _zns(params)
                or params.get("title")
                or params.get("set")
                or ""
            )
            to = params.get("to") or params.get("assignee") or params.get("owner") or ""
            effects.append({"action": effect.action, "channel": effect.channel or "", "to": to, "what": what})
        shown.append(
            {
                **_firing_json(firing),
                "outcome": outcome(step, due),
                "effects": effects,
                "problems": [p.message for p in step.problems],
            }
        )
    if fmt == "json":
        _dump(
            {
                "process": process.name,
                "date": the_day.isoformat(),
                "timezone": tz.key,
                "firings": shown,
                "undated": [{"object": u.object, "id": u.id, "value": u.value} for u in undated],
                "undated_count": undated_count,
            }
        )
        return
    click.echo(
        f"care preview {process.name} on {the_day.isoformat()} ({tz.key}): {len(found)} firings; nothing is sent"
    )
    for item in shown:
        click.echo(f"{item['at']}  {item['object']}/{item['id']}  occurrence {item['occurrence']}: {item['outcome']}")
        for shown_effect in item["effects"]:
            via = f" via {shown_effect['channel']}" if shown_effect["channel"] else ""
            what = shown_effect["what"]
            text = what if isinstance(what, str) else json.dumps(what, ensure_ascii=False)
            to = f" to {shown_effect['to']}" if shown_effect["to"] else ""
            click.echo(f"  {shown_effect['action']}{via}{to}: {text}")
        for problem in item["problems"]:
            click.echo(f"  problem: {problem}")
    if undated:
        click.echo(f"skipped: {len(undated)} records without a usable {field}: {_undated_text(undated)}")
    elif undated_count:
        click.echo(f"skipped: {undated_count} records without a usable {field} (of {of})")


@command.command(
    "forecast",
    epilog="\b\nExamples:\n  flowctl care forecast sinh-nhat-lien-he examples/birthday-care "
    "--from 2027-01-01 --days 730 --records contacts.yaml > care.golden\n"
    "  flowctl care forecast sinh-nhat-lien-he --from 2027-01-01 --records "
    "contacts.yaml --format json",
)
@click.argument("name")
@_dir
@click.option("--from", "from_", type=Day(), required=True, help="First day (YYYY-MM-DD).")
@click.option("--days", default=365, show_default=True, type=click.IntRange(1, 36600))
@_records
@_format
def forecast(name: str, directory: Path, from_: date, days: int, records_file: Path | None, fmt: str) -> None:
    """Every firing of NAME per record over DAYS days, across leap years and DST: stable text for a
    golden file a pull request can diff. The process's if: is applied to the records as given; what
    does not run is listed with why (if: false, a wall time that does not exist under dst_gap: skip,
    a date field that is empty or not a date)."""

    bundle = load_or_exit(directory).bundle
    process = _process(bundle, name)
    tz = _zone(bundle)
    start, _ = _day_span(from_, tz)
    _, end = _day_span(from_ + timedelta(days=days - 1), tz)
    records = read_records(records_file) if records_file else []
    with Progress(f"care forecast {process.name}: firings checked", enabled=fmt == "text") as progress:
        tick = progress.advance if progress.shown else None
        result = forecast_of(Engine(bundle, "forecast"), process, records, start, end, tz, tick)
    field = process.when.anniversary_of or process.when.date

    def order(firings: list[Any]) -> list[Any]:
        return sorted(firings, key=lambda f: (f.object, _id_key(f.record_id), f.at))

    if fmt == "json":
        _dump(
            {
                "process": process.name,
                "when": _when_json(process),
                "if": process.if_,
                "policies": {"feb29": process.feb29, "dst_gap": process.dst_gap, "dst_overlap": process.dst_overlap},
                "timezone": tz.key,
                "from": from_.isoformat(),
                "days": days,
                "firings": [_firing_json(f) for f in order(result.runs)],
                "skipped_by_if": [_firing_json(f) for f in order(result.unless)],
                "if_failed": [
                    {**_firing_json(f), "error": e}
                    for f, e in sorted(
                        result.failing, key=lambda fe: (fe[0].object, _id_key(fe[0].record_id), fe[0].at)
                    )
                ],
                "not_run_dst_gap": [_firing_json(f) for f in order(result.dst_skipped)],
                "undated": [{"object": u.object, "id": u.id, "value": u.value} for u in result.undated],
            }
        )
        return
    click.echo(
        f"# care forecast {process.name}: {_when(process)}, feb29 {process.feb29}, {_dst(process)}; "
        f"if: {process.if_ or 'none'}; {tz.key}; {from_.isoformat()} + {days} days"
    )
    for firing in order(result.runs):
        click.echo(f"{firing.object}/{firing.record_id}  {firing.at.isoformat()}  {firing.occurrence}")
    click.echo(f"# {len(result.runs)} firings for {len({(f.object, f.record_id) for f in result.runs})} records")
    if result.unless:
        click.echo(f"# {len(result.unless)} firings skipped by if: {process.if_}")
        for firing in order(result.unless):
            click.echo(f"#   {firing.object}/{firing.record_id}  {firing.at.isoformat()}  {firing.occurrence}")
    if result.failing:
        click.echo(f"# {len(result.failing)} firings whose if: fails (such a run fails)")
        for firing, error in sorted(result.failing, key=lambda fe: (fe[0].object, _id_key(fe[0].record_id), fe[0].at)):
            click.echo(f"#   {firing.object}/{firing.record_id}  {firing.at.isoformat()}  {firing.occurrence}: {error}")
    if result.dst_skipped:
        click.echo(
            f"# {len(result.dst_skipped)} firings not run: their wall time does not exist (dst_gap: skip); "
            "shift would run them at:"
        )
        for firing in order(result.dst_skipped):
            click.echo(f"#   {firing.object}/{firing.record_id}  {firing.at.isoformat()}  {firing.occurrence}")
    if result.undated:
        click.echo(f"# {len(result.undated)} records without a usable {field}: {_undated_text(result.undated)}")


def _id_key(record_id: str) -> tuple[int, str]:
    return (int(record_id), "") if record_id.isdigit() else (1 << 62, record_id)


def _zns(params: dict[str, Any]) -> str:
    """A Zalo ZNS message in one line: its template id and parameters (it has no text)."""
    if not params.get("template_id"):
        return ""
    data = ", ".join(f"{k}={v}" for k, v in dict(params.get("template_data") or {}).items())
    return f"ZNS template {params['template_id']}: {data}"
