"""The worker loads the linked records a batch's automations read before the engine runs: one
query for the batch, and none while the engine handles it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flowctl.engine.core import Engine
from flowctl.engine.state import Record, Step
from flowctl.ports import NewChange, Processed
from flowctl.runtime.daemon.worker import Engines, Worker
from flowctl.store import open_store
from flowctl.testing import FrozenClock
from tests.engine.conftest import T0, make_bundle
from tests.links.support import FILES


class Counting:
    """The store, noting which records are read one by one and which in bulk."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.one_by_one: list[tuple[str, str]] = []
        self.in_bulk: list[list[tuple[str, str]]] = []

    def record(self, object: str, id: str) -> Record | None:
        self.one_by_one.append((object, id))
        return self.store.record(object, id)  # type: ignore[no-any-return]

    def records_of(self, keys: Sequence[tuple[str, str]]) -> Any:
        self.in_bulk.append(list(keys))
        return self.store.records_of(keys)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def test_the_linked_customers_of_a_batch_are_loaded_in_one_query_before_the_engine_runs(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, FILES)
    store = open_store(f"sqlite:///{tmp_path / 'flowctl.db'}")
    try:
        customers = {
            ("customer", id): Record(object="customer", id=id, fields={"full_name": name, "phone": phone, "vip": True})
            for id, name, phone in (("c1", "Mai", "0912000001"), ("c2", "Lan", "0912000002"))
        }
        store.commit_batch([Processed(step=Step(records=customers))], T0)
        store.append_changes(
            [
                NewChange(
                    object="deal",
                    record_id=f"d{n}",
                    op="put",
                    idempotency_key=f"d{n}",
                    fields={"title": "Sofa", "customer": f"c{n}"},
                    received_at=T0,
                )
                for n in (1, 2)
            ]
        )
        counting = Counting(store)
        worker = Worker(counting, Engines(Engine(bundle)), FrozenClock(T0), batch=10)  # type: ignore[arg-type]
        assert worker.process_changes() == 2
        assert [("customer", "c1"), ("customer", "c2")] in counting.in_bulk
        assert not [key for key in counting.one_by_one if key[0] == "customer"]
        texts = [row.payload["text"] for row in store.list_outbox(10) if row.action == "send_sms"]
        assert sorted(texts) == ["Chao Lan", "Chao Mai"]
    finally:
        store.close()
