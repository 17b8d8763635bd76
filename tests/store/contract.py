"""Values and helpers the store contract modules share (one module per role of ``flowctl.ports``)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime

from flowctl.engine.state import Effect, Run, Timer, TraceEntry
from flowctl.ports import NewChange, Processed, Store, StoredChange

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def change(record_id: str, key: str, object: str = "deal", **kw: object) -> NewChange:
    return NewChange(
        object=object, record_id=record_id, op="patch", idempotency_key=key, fields={"n": key}, received_at=T0, **kw
    )  # type: ignore[arg-type]


def done(*claimed: StoredChange, **kw: object) -> list[Processed]:
    return [Processed(change=c, **kw) for c in claimed]  # type: ignore[arg-type]


def effect(key: str, **params: object) -> Effect:
    return Effect(
        key=key,
        action="send_email",
        run_id="r1",
        object="deal",
        record_id="7",
        channel="smtp",
        params={"to": "a@example.com", **params},
    )


def timer(id: str, due: datetime, run_id: str = "r1") -> Timer:
    return Timer(id=id, run_id=run_id, due=due, kind="delay", node="wait", object="deal", record_id="7")


def run(id: str = "r1", status: str = "waiting", seq: int = 1, **kw: object) -> Run:
    trace = (
        TraceEntry(at=T0.isoformat(), node="start", kind="enter"),
        TraceEntry(
            at=T0.isoformat(),
            node="check",
            kind="condition",
            detail="amount > 10",
            values={"amount": 12, "tags": ["a", "b"], "nested": {"x": None}},
            result=True,
        ),
        TraceEntry(at=T0.isoformat(), node="mail", kind="effect", detail="send_email", result={"ok": 1}),
    )
    return Run(
        id=id,
        automation="flow:welcome",
        object="deal",
        record_id="7",
        status=status,
        node="wait",  # type: ignore[arg-type]
        waiting_for="invoice.paid",
        entry="e1",
        visits={"check": 2, "mail": 1},
        steps=3,
        started_at=T0.isoformat(),
        updated_at=T0.isoformat(),
        config_version="abc",
        trace=trace,
        seq=seq,
        **kw,
    )


def claim(store: Store, limit: int = 100, owner: str = "w1", now: datetime = T0, lease: float = 30) -> list[str]:
    return [c.idempotency_key for c in store.claim_changes(limit, owner, now, lease)]


def in_threads(n: int, work: Callable[[int], None]) -> None:
    errors: list[BaseException] = []

    def guarded(i: int) -> None:
        try:
            work(i)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
