"""What the HTTP API needs from the running daemon: a reader of records, a sink for changes, the
current configuration and its health, as protocols.

The app is built over a :class:`ServiceView` rather than the service itself, so that tests can
serve it over an in-memory store and the API imports nothing of the daemon's threads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from datetime import datetime
from typing import Any, Protocol

from flowctl.engine.state import Effect, Record, Run
from flowctl.ports import (
    AppendResult,
    CareLedger,
    Clock,
    Deployments,
    Inspection,
    NewChange,
    RecordState,
    RecycleBin,
    StoredChange,
)
from flowctl.runtime.api.metrics import Metrics
from flowctl.spec import model as m


class RecordReader(Protocol):
    def record(self, object: str, id: str) -> Record | None: ...
    def list_records(
        self, object: str, stage: str = "", limit: int = 100, after: str = "", deleted: bool = False
    ) -> list[Record]: ...
    def open_changes(self, object: str, id: str) -> list[StoredChange]: ...
    def change(self, seq: int) -> StoredChange | None: ...
    def list_runs(self, limit: int = 50, status: str = "", object: str = "", record_id: str = "") -> list[Run]: ...


class ReadStore(RecordReader, RecordState, Inspection, Deployments, CareLedger, RecycleBin, Protocol):
    """What the API and the console read of the store, the two operator writes on the outbox, and
    a webhook's pending fetches."""

    def retry_outbox(self, row_id: int, now: datetime) -> bool: ...
    def cancel_outbox(self, row_id: int, now: datetime) -> bool: ...
    def queue_outbox(self, effects: Sequence[Effect], now: datetime) -> list[str]: ...  # pending fetches


class ChangeSink(Protocol):
    def submit(self, change: NewChange) -> Future[AppendResult]: ...

    def submit_async(self, change: NewChange) -> asyncio.Future[AppendResult]: ...

    def cancel(self, waiter: asyncio.Future[AppendResult]) -> bool: ...


class ServiceView(Protocol):
    """What ``create_app`` uses of the running service."""

    @property
    def bundle(self) -> m.Bundle: ...  # the current configuration (replaced on reload)
    @property
    def store(self) -> ReadStore: ...
    @property
    def ingest(self) -> ChangeSink: ...
    @property
    def metrics(self) -> Metrics: ...
    @property
    def env(self) -> Mapping[str, str]: ...  # resolves ${ENV} in api_token and source secrets
    @property
    def clock(self) -> Clock: ...
    def readiness(self) -> list[str]: ...  # why changes cannot be taken and processed now ([] = ready)
    def degraded(self) -> list[str]: ...  # what works only in part (a channel missing its ${ENV})
    def refuse_move(self, record: Record, stage: str, pipeline: str = "") -> str: ...  # why not ('' = allowed)
    def health_report(self) -> Mapping[str, Any]: ...

    # {"engine": {mode, running, version, problem, restarts}, "last_reload": {at, result, version, ok,
    #  error} | None, "recent_errors": [{at, level, logger, message}] newest first}
