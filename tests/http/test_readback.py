"""Read your own write when the change is processed between the read's two queries."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flowctl.engine.core import Engine
from flowctl.ports import NewChange, Store
from flowctl.runtime.api.readback import read_record
from flowctl.runtime.daemon.worker import Engines, Worker
from flowctl.spec.config import load_bundle
from flowctl.testing import FrozenClock, MemoryStore, write_config

T0 = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)


class ProcessedMidRead:
    """The store as a reader sees it while the engine process commits: the change is processed
    right after the reader's first query, before its second."""

    def __init__(self, store: Store, worker: Worker) -> None:
        self.store, self.worker, self.queries = store, worker, 0

    def _after_query(self) -> None:
        self.queries += 1
        if self.queries == 1:
            assert self.worker.process_changes() == 1

    def record(self, object: str, id: str) -> Any:
        found = self.store.record(object, id)
        self._after_query()
        return found

    def open_changes(self, object: str, id: str) -> Any:
        found = self.store.open_changes(object, id)
        self._after_query()
        return found


def test_a_read_that_races_the_commit_still_finds_the_acknowledged_write(tmp_path: Path) -> None:
    root = write_config(
        tmp_path,
        {
            "contact.yaml": """
        apiVersion: flowctl/v1
        kind: ObjectType
        metadata: {name: contact}
        spec:
          fields:
            full_name: {type: string}
    """
        },
    )
    bundle = load_bundle(root).bundle
    assert bundle is not None
    store = MemoryStore()
    store.append_changes(
        [
            NewChange(
                object="contact",
                record_id="1",
                op="put",
                fields={"full_name": "Lan"},
                idempotency_key="k1",
                received_at=T0,
            )
        ]
    )
    racing = ProcessedMidRead(store, Worker(store, Engines(Engine(bundle)), FrozenClock(T0), batch=10))

    record, pending = read_record(racing, "contact", "1")

    assert racing.queries == 2
    assert record is not None, "a read right after an acknowledged write answered 404"
    assert record.fields["full_name"] == "Lan"
    assert pending  # it was open when the read began: a later read says it is processed
