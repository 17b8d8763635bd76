"""A pipeline as a board: per stage, how many live records, the sum of the object's money field,
and the first cards; each column pages on by itself (``stage_cards``).

A column's first cards are one indexed page and the rules pending on them one batched read of
their active runs: a column of 60,000 records costs its first cards, not its records. The counts
and sums are one GROUP BY over the board's index, which reads every record of the pipeline; when
that takes longer than ``SLOW_TOTALS`` (tens of thousands of records), :class:`Totals` keeps the
answer for ``FRESH_SECONDS`` (a little over two of the console's 2 s refreshes), so any number of
consoles open on a big board cost one count per period, and ``totals_at`` says when it was counted
(the console prints it under the columns). The cards are read afresh every time. A small board is counted afresh
every time. See ``bench/bench_board.py``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import datetime, tzinfo
from typing import Any, Protocol

from flowctl.engine.state import Record, Run
from flowctl.ports import Inspection
from flowctl.runtime.reads.common import check_limit, decode_cursor, iso, page
from flowctl.sources.errors import BadRequest, NotFound
from flowctl.spec import model as m

#: The field a card shows as its title, the first of these the object type declares.
TITLE_FIELDS = ("title", "name", "subject", "full_name")
_MAX_FILTER = 200
SLOW_TOTALS = 0.05  # seconds: a count slower than this is kept ...
FRESH_SECONDS = 5.0  # ... this long
_KEPT = 256  # boards (with their filters) kept at most


class BoardStore(Inspection, Protocol):
    def active_runs_of(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], list[Run]]: ...


class Totals:
    """Counts and sums per stage of a board, kept for a while only when they are slow to count."""

    def __init__(self) -> None:
        self._kept: dict[tuple[str, ...], tuple[float, dict[str, tuple[int, float]], datetime]] = {}
        self._lock = threading.Lock()

    def get(
        self, store: Inspection, key: tuple[str, str, str, str, str], now: datetime
    ) -> tuple[dict[str, tuple[int, float]], datetime]:
        """(totals, when they were counted) for ``key`` = (object, pipeline, sum_field, owner, q)."""
        with self._lock:
            kept = self._kept.get(key)
        started = time.monotonic()
        if kept is not None and started - kept[0] < FRESH_SECONDS:
            return kept[1], kept[2]
        totals = store.stage_totals(*key)
        took = time.monotonic() - started
        with self._lock:
            if took >= SLOW_TOTALS:
                if len(self._kept) >= _KEPT:
                    self._kept.clear()
                self._kept[key] = (started, totals, now)
            else:
                self._kept.pop(key, None)
        return totals, now


def pipeline_of(bundle: m.Bundle, name: str) -> m.Pipeline:
    pipeline = bundle.pipelines.get(name)
    if pipeline is None:
        known = ", ".join(sorted(bundle.pipelines)) or "none are defined"
        raise NotFound(f"no pipeline {name[:80]!r} (known: {known})")
    return pipeline


def sum_field(object_type: m.ObjectType | None) -> str:
    """The field a board sums: the object type's first money field, else its first number field."""
    if object_type is None:
        return ""
    for types in (("money",), ("number", "integer")):
        for name, spec in object_type.fields.items():
            if spec.type in types:
                return name
    return ""


def title_field(object_type: m.ObjectType | None) -> str:
    if object_type is None:
        return ""
    for name in TITLE_FIELDS:
        if name in object_type.fields:
            return name
    return next((n for n, s in object_type.fields.items() if s.type in ("string", "text")), "")


def _filters(owner: str, q: str) -> None:
    for name, value in (("owner", owner), ("q", q)):
        if len(value) > _MAX_FILTER or "\x00" in value:
            raise BadRequest(f"{name} must be at most {_MAX_FILTER} characters, without NUL")


class Cards:
    """Turns a page of records into cards for one board (its title and amount fields, its zone)."""

    def __init__(self, store: BoardStore, bundle: m.Bundle, pipeline: m.Pipeline, zone: tzinfo) -> None:
        object_type = bundle.objects.get(pipeline.object)
        self.store = store
        self.pipeline = pipeline
        self.zone = zone
        self.sum_field = sum_field(object_type)
        self.title_field = title_field(object_type)
        self.rules = f"{pipeline.name}/"  # a rule run's name is <pipeline>/<stage>/<rule>

    def cards(self, found: Sequence[tuple[Record, datetime | None]]) -> list[dict[str, Any]]:
        runs = self.store.active_runs_of([record.key for record, _ in found]) if found else {}
        return [self.card(record, at, runs.get(record.key, [])) for record, at in found]

    def card(self, record: Record, updated_at: datetime | None, active: Sequence[Run]) -> dict[str, Any]:
        title = record.fields.get(self.title_field) if self.title_field else None
        amount = record.fields.get(self.sum_field) if self.sum_field else None
        if isinstance(amount, bool) or not isinstance(amount, int | float):
            amount = None
        return {
            "id": record.id,
            "title": str(title) if title not in (None, "") else record.id,
            "owner": record.owner,
            "amount": amount,
            "stage": record.stage,
            "updated_at": iso(updated_at, self.zone),
            "pending_rules": [run.name.removeprefix(self.rules) for run in active if run.kind == "rule"],
        }


def board(
    store: BoardStore,
    bundle: m.Bundle,
    zone: tzinfo,
    name: str,
    *,
    cards: int = 20,
    owner: str = "",
    q: str = "",
    counted: Totals,
    now: datetime,
) -> dict[str, Any]:
    pipeline = pipeline_of(bundle, name)
    check_limit(cards, "cards")
    _filters(owner, q)
    maker = Cards(store, bundle, pipeline, zone)
    totals, at = counted.get(store, (pipeline.object, pipeline.name, maker.sum_field, owner, q), now)
    stages = []
    for stage in pipeline.stages:
        count, total = totals.get(stage.id, (0, 0.0))
        found = (
            store.stage_records(pipeline.object, pipeline.name, stage.id, limit=cards, owner=owner, q=q)
            if count
            else []
        )
        more = len(found) >= cards and count > len(found)
        stages.append(
            {
                "id": stage.id,
                "label": stage.name or stage.id,
                "count": count,
                "sum": total if maker.sum_field else None,
                "final": stage.final,
                "cards": maker.cards(found),
                "next": page([], len(found), cards, (found[-1][0].id,) if more else None)["next"],
            }
        )
    return {
        "pipeline": pipeline.name,
        "object": pipeline.object,
        "label": pipeline.name,
        "sum_field": maker.sum_field or None,
        "totals_at": iso(at, zone),
        "stages": stages,
    }


def stage_cards(
    store: BoardStore,
    bundle: m.Bundle,
    zone: tzinfo,
    name: str,
    stage: str,
    *,
    limit: int = 50,
    cursor: str = "",
    owner: str = "",
    q: str = "",
) -> dict[str, Any]:
    pipeline = pipeline_of(bundle, name)
    if pipeline.stage(stage) is None:
        raise NotFound(f"pipeline {pipeline.name} has no stage {stage[:80]!r}")
    check_limit(limit)
    _filters(owner, q)
    after = decode_cursor(cursor, (str,))
    found = store.stage_records(
        pipeline.object, pipeline.name, stage, after=after[0] if after else "", limit=limit, owner=owner, q=q
    )
    items = Cards(store, bundle, pipeline, zone).cards(found)
    return page(items, len(found), limit, (found[-1][0].id,) if found else None)
