"""Run ``kind: Test`` scenarios on the simulator and explain failures with the traces behind them.

``expect.effects`` matches, in any order and by subset of keys, the effects produced since the
previous ``expect`` (or the start); ``effects: []`` means none at all. Other effects may be
present unless ``exactly: true``; each expected effect takes a different actual one.
``expect.record`` compares the record's stage, pipeline, owner, deleted flag and the fields
listed. A refused request step fails the test unless the next step is ``expect: {refused: …}``.
Seeded ``records:`` are typed by their object's fields, or the scenario stops before its first
step naming each value that is not of its type. docs/engine.md has the rules.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from flowctl.engine.records import check_fields, check_stage, typed_fields
from flowctl.engine.render import render_runs
from flowctl.engine.simulator import SimulationError, Simulator
from flowctl.engine.state import Effect, Record
from flowctl.spec import model as m
from flowctl.spec.links import refs_of
from flowctl.spec.loader import VALUE

DEFAULT_NOW = "2026-01-01T09:00:00"


@dataclass
class Failure:
    step: int
    message: str
    place: str
    trace: str = ""


@dataclass
class ScenarioResult:
    name: str
    file: str
    failures: list[Failure] = field(default_factory=list)
    steps: int = 0

    @property
    def passed(self) -> bool:
        return not self.failures


def parse_now(text: str, tz: ZoneInfo) -> datetime:
    moment = datetime.fromisoformat(text or DEFAULT_NOW)
    return moment if moment.tzinfo else moment.replace(tzinfo=tz)


def _same(expected: Any, actual: Any) -> bool:
    if isinstance(expected, Mapping):
        return isinstance(actual, Mapping) and all(k in actual and _same(v, actual[k]) for k, v in expected.items())
    if isinstance(expected, list):
        return (
            isinstance(actual, list | tuple)
            and len(expected) == len(actual)
            and all(_same(e, a) for e, a in zip(expected, actual, strict=True))
        )
    if expected is None or actual is None:
        return expected is actual
    if isinstance(expected, bool) or isinstance(actual, bool):
        return bool(expected == actual)
    return bool(expected == actual) or str(expected) == str(actual)


def match_effects(expected: tuple[Mapping[str, Any], ...], actual: list[Effect], *, exactly: bool = False) -> list[str]:
    """Problems matching expected effects to actual ones, each actual used at most once; with
    ``exactly``, an actual effect no expected one took is a problem too."""
    if not expected:
        return [f"expected no effects, got {len(actual)}: " + "; ".join(_brief(e) for e in actual)] if actual else []
    pool = [e.to_json() for e in actual]
    problems = []
    for want in expected:
        index = next((i for i, got in enumerate(pool) if _same(want, got)), None)
        if index is None:
            near = [got for got in pool if got.get("action") == want.get("action")]
            detail = "; ".join(_brief_json(g) for g in (near or pool))
            if not detail:
                detail = "none left (each effect matches one expectation)" if actual else "no effects"
            problems.append(f"no effect matches {dict(want)}; got: {detail}")
        else:
            pool.pop(index)
    if exactly and pool:
        problems.append(
            f"{len(pool)} effect{'s' if len(pool) > 1 else ''} not listed (exactly: true): "
            + "; ".join(_brief_json(g) for g in pool)
        )
    return problems


def _brief(effect: Effect) -> str:
    return _brief_json(effect.to_json())


def _brief_json(data: Mapping[str, Any]) -> str:
    keys = ("action", "template", "to", "subject", "text", "title", "assignee", "stage", "set", "url")
    shown = {k: data[k] for k in keys if k in data and data[k] not in ("", None)}
    return str(shown)


def check_record(expected: Mapping[str, Any], record: Record | None) -> list[str]:
    label = f"{expected.get('object')} {expected.get('id')}"
    if record is None:
        return [f"{label} does not exist"]
    problems = []
    for key in ("stage", "pipeline", "owner", "deleted"):
        if key in expected and not _same(expected[key], getattr(record, key)):
            problems.append(f"{label}: {key} is {getattr(record, key)!r}, expected {expected[key]!r}")
    for name, value in (expected.get("fields") or {}).items():
        if not _same(value, record.fields.get(name)):
            problems.append(f"{label}: field {name} is {record.fields.get(name)!r}, expected {value!r}")
    return problems


def run_scenario(bundle: m.Bundle, test: m.Test) -> ScenarioResult:
    tz = ZoneInfo(bundle.config.timezone or "UTC")
    result = ScenarioResult(name=test.name, file=test.where.file)
    try:
        now = parse_now(test.now, tz)
    except ValueError:
        result.failures.append(Failure(0, f"now: '{test.now}' is not an ISO date and time", str(test.where.at("now"))))
        return result
    sim = Simulator(bundle, now, version="test")
    seeds, result.failures = _seeds(bundle, test)
    if result.failures:
        return result  # nothing runs on records that are not what the author meant
    for record in seeds:
        sim.seed(record)
    since = runs_since = problems_since = 0
    refusal: Failure | None = None  # the previous step's, until the next step says it was expected
    for index, step in enumerate(test.steps, start=1):
        result.steps = index
        place = str(step.where.at())
        if step.op == "expect" and step.refused is not None:
            previous = test.steps[index - 2] if index > 1 else None
            result.failures += [
                Failure(index, message, place) for message in _check_refused(step.refused, index - 1, previous, refusal)
            ]
        elif refusal is not None:
            result.failures.append(refusal)
        refusal = None
        try:
            for message in perform_step(sim, step):
                result.failures.append(Failure(index, message, place))
        except SimulationError as exc:
            refusal = Failure(index, f"{step.op} refused: {exc}", place)
        if step.op != "expect":
            continue
        problems: list[str] = []
        if step.effects is not None:
            problems += match_effects(step.effects, sim.state.effects[since:], exactly=step.exactly)
        if step.expect_record is not None:
            rec = sim.state.record(str(step.expect_record.get("object")), str(step.expect_record.get("id")))
            problems += check_record(step.expect_record, rec)
        if problems:
            runs = sim.runs_touched(runs_since)
            trace = render_runs(runs) if runs else "(no automation ran)"
            if sim.state.problems[problems_since:]:
                trace += "\nproblems:\n" + "\n".join(
                    f"  {p.code}: {p.message}" for p in sim.state.problems[problems_since:]
                )
            for message in problems:
                result.failures.append(Failure(index, message, place, trace))
        since = len(sim.state.effects)
        runs_since = len(sim.touched_runs)
        problems_since = len(sim.state.problems)
    if refusal is not None:
        result.failures.append(refusal)
    return result


def _seeds(bundle: m.Bundle, test: m.Test) -> tuple[list[Record], list[Failure]]:
    """The scenario's ``records:``, typed by their object's fields, and a failure (at the value)
    for each value that is not of its field's type."""
    seeds: list[Record] = []
    failures: list[Failure] = []
    for rec in test.records:
        fields, problems = typed_fields(bundle, rec.object, rec.fields, rec.texts)
        failures += [
            Failure(0, f"{rec.object} {rec.id}: {message}", str(rec.where.at("fields", name, VALUE)))
            for name, message in problems
        ]
        seeds.append(
            Record(
                object=rec.object,
                id=rec.id,
                fields=fields,
                stage=rec.stage,
                pipeline=rec.pipeline,
                owner=str(fields.get("owner") or ""),
            )
        )
    return seeds, failures


