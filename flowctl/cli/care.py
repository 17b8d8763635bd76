"""``flowctl care``: list care processes, preview a day, forecast firings (nothing is ever sent)."""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import click

from flowctl.cli.common import load_or_exit

_dir = click.argument("directory", default=".", type=click.Path(path_type=Path))
_records = click.option("--records", "records_file", type=click.Path(exists=True, path_type=Path),
                        help="YAML or JSON list of records: [{object, id, fields, owner}].")  # fmt: skip
_db = click.option("--db", "database", default="", help="Database URL to read records and the care ledger from.")


@click.group("care")
def command() -> None:
    """Care processes (MISA AMIS "Quy trình chăm sóc"): list, preview, forecast."""


def read_records(path: Path) -> list[Any]:
    """Records from a YAML/JSON file: a list, or ``{records: [...]}``, as a Test's ``records:``."""
    import yaml

    from flowctl.engine.state import Record

    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if isinstance(data, dict):
        data = data.get("records", [])
    if not isinstance(data, list):
        raise click.BadParameter(f"{path}: expected a list of records", param_hint="--records")
    out = []
    for item in data:
        fields = {k: (v.isoformat() if isinstance(v, date) else v) for k, v in dict(item.get("fields") or {}).items()}
        out.append(Record(object=str(item["object"]), id=str(item["id"]), fields=fields,
                          owner=str(item.get("owner") or fields.get("owner") or ""), version=1))  # fmt: skip
    return out


def _zone(bundle: Any) -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo(bundle.config.timezone or "UTC")


def _process(bundle: Any, name: str) -> Any:
    process = bundle.care.get(name)
    if process is None:
        known = ", ".join(sorted(bundle.care)) or "none"
        raise click.ClickException(f"no care process '{name}' (known: {known})")
    return process


def _when(process: Any) -> str:
    w = process.when
    offset = f" offset {w.offset.text}" if w.offset else ""
    if w.cron:
        return f"cron '{w.cron}'"
    return f"{'anniversary of' if w.anniversary_of else 'date'} {w.anniversary_of or w.date}{offset} at {w.at}"


def next_run(process: Any, now: datetime, tz: Any) -> datetime | None:
    """When the process next looks for due records: daily at its wall time, or the cron's next firing."""
    from flowctl.engine.care import local_times, parse_at
    from flowctl.spec.cron import parse_cron

    if not process.enabled:
        return None
    if process.when.cron:
        return parse_cron(process.when.cron).next_after(now.astimezone(tz))
    offset = process.when.offset.value if process.when.offset else timedelta(0)
    local = now.astimezone(tz).date()
    for n in range(3):
        wall = datetime.combine(local + timedelta(days=n), parse_at(process.when.at)) + timedelta(seconds=offset.seconds)  # noqa: E501
        for at in local_times(wall.date(), wall.time(), tz, dst_gap="shift", dst_overlap="once"):
            if at > now:
                return at
    return None


@command.command("list", epilog="\b\nExamples:\n  flowctl care list examples/birthday-care\n"
                                "  flowctl care list --db postgresql+psycopg://…/crm")  # fmt: skip
@_dir
@_db
def list_(directory: Path, database: str) -> None:
    """Every care process by object and priority: status, schedule, last and next run, outcomes."""
    from flowctl.runtime.clock import SystemClock

    bundle = load_or_exit(directory).bundle
    tz, now = _zone(bundle), SystemClock().now()
    store = None
    if database:
        from flowctl.cli.store_access import open_for

        store = open_for(directory, database)
    try:
        header = f"{'NAME':28} {'OBJECT':12} {'STATUS':8} {'PRI':>3}  {'LAST RUN':16}  {'NEXT RUN':16}  " \
                 f"{'SENT':>6} {'SKIPPED':>7} {'FAILED':>6}  WHEN"  # fmt: skip
        click.echo(header)
        for p in sorted(bundle.care.values(), key=lambda p: (p.object, p.priority, p.name)):
            summary = store.care_summary(p.name) if store is not None else None
            last = summary.last_done_at.astimezone(tz).strftime("%Y-%m-%d %H:%M") if summary and \
                summary.last_done_at else "-"  # fmt: skip
            upcoming = next_run(p, now, tz)
            counts = summary.counts if summary else {}
            n = [str(counts.get(k, 0)) if summary else "-" for k in ("sent", "skipped", "failed")]
            click.echo(f"{p.name:28} {p.object:12} {'enabled' if p.enabled else 'disabled':8} {p.priority:>3}  "
                       f"{last:16}  {upcoming.strftime('%Y-%m-%d %H:%M') if upcoming else '-':16}  "
                       f"{n[0]:>6} {n[1]:>7} {n[2]:>6}  {_when(p)}")  # fmt: skip
    finally:
        if store is not None:
            store.close()


def _day_span(day: date, tz: Any) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(), tzinfo=tz)
    return start - timedelta(microseconds=1), datetime.combine(day + timedelta(days=1), time(), tzinfo=tz) - \
        timedelta(microseconds=1)  # fmt: skip


