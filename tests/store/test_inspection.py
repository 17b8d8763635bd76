"""The ``Inspection`` contract: listings, gauges and history as the CLI, ``/metrics`` and replay read them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

from flowctl.engine.state import Effect, Record, StageEntry, Step
from flowctl.ports import CareOccurrence, ConfigVersion, OutboxFilter, Processed, RunFilter, Store
from flowctl.store import MemoryStore, open_store
from tests.store.contract import T0, change, effect, run, timer


def test_listing_records_and_runs(store: Store) -> None:
    recs = [Record(object="deal", id=f"{i:02}", stage="new" if i % 2 else "won") for i in range(6)]
    gone = Record(object="deal", id="99", deleted=True)
    runs = [run(id=f"r{i}", seq=i, status="done" if i == 2 else "waiting") for i in range(4)]
    step = Step(
        records={r.key: r for r in [*recs, gone, Record(object="contact", id="c")]}, runs={r.id: r for r in runs}
    )
    store.commit_batch([Processed(step=step)], T0)
    assert [r.id for r in store.list_records("deal")] == ["00", "01", "02", "03", "04", "05"]
    assert [r.id for r in store.list_records("deal", stage="new")] == ["01", "03", "05"]
    assert [r.id for r in store.list_records("deal", limit=2, after="01")] == ["02", "03"]
    assert store.record("deal", "99") == gone
    assert [r.id for r in store.list_runs()] == ["r3", "r2", "r1", "r0"]
    assert [r.id for r in store.list_runs(limit=2, status="waiting")] == ["r3", "r1"]
    assert [r.id for r in store.list_runs(object="deal", record_id="7", status="done")] == ["r2"]
    assert store.list_runs(record_id="8") == []
    assert [r.id for r in store.active_runs("deal", "7")] == ["r0", "r1", "r3"]


def entry(record_id: str, stage: str, minutes: int, key: str = "c1", object: str = "deal") -> StageEntry:
    return StageEntry(
        object=object,
        record_id=record_id,
        pipeline="sales",
        stage=stage,
        at=T0 + timedelta(minutes=minutes),
        key=key,
    )


def test_a_records_stage_entries_read_back_oldest_first_as_committed(store: Store) -> None:
    """A record's stage history, as the timeline reads it: in the order entered (not by time,
    not by stage), over batches and items, only its own, at most ``limit``."""
    first = [entry("7", "new", 0), entry("8", "new", 0, key="c2"), entry("7", "documents", 0, key="c2")]
    store.commit_batch(
        [Processed(step=Step(stage_entries=first[:2])), Processed(step=Step(stage_entries=first[2:]))], T0
    )
    later = [entry("7", "review", 90, key="t:x"), entry("7", "won", 90, key="t:x"), entry("7", "new", 0, object="lead")]
    store.commit_batch([Processed(step=Step(stage_entries=later))], T0 + timedelta(minutes=90))
    assert store.stage_entries("deal", "7") == [first[0], first[2], later[0], later[1]]
    assert [e.stage for e in store.stage_entries("deal", "7", limit=2)] == ["new", "documents"]
    assert store.stage_entries("deal", "8") == [first[1]]
    assert store.stage_entries("lead", "7") == [later[2]]
    assert store.stage_entries("deal", "9") == []
    (read,) = store.stage_entries("deal", "8")
    assert read.at == T0 and read.at.utcoffset() == timedelta(0)  # aware, in UTC


def note(key: str, text: str, record_id: str = "7") -> Effect:
    return Effect(key=key, action="add_note", run_id="r1", object="deal", record_id=record_id, params={"text": text})


def test_notes_are_kept_once_per_effect_and_read_newest_first(store: Store) -> None:
    """``add_note`` effects become the record's notes with the step that wrote them, by any of the
    three writers (a batch, a care commit, a care insert); a step committed again (a retry after
    a lost answer) writes its note once; only notes leave no outbox row."""
    store.commit_batch([Processed(step=Step(effects=[note("r1:0", "first"), note("r1:1", "other", "8")]))], T0)
    later = T0 + timedelta(minutes=5)
    store.commit_batch([Processed(step=Step(effects=[note("r1:2", "Hoá đơn INV-1 đã tạo")]))], later)
    store.commit_batch([Processed(step=Step(effects=[note("r1:2", "written again")]))], later)
    assert [(n.text, n.at, n.run_id) for n in store.notes("deal", "7")] == [
        ("Hoá đơn INV-1 đã tạo", later, "r1"),
        ("first", T0, "r1"),
    ]
    assert [n.text for n in store.notes("deal", "7", limit=1)] == ["Hoá đơn INV-1 đã tạo"]
    assert [n.key for n in store.notes("deal", "8")] == ["r1:1"]
    assert store.notes("contact", "7") == []
    assert store.list_outbox() == []
    occurrence = CareOccurrence(process="thanks", object="deal", record_id="7", occurrence="2026-03-01", status="sent")
    step = Step(effects=[note("care:1", "from care")])
    assert store.insert_care([(occurrence, Processed(step=step))], "w", later)
    assert store.notes("deal", "7")[0].text == "from care"


def test_queue_counts_give_the_outbox_lag_from_the_earliest_due_row(store: Store) -> None:
    """``flowctl_outbox_lag_seconds``: the earliest pending or retry row's due time; sent, dead and
    sending rows do not count."""
    assert store.queue_counts()["oldest_due_at"] is None
    store.commit_batch([Processed(step=Step(effects=[effect("e1"), effect("e2")]))], T0)
    assert store.queue_counts()["oldest_due_at"] == T0
    first, second = store.claim_outbox(T0, 10, "w1", 30)
    assert store.queue_counts()["oldest_due_at"] is None  # both in a sender's hands
    store.mark_failed(first.id, "busy", T0 + timedelta(minutes=5), T0)
    store.mark_sent(second.id, T0)
    assert store.queue_counts()["oldest_due_at"] == T0 + timedelta(minutes=5)


def test_open_store_gives_a_memory_store_or_a_migrated_sql_store(db_url: str) -> None:
    store = open_store(db_url)
    try:
        assert isinstance(store, MemoryStore) == (db_url == "memory://")
        assert store.counts()["records"] == 0
    finally:
        store.close()


def test_replay_reads_changes_after_a_seq_and_the_outbox_of_a_window(store: Store) -> None:
    appended = store.append_changes([change("1", "k1"), change("2", "k2"), change("3", "k3")])
    assert [c.idempotency_key for c in store.changes_after(0)] == ["k1", "k2", "k3"]
    assert [c.idempotency_key for c in store.changes_after(appended[0].seq, limit=1)] == ["k2"]
    assert store.changes_after(appended[2].seq) == []
    store.commit_batch([Processed(step=Step(effects=[effect("e1")]))], T0)
    store.commit_batch([Processed(step=Step(effects=[effect("e2"), effect("e3")]))], T0 + timedelta(hours=1))
    assert [r.key for r in store.outbox_between(T0, T0 + timedelta(hours=1))] == ["e1"]  # the end is left out
    assert [r.key for r in store.outbox_between(T0, T0 + timedelta(hours=2))] == ["e1", "e2", "e3"]
    assert store.outbox_between(T0 - timedelta(hours=1), T0) == []


def test_the_outbox_is_listed_newest_first_and_a_row_read_by_id(store: Store) -> None:
    store.commit_batch([Processed(step=Step(effects=[effect("e1"), effect("e2"), effect("e3")]))], T0)
    e1, _, _ = store.claim_outbox(T0, 10, "d", 60)
    store.mark_sent(e1.id, T0)
    assert [r.key for r in store.list_outbox()] == ["e3", "e2", "e1"]
    assert [r.key for r in store.list_outbox(status="sending")] == ["e3", "e2"]
    assert [r.key for r in store.list_outbox(limit=1)] == ["e3"]
    row = store.outbox_row(e1.id)
    assert row is not None and (row.key, row.status, row.sent_at, row.recipient) == ("e1", "sent", T0, "a@example.com")
    assert store.outbox_row(e1.id + 1000) is None


def test_counts_give_every_gauge_even_when_zero(store: Store) -> None:
    zero = store.counts()
    assert set(zero) >= {"records", "timers", "changes_pending", "outbox_pending", "runs_waiting"}
    assert not any(zero.values())
    store.append_changes([change("1", "k1"), change("2", "k2")])
    store.claim_changes(1, "w", T0, 30)
    recs = {("deal", "1"): Record(object="deal", id="1"), ("deal", "2"): Record(object="deal", id="2", deleted=True)}
    step = Step(
        records=recs,
        runs={"r1": run("r1"), "r2": run("r2", status="done")},
        timers=[timer("t1", T0)],
        effects=[effect("e1"), effect("e2")],
    )
    store.commit_batch([Processed(step=step)], T0)
    store.claim_outbox(T0, 1, "d", 60)
    counts = store.counts()
    assert (counts["records"], counts["timers"], counts["runs_waiting"]) == (2, 1, 1)
    assert (counts["changes_pending"], counts["changes_claimed"]) == (1, 1)
    assert (counts["outbox_pending"], counts["outbox_sending"]) == (1, 1)


# ---------------------------------------------------------------- the console's pages


def _runs(store: Store, specs: list[tuple[str, int, str, str, str]]) -> None:
    """(id, seq, status, automation, record_id) each."""
    made = [
        replace(run(id=i, seq=seq, status=status), automation=automation, record_id=rid)
        for i, seq, status, automation, rid in specs
    ]
    store.commit_batch([Processed(step=Step(runs={r.id: r for r in made}))], T0)


def _walk(fetch: Callable[[object], list[Any]], key: Callable[[Any], object]) -> list[Any]:
    out: list[Any] = []
    before = None
    while page := fetch(before):
        out.extend(page)
        before = key(page[-1])
    return out


def test_runs_pages_newest_first_by_seq_then_id_with_every_filter(store: Store) -> None:
    _runs(
        store,
        [
            ("a", 5, "done", "flow:welcome", "7"),
            ("b", 5, "waiting", "flow:welcome", "8"),
            ("c", 9, "waiting", "rule:sales/new/nudge", "7"),
            ("d", 1, "failed", "flow:welcome", "7"),
            ("e", 9, "done", "flow:welcome", "7"),
        ],
    )
    every = store.runs_page(RunFilter())
    assert [r.id for r in every] == ["e", "c", "b", "a", "d"]
    assert every[0].trace == run().trace  # a page carries the runs whole
    assert [r.id for r in store.runs_page(RunFilter(), before=(9, "c"))] == ["b", "a", "d"]
    assert [r.id for r in store.runs_page(RunFilter(), before=(5, "b"), limit=1)] == ["a"]
    assert [r.id for r in store.runs_page(RunFilter(object="deal", record_id="7"))] == ["e", "c", "a", "d"]
    assert [r.id for r in store.runs_page(RunFilter(status="waiting"))] == ["c", "b"]
    assert [r.id for r in store.runs_page(RunFilter(automation="flow:welcome", status="done"))] == ["e", "a"]
    assert store.runs_page(RunFilter(object="contact")) == []
    walked = _walk(lambda b: store.runs_page(RunFilter(), before=b, limit=2), lambda r: (r.seq, r.id))  # type: ignore[arg-type]
    assert [r.id for r in walked] == ["e", "c", "b", "a", "d"]


def test_runs_since_and_until_bound_the_start_millisecond(store: Store) -> None:
    ms = int(T0.timestamp() * 1000)
    _runs(
        store,
        [
            ("old", ms - 1, "done", "flow:x", "7"),
            ("at", ms, "done", "flow:x", "7"),
            ("later", ms + 60_000, "done", "flow:x", "7"),
        ],
    )
    assert [r.id for r in store.runs_page(RunFilter(since=T0))] == ["later", "at"]
    assert [r.id for r in store.runs_page(RunFilter(until=T0))] == ["old"]
    assert [r.id for r in store.runs_page(RunFilter(since=T0, until=T0 + timedelta(minutes=1)))] == ["at"]


def test_outbox_pages_newest_first_by_id_with_every_filter(store: Store) -> None:
    sms = Effect(
        key="s1", action="send_sms", run_id="r2", object="deal", record_id="8", channel="sms", params={"to": "+84"}
    )
    store.commit_batch([Processed(step=Step(effects=[effect("e1"), sms, effect("e2"), effect("e3")]))], T0)
    first = store.claim_outbox(T0, 1, "d", 60)[0]
    store.mark_sent(first.id, T0)
    assert [r.key for r in store.outbox_page(OutboxFilter())] == ["e3", "e2", "s1", "e1"]
    ids = {r.key: r.id for r in store.outbox_page(OutboxFilter())}
    assert [r.key for r in store.outbox_page(OutboxFilter(), before=ids["e2"])] == ["s1", "e1"]
    assert [r.key for r in store.outbox_page(OutboxFilter(channel="sms"))] == ["s1"]
    assert [r.key for r in store.outbox_page(OutboxFilter(object="deal", record_id="7"))] == ["e3", "e2", "e1"]
    assert [r.key for r in store.outbox_page(OutboxFilter(status="sent"))] == ["e1"]
    assert [r.key for r in store.outbox_page(OutboxFilter(status="pending"), limit=1)] == ["e3"]
    walked = _walk(lambda b: store.outbox_page(OutboxFilter(), before=b, limit=3), lambda r: r.id)  # type: ignore[arg-type]
    assert [r.key for r in walked] == ["e3", "e2", "s1", "e1"]


def _deal(id: str, stage: str, amount: object = None, owner: str = "", **fields: object) -> Record:
    values = {"title": f"Deal {id}", **fields}
    if amount is not None:
        values["amount"] = amount
    return Record(object="deal", id=id, stage=stage, pipeline="sales", owner=owner, fields=values, version=1)


def test_stage_totals_count_and_sum_a_numeric_field_counting_anything_else_as_zero(store: Store) -> None:
    recs = [
        _deal("1", "new", 100),
        _deal("2", "new", 2.5),
        _deal("3", "new", "lots"),  # text: 0, never an error
        _deal("4", "new", True),  # a boolean is no number
        _deal("5", "new", {"v": 1}),
        _deal("6", "new"),  # missing
        _deal("7", "won", 1e6, owner="lan"),
        Record(object="deal", id="8", stage="won", pipeline="sales", fields={"amount": 5}, deleted=True),
        Record(object="deal", id="9", stage="new", pipeline="other", fields={"amount": 5}),
        Record(object="contact", id="1", stage="new", pipeline="sales", fields={"amount": 5}),
    ]
    store.commit_batch([Processed(step=Step(records={r.key: r for r in recs}))], T0)
    assert store.stage_totals("deal", "sales", "amount") == {"new": (6, 102.5), "won": (1, 1e6)}
    assert store.stage_totals("deal", "sales") == {"new": (6, 0.0), "won": (1, 0.0)}
    assert store.stage_totals("deal", "sales", "amount", owner="lan") == {"won": (1, 1e6)}
    assert store.stage_totals("deal", "sales", "amount", q="DEAL 2") == {"new": (1, 2.5)}
    assert store.stage_totals("deal", "nothing", "amount") == {}


def test_stage_records_page_a_column_by_id_with_when_each_was_written(store: Store) -> None:
    recs = [_deal(f"{i:02}", "new" if i % 3 else "won", i, owner="lan" if i < 5 else "") for i in range(12)]
    recs.append(Record(object="deal", id="50", stage="new", pipeline="sales", deleted=True))
    store.commit_batch([Processed(step=Step(records={r.key: r for r in recs}))], T0)
    first = store.stage_records("deal", "sales", "new", limit=3)
    assert [(r.id, at) for r, at in first] == [("01", T0), ("02", T0), ("04", T0)]
    assert first[0][0] == recs[1]
    assert [r.id for r, _ in store.stage_records("deal", "sales", "new", after="04", limit=3)] == ["05", "07", "08"]
    assert [r.id for r, _ in store.stage_records("deal", "sales", "new", owner="lan")] == ["01", "02", "04"]
    assert [r.id for r, _ in store.stage_records("deal", "sales", "new", q="deal 1")] == ["10", "11"]
    assert [r.id for r, _ in store.stage_records("deal", "sales", "new", q="%")] == []  # LIKE's wildcards are text
    walked = _walk(lambda a: store.stage_records("deal", "sales", "won", after=a or "", limit=2), lambda p: p[0].id)  # type: ignore[arg-type]
    assert [r.id for r, _ in walked] == ["00", "03", "06", "09"]


def test_record_changes_are_the_records_writes_in_order(store: Store) -> None:
    store.append_changes([change("7", "k1"), change("8", "k2"), replace(change("7", "k3"), op="move", stage="won")])
    assert [(c.idempotency_key, c.op) for c in store.record_changes("deal", "7")] == [("k1", "patch"), ("k3", "move")]
    assert [c.idempotency_key for c in store.record_changes("deal", "7", limit=1)] == ["k1"]
    assert store.record_changes("deal", "9") == []


def test_versions_page_newest_applied_first(store: Store) -> None:
    for n, hours in (("h1", 0), ("h2", 2), ("h3", 1), ("h4", 2)):
        store.save_version(ConfigVersion(id=n, applied_at=T0 + timedelta(hours=hours), documents={}, commit=n))
    assert [v.id for v in store.versions_page()] == ["h4", "h2", "h3", "h1"]
    assert [v.id for v in store.versions_page(before=(T0 + timedelta(hours=2), "h2"), limit=1)] == ["h3"]
    assert [v.id for v in store.versions_page(before=(T0 + timedelta(hours=2), "h4"))] == ["h2", "h3", "h1"]


def test_active_counts_are_the_active_runs_of_a_prefix_per_node(store: Store) -> None:
    _runs(
        store,
        [
            ("a", 1, "waiting", "flow:welcome", "7"),
            ("b", 2, "waiting", "flow:welcome", "8"),
            ("c", 3, "done", "flow:welcome", "9"),
            ("d", 4, "running", "rule:sales/new/nudge", "7"),
            ("e", 5, "queued", "flow:welcome_back", "7"),
            ("f", 6, "waiting", "flow:welcome%", "7"),
        ],
    )
    assert store.active_counts("flow:welcome") == {
        ("flow:welcome", "wait"): 2,
        ("flow:welcome_back", "wait"): 1,
        ("flow:welcome%", "wait"): 1,
    }
    assert store.active_counts("flow:welcome%") == {("flow:welcome%", "wait"): 1}  # % is no wildcard
    assert store.active_counts("rule:sales/") == {("rule:sales/new/nudge", "wait"): 1}
    assert store.active_counts("care:") == {}