#: The steps that are requests (the API may refuse them), which ``expect: {refused: …}`` follows.
REQUESTS = ("create", "update", "delete", "restore", "move")


def _check_refused(wanted: str, number: int, previous: m.TestStep | None, refusal: Failure | None) -> list[str]:
    """Problems of ``expect: {refused: wanted}`` after ``previous``, step ``number`` ('' wants any
    reason; ``refusal`` is the failure that step's refusal would be)."""
    if previous is None or previous.op not in REQUESTS:
        what = f"not {previous.op}" if previous is not None else "and this is the first step"
        return [f"refused: needs a create, update, delete, restore or move step just before it, {what}"]
    if refusal is None:
        return [f"expected step {number} ({previous.op}) to be refused; it was done"]
    reason = refusal.message.removeprefix(f"{previous.op} refused: ")
    if wanted not in reason:
        return [f"the {previous.op} was refused with \"{reason}\", not with a reason containing '{wanted}'"]
    return []


def perform_step(sim: Simulator, step: m.TestStep) -> Iterator[str]:
    """Carry out one step of a test or dry run on ``sim``; yields why it failed (nothing when it held)."""
    rec = step.record
    if step.op in REQUESTS:
        assert rec is not None
        refused = check_request(sim.bundle, step.op, rec) or missing_links(sim, step.op, rec)
        if refused:
            raise SimulationError("; ".join(refused))
        sim.write(step.op, rec.object, rec.id, rec.fields, rec.stage, rec.pipeline)
    elif step.op == "event":
        assert rec is not None
        sim.event(step.event, rec.object, rec.id, step.data)
    elif step.op == "advance":
        if step.to:
            try:
                target = parse_now(step.to, sim.engine.tz)
            except ValueError:
                yield f"advance to: '{step.to}' is not an ISO date and time"
                return
            sim.advance(target)
        elif step.by is not None:
            sim.advance_by(step.by.value)
    return


def missing_links(sim: Simulator, op: str, rec: m.TestRecord) -> list[str]:
    """What the API answers 422 to: a ref field naming a record that does not exist or is deleted."""
    if op not in ("create", "update"):
        return []
    problems = []
    for name, object in refs_of(sim.bundle.objects.get(rec.object)).items():
        value = rec.fields.get(name)
        if value in (None, "") or isinstance(value, bool) or not isinstance(value, str | int):
            continue
        found = sim.state.record(object, str(value))
        if found is None or found.deleted:
            problems.append(f"field '{name}' links to {object} {value}, which does not exist or is deleted")
    return problems


def check_request(bundle: m.Bundle, op: str, rec: m.TestRecord) -> list[str]:
    """What the API would answer 4xx to, as it checks a request before storing it: fields of the
    wrong type or not defined, a required field missing on create, an unknown stage. A refused
    number that was written otherwise (``phone: 0944000111``) gets the hint to quote it."""
    if op == "create":
        problems = [
            *check_fields(bundle, rec.object, rec.fields, complete=True),
            *check_stage(bundle, rec.object, rec.stage, rec.pipeline),
        ]
    elif op == "update":
        problems = check_fields(bundle, rec.object, rec.fields, complete=False)
    else:
        return []
    return [
        problem
        + next(
            (
                f' (YAML reads {text} as the number {rec.fields[name]}: write "{text}")'
                for name, text in rec.texts.items()
                if problem.startswith(f"field '{name}' ")
            ),
            "",
        )
        for problem in problems
    ]


def run_scenarios(bundle: m.Bundle, names: list[str] | None = None) -> list[ScenarioResult]:
    tests = [t for t in bundle.tests.values() if not names or t.name in names]
    return [run_scenario(bundle, test) for test in sorted(tests, key=lambda t: (t.where.file, t.name))]
