"""``Reads``: every read of the read API and the console, in one place, over the running service.

The HTTP handlers (``runtime.api.reading``) and the console call the same methods, so a page shows
what the API answers. Each method is synchronous (store reads; call it in a thread from async
code), reads ``svc.bundle`` on every call (a hot reload takes effect on the next read), and
raises the API's errors (``sources.errors``): ``BadRequest`` naming the parameter, ``NotFound``,
``Conflict``. Lists answer ``{"items": [...], "next": cursor | None}``; pass ``next`` back as
``cursor`` for the following page (keyset: no item twice, none skipped, while rows are added).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flowctl.engine.core import Engine
from flowctl.runtime.api.view import ServiceView
from flowctl.runtime.reads import board as boards
from flowctl.runtime.reads import care as cares
from flowctl.runtime.reads import deployments as deploys
from flowctl.runtime.reads import outbox as outboxes
from flowctl.runtime.reads import runs as runs_
from flowctl.runtime.reads.common import zone_of
from flowctl.runtime.reads.graph import graph
from flowctl.runtime.reads.health import health
from flowctl.runtime.reads.recycle_bin import recycle_bin
from flowctl.runtime.reads.timeline import timeline


class Reads:
    """The read side of the running service ``svc``."""

    def __init__(self, svc: ServiceView) -> None:
        self.svc = svc
        self._engine: Engine | None = None  # for the care forecast, built again after a reload
        self._totals = boards.Totals()

    def _forecaster(self) -> Engine:
        bundle = self.svc.bundle
        engine = self._engine
        if engine is None or engine.bundle is not bundle:
            engine = self._engine = Engine(bundle, "forecast")
        return engine

    # ------------------------------------------------------------------ runs

    def runs(
        self,
        *,
        status: str = "",
        automation: str = "",
        object: str = "",
        record_id: str = "",
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        cursor: str = "",
    ) -> dict[str, Any]:
        """Runs newest first. Items: id, automation, kind, name, object, record_id, status, node,
        waiting_for, steps, started_at, updated_at, config_version. ``since``/``until``: started in
        ``[since, until)``."""
        bundle = self.svc.bundle
        return runs_.list_runs(
            self.svc.store,
            bundle,
            zone_of(bundle),
            status=status,
            automation=automation,
            object=object,
            record_id=record_id,
            since=since,
            until=until,
            limit=limit,
            cursor=cursor,
        )

    def run(self, run_id: str) -> dict[str, Any]:
        """One run as ``runs`` lists it, with ``trace``: each entry with ``text``, its line as
        ``flowctl runs show`` prints it. NotFound for an unknown id."""
        return runs_.one_run(self.svc.store, zone_of(self.svc.bundle), run_id)

    # ------------------------------------------------------------------ outbox

    def outbox(
        self,
        *,
        status: str = "",
        channel: str = "",
        object: str = "",
        record_id: str = "",
        limit: int = 50,
        cursor: str = "",
    ) -> dict[str, Any]:
        """Outbox rows newest first (no payload; ``summary``: the subject or the text's start)."""
        bundle = self.svc.bundle
        return outboxes.list_outbox(
            self.svc.store,
            bundle,
            zone_of(bundle),
            status=status,
            channel=channel,
            object=object,
            record_id=record_id,
            limit=limit,
            cursor=cursor,
        )

    def retry(self, row_id: int) -> dict[str, Any]:
        """A dead, retry or held row goes out again now; the row after. NotFound; Conflict otherwise."""
        return outboxes.retry(self.svc.store, zone_of(self.svc.bundle), row_id, self.svc.clock.now())

    def cancel(self, row_id: int) -> dict[str, Any]:
        """A pending, retry, held or dead row is cancelled (never sent); the row after. NotFound;
        Conflict for a sent, sending or cancelled row."""
        return outboxes.cancel(self.svc.store, zone_of(self.svc.bundle), row_id, self.svc.clock.now())

    # ------------------------------------------------------------------ boards and records

    def board(self, pipeline: str, *, cards: int = 20, owner: str = "", q: str = "") -> dict[str, Any]:
        """Per stage: count, sum of the object's money field, the first ``cards`` cards and the
        cursor of the next ones (``stage_cards``); ``totals_at``: when the counts were made (a big
        board's are kept up to 2 s). NotFound for an unknown pipeline."""
        bundle = self.svc.bundle
        return boards.board(
            self.svc.store,
            bundle,
            zone_of(bundle),
            pipeline,
            cards=cards,
            owner=owner,
            q=q,
            counted=self._totals,
            now=self.svc.clock.now(),
        )

    def stage_cards(
        self, pipeline: str, stage: str, *, limit: int = 50, cursor: str = "", owner: str = "", q: str = ""
    ) -> dict[str, Any]:
        """The cards of one column, by record id. NotFound for an unknown pipeline or stage."""
        bundle = self.svc.bundle
        return boards.stage_cards(
            self.svc.store, bundle, zone_of(bundle), pipeline, stage, limit=limit, cursor=cursor, owner=owner, q=q
        )

    def timeline(self, object: str, record_id: str) -> dict[str, Any]:
        """The record (as GET /v1/records answers), its stages, notes, runs, messages and pending
        timers. NotFound for an unknown object type or record."""
        bundle = self.svc.bundle
        return timeline(self.svc.store, bundle, zone_of(bundle), object, record_id)

    # ------------------------------------------------------------------ operations

    def care(self) -> dict[str, Any]:
        """Each care process: next_firing, next_7_days [{day, count}] (as ``flowctl care forecast``
        counts over the stored records), last_ticks [{at, claimed}], the ledger's counts."""
        bundle = self.svc.bundle
        return cares.care(self.svc.store, bundle, self._forecaster(), zone_of(bundle), self.svc.clock.now())

    def deployments(self, *, limit: int = 50, cursor: str = "") -> dict[str, Any]:
        """Deployed versions newest first: id, applied_at, commit, author, message, current."""
        return deploys.deployments(self.svc.store, zone_of(self.svc.bundle), limit=limit, cursor=cursor)

    def deployment_diff(self, from_id: str, to_id: str) -> dict[str, Any]:
        """What changes from one version to another, per document, as ``flowctl plan`` lists it."""
        return deploys.diff(self.svc.store, from_id, to_id)

    def health(self) -> dict[str, Any]:
        """status, problems, lag_seconds, open_changes, outbox, timers, engine, last_reload, recent_errors."""
        return health(self.svc, zone_of(self.svc.bundle))

    def graph(self, name: str) -> dict[str, Any]:
        """A flow or pipeline as nodes and edges, with what waits at each node. NotFound if unknown."""
        return graph(self.svc.store, self.svc.bundle, name)

    def recycle_bin(self, object: str, *, limit: int = 50, cursor: str = "") -> dict[str, Any]:
        """The deleted records of ``object`` by id: the record, title, deleted_at, purge_after."""
        bundle = self.svc.bundle
        return recycle_bin(self.svc.store, bundle, zone_of(bundle), object, limit=limit, cursor=cursor)
