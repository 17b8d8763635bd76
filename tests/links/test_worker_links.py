"""The worker loads the linked records a batch's automations read before the engine runs: one
query for the batch, and none while the engine handles it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

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


class CrashingOnce(Counting):
    """The store, with a worker that dies before its first commit: the batch is processed again."""

    def __init__(self, store: Any) -> None:
        super().__init__(store)
        self.crashed = False
        self.lost: list[tuple[str, str]] = []  # the invoices of the batch that was never committed

    def commit_batch(self, *args: Any, **kwargs: Any) -> Any:
        if not self.crashed:
            self.crashed = True
            self.lost = [key for item in args[0] if item.step for key in item.step.records if key[0] == "invoice"]
            raise RuntimeError("the worker died before committing")
        return self.store.commit_batch(*args, **kwargs)


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_a_batch_processed_again_after_a_crash_creates_the_record_once(tmp_path: Path, backend: str) -> None:
    bundle = make_bundle(tmp_path, FILES)
    store = open_store("memory://" if backend == "memory" else f"sqlite:///{tmp_path / 'flowctl.db'}")
    try:
        customer = Record(object="customer", id="c1", fields={"full_name": "Mai"})
        store.commit_batch([Processed(step=Step(records={customer.key: customer}))], T0)
        deal = {"title": "Sofa", "amount": 100, "customer": "c1"}
        store.append_changes(
            [NewChange(object="deal", record_id="d1", op="put", idempotency_key="d1", fields=deal, received_at=T0)]
        )
        clock = FrozenClock(T0)
        Worker(store, Engines(Engine(bundle)), clock).process_changes()
        store.append_changes(
            [NewChange(object="deal", record_id="d1", op="move", idempotency_key="won", stage="won", received_at=T0)]
        )
        crashing = CrashingOnce(store)
        with pytest.raises(RuntimeError):
            Worker(crashing, Engines(Engine(bundle)), clock, owner="a", lease_seconds=5).process_changes()  # type: ignore[arg-type]
        assert store.records_of([("deal", "d1")])[("deal", "d1")].stage == "new"
        clock.set(T0 + timedelta(seconds=10))  # a's lease ran out: b takes the change and does it again
        assert Worker(store, Engines(Engine(bundle)), clock, owner="b").process_changes() == 1
        (invoice,) = store.list_records("invoice")
        runs = [r for r in store.list_runs(50, object="deal", record_id="d1") if r.automation.endswith("make invoice")]
        assert len(runs) == 1
        (effect,) = [t for t in runs[0].trace if t.kind == "effect"]
        assert effect.values["created_id"] == invoice.id
        assert crashing.lost == [("invoice", invoice.id)]  # the same id the lost attempt derived
    finally:
        store.close()


def test_a_due_timer_loads_the_linked_record_its_rule_reads_before_the_engine_runs(tmp_path: Path) -> None:
    later = (
        "    - id: new\n      rules:\n"
        '        - {name: later, delay: 1h, action: add_note, text: "later {{ linked.customer.full_name }}"}\n'
    )
    files = {**FILES, "automations.yaml": FILES["automations.yaml"].replace("    - id: new\n", later, 1)}
    bundle = make_bundle(tmp_path, files)
    store = open_store(f"sqlite:///{tmp_path / 'flowctl.db'}")
    try:
        customer = Record(object="customer", id="c1", fields={"full_name": "Mai"})
        store.commit_batch([Processed(step=Step(records={customer.key: customer}))], T0)
        deal = {"title": "Sofa", "customer": "c1"}
        store.append_changes(
            [NewChange(object="deal", record_id="d1", op="put", idempotency_key="d1", fields=deal, received_at=T0)]
        )
        clock = FrozenClock(T0)
        Worker(store, Engines(Engine(bundle)), clock).process_changes()
        clock.set(T0 + timedelta(hours=1, seconds=1))
        counting = Counting(store)
        assert Worker(counting, Engines(Engine(bundle)), clock).fire_timers() == 1  # type: ignore[arg-type]
        assert [("customer", "c1")] in counting.in_bulk
        assert not [key for key in counting.one_by_one if key[0] == "customer"]
        (run,) = [r for r in store.list_runs(50, object="deal", record_id="d1") if r.automation.endswith("later")]
        assert any(t.values.get("text") == "later Mai" for t in run.trace if t.kind == "effect")
    finally:
        store.close()
