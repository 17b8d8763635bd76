"""The worker loop takes a new round at once only when the last one may have left work behind:
a full batch (more may wait), or a timer it committed already due. Otherwise it waits for the
ingest's wake, so one change costs one round, not one plus an empty one."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from flowctl.engine.core import Engine
from flowctl.ports import NewChange
from flowctl.runtime.daemon.worker import Engines, Worker
from flowctl.store import open_store
from flowctl.testing import FrozenClock
from tests.engine.conftest import T0, make_bundle

PIPELINE = """
apiVersion: flowctl/v1
kind: Pipeline
metadata: {name: sales}
spec:
  object: deal
  stages:
    - id: new
      rules:
        - {name: welcome, action: send_sms, text: "hello {{ record.client_name }}", to: "{{ record.phone }}"}
        - {name: remind, delay: 30m, action: send_sms, text: "still there?", to: "{{ record.phone }}"}
"""


TWO_DELAYS = """
apiVersion: flowctl/v1
kind: Flow
metadata: {name: follow-up}
spec:
  object: deal
  trigger: {on: created}
  start: first
  nodes:
    first: {type: delay, for: 30m, next: second}
    second: {type: delay, for: 30m, next: sms}
    sms: {type: send_sms, text: "after two delays", to: "{{ record.phone }}"}
"""


class SlowClock(FrozenClock):
    """Each reading an hour after the last: a batch whose commit comes after its timers' due."""

    def now(self) -> datetime:
        at = super().now()
        self.advance(timedelta(hours=1))
        return at


def _deals(ids: range) -> list[NewChange]:
    return [
        NewChange(
            object="deal",
            record_id=f"d{n}",
            op="put",
            idempotency_key=f"d{n}",
            fields={"title": "Sofa", "client_name": f"Khách {n}", "phone": "0912000001"},
            received_at=T0,
        )
        for n in ids
    ]


def test_a_round_that_takes_less_than_a_batch_leaves_nothing_to_take_at_once(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'flowctl.db'}")
    try:
        worker = Worker(
            store, Engines(Engine(make_bundle(tmp_path, {"sales.yaml": PIPELINE}))), FrozenClock(T0), batch=2
        )
        store.append_changes(_deals(range(3)))
        assert worker.run_once() == 2
        assert worker.more_now  # a full batch: more may wait
        assert worker.run_once() == 1
        assert not worker.more_now  # the rest: the loop waits for a wake, the 30-minute timers are not due
        assert worker.run_once() == 0
        assert not worker.more_now
        welcomes = [row for row in store.list_outbox(10) if row.payload["text"].startswith("hello")]
        assert len(welcomes) == 3
    finally:
        store.close()


def test_a_timer_due_by_the_commit_of_the_timer_before_it_is_fired_in_the_next_round(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'flowctl.db'}")
    try:
        bundle = make_bundle(tmp_path, {"flows.yaml": TWO_DELAYS})
        worker = Worker(store, Engines(Engine(bundle)), SlowClock(T0), batch=10)
        store.append_changes(_deals(range(1)))
        assert worker.run_once() == 2  # the change, then its first delay (due by the timers' turn)
        assert worker.more_now  # the second delay was due (30 min) before that commit (an hour on)
        assert worker.run_once() == 1
        assert [row.payload["text"] for row in store.list_outbox(10)] == ["after two delays"]
        assert not worker.more_now
    finally:
        store.close()