@command.command("preview", epilog="\b\nExamples:\n  flowctl care preview sinh-nhat-lien-he examples/birthday-care "
                                   "--date 2026-05-02 --records contacts.yaml")  # fmt: skip
@click.argument("name")
@_dir
@click.option("--date", "day", default="", help="The day to preview (YYYY-MM-DD; default today).")
@_records
@_db
def preview(name: str, directory: Path, day: str, records_file: Path | None, database: str) -> None:
    """Which records NAME would touch on a day and what it would send. Nothing is sent or stored."""
    from flowctl.engine.care import outcome, scan
    from flowctl.engine.core import Engine
    from flowctl.engine.memory import MemoryState
    from flowctl.engine.state import CareDue
    from flowctl.runtime.clock import SystemClock

    bundle = load_or_exit(directory).bundle
    process = _process(bundle, name)
    tz = _zone(bundle)
    the_day = date.fromisoformat(day) if day else SystemClock().now().astimezone(tz).date()
    start, end = _day_span(the_day, tz)
    engine = Engine(bundle, "preview")
    if records_file is not None:
        records = read_records(records_file)
        found, undated = scan(process, records, start, end, tz)
    elif database:
        from flowctl.cli.store_access import open_for
        from flowctl.runtime.care import CareScheduler
        from flowctl.runtime.worker import Engines

        store = open_for(directory, database)
        try:
            found = CareScheduler(store, Engines(engine), SystemClock()).due(process, start, end)
            records = list(store.records_of([(f.object, f.record_id) for f in found]).values())
        finally:
            store.close()
        undated = []
    else:
        raise click.UsageError("give --records FILE or --db URL")
    state = MemoryState()
    for record in records:
        state.records[record.key] = record
    click.echo(f"care preview {process.name} on {the_day.isoformat()} ({tz.key}): {len(found)} firings; "
               "nothing is sent")  # fmt: skip
    for firing in sorted(found, key=lambda f: (f.at, f.record_id)):
        due = CareDue(key=f"preview:{firing.record_id}", process=process.name, object=firing.object,
                      id=firing.record_id, occurrence=firing.occurrence)  # fmt: skip
        step = engine.handle(state, due, firing.at)
        state.apply(step)
        click.echo(f"{firing.at.isoformat()}  {firing.object}/{firing.record_id}  occurrence {firing.occurrence}: "
                   f"{outcome(step, due)}")  # fmt: skip
        for effect in step.effects:
            params = dict(effect.params)
            what = params.get("subject") or params.get("text") or params.get("title") or params.get("set") or ""
            to = params.get("to") or params.get("assignee") or params.get("owner") or ""
            via = f" via {effect.channel}" if effect.channel else ""
            click.echo(f"  {effect.action}{via}{f' to {to}' if to else ''}: "
                       f"{json.dumps(what, ensure_ascii=False) if not isinstance(what, str) else what}")  # fmt: skip
        for problem in step.problems:
            click.echo(f"  problem: {problem.message}")
    if undated:
        field = process.when.anniversary_of or process.when.date
        click.echo(f"skipped: {len(undated)} records without a usable {field}: {', '.join(undated)}")


@command.command("forecast", epilog="\b\nExample:\n  flowctl care forecast sinh-nhat-lien-he examples/birthday-care "
                                    "--from 2027-01-01 --days 730 --records contacts.yaml > care.golden")  # fmt: skip
@click.argument("name")
@_dir
@click.option("--from", "from_", required=True, help="First day (YYYY-MM-DD).")
@click.option("--days", default=365, show_default=True, type=click.IntRange(1, 36600))
@_records
def forecast(name: str, directory: Path, from_: str, days: int, records_file: Path | None) -> None:
    """Every firing of NAME per record over DAYS days, across leap years and DST: stable text for a
    golden file a pull request can diff."""
    from flowctl.engine.care import scan

    bundle = load_or_exit(directory).bundle
    process = _process(bundle, name)
    tz = _zone(bundle)
    first = date.fromisoformat(from_)
    start, _ = _day_span(first, tz)
    _, end = _day_span(first + timedelta(days=days - 1), tz)
    records = read_records(records_file) if records_file else []
    found, undated = scan(process, records, start, end, tz)
    click.echo(f"# care forecast {process.name}: {_when(process)}, feb29 {process.feb29}, dst_gap {process.dst_gap}, "
               f"dst_overlap {process.dst_overlap}; {tz.key}; {first.isoformat()} + {days} days")  # fmt: skip
    for firing in sorted(found, key=lambda f: (f.object, _id_key(f.record_id), f.at)):
        click.echo(f"{firing.object}/{firing.record_id}  {firing.at.isoformat()}  {firing.occurrence}")
    field = process.when.anniversary_of or process.when.date
    tail = f"; {len(undated)} records without a usable {field}: {', '.join(undated)}" if undated else ""
    click.echo(f"# {len(found)} firings for {len({f.record_id for f in found})} records{tail}")


def _id_key(record_id: str) -> tuple[int, str]:
    return (int(record_id), "") if record_id.isdigit() else (1 << 62, record_id)
