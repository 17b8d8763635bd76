"""The ``Deployments`` contract: one current version, a deploy that loses a race writes nothing, what a reload keeps."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from flowctl.engine.state import Record, Step
from flowctl.ports import CareOccurrence, ConfigVersion, Processed, Store
from tests.store.contract import T0, run, timer


def test_config_versions_the_last_saved_is_current(store: Store) -> None:
    assert store.current_version() is None
    v1 = ConfigVersion(
        id="h1", applied_at=T0, documents={"Flow/a": {"kind": "Flow"}}, commit="c1", author="an", message="first"
    )
    v2 = ConfigVersion(id="h2", applied_at=T0 + timedelta(hours=1), documents={})
    store.save_version(v1)
    assert store.current_version() == v1
    store.save_version(v2)
    assert store.current_version() == v2
    store.save_version(v1)
    assert store.current_version() == v1


def test_versions_in_use_are_those_of_active_runs_and_current_care_pins(store: Store) -> None:
    """What a reload keeps the engines of: a version an active run started on, or a care process
    pinned on a day not yet over; not that of a finished run or an old pin."""
    runs = {
        "r1": replace(run("r1"), config_version="v1"),
        "r2": replace(run("r2", status="done"), config_version="v2"),
        "r3": replace(run("r3", status="running"), config_version="v3"),
    }
    store.commit_batch([Processed(step=Step(runs=runs))], T0)
    store.pin_care_day("birthday", "2026-02-27", "v4")
    store.pin_care_day("birthday", "2026-03-01", "v5")
    assert store.versions_in_use("2026-02-28") == {"v1", "v3", "v5"}


def version(id: str, hours: int = 0) -> ConfigVersion:
    return ConfigVersion(
        id=id,
        applied_at=T0 + timedelta(hours=hours),
        documents={"Flow/a": {"kind": "Flow", "n": hours}},
        commit=f"c{hours}",
        files={"flows/a.yaml": f"n: {hours}\n"},
    )


def test_a_deploy_replaces_the_current_version_only_if_nobody_deployed_meanwhile(store: Store) -> None:
    runs = {"r1": run("r1"), "r2": run("r2", seq=2)}
    store.commit_batch([Processed(step=Step(runs=runs, timers=[timer("t1", T0 + timedelta(hours=1))]))], T0)
    v1, v2, v3 = version("h1"), version("h2", 1), version("h3", 2)
    assert store.deploy_version(v1, None)
    assert not store.deploy_version(v2, None)  # another deploy got there first: nothing written
    assert store.current_version() == v1 and store.version("h2") is None
    assert store.deploy_version(v2, "h1", cancel_runs=["r1"], now=T0 + timedelta(hours=1))
    assert store.current_version() == v2
    cancelled = store.run("r1")
    assert cancelled is not None and cancelled.status == "cancelled" and store.timers_of("r1") == []
    assert store.active_runs("deal", "7") == [runs["r2"]]
    assert not store.deploy_version(v3, "h1")
    assert [v.id for v in store.versions()] == ["h2", "h1"]
    assert [v.id for v in store.versions(limit=1)] == ["h2"]
    assert store.version("h1") == v1  # every file comes back, for a rollback
    assert store.version("nope") is None


def test_what_a_plan_reads_live_records_per_stage_and_the_work_in_progress(store: Store) -> None:
    recs = [
        Record(object="deal", id="1", pipeline="sales", stage="new"),
        Record(object="deal", id="2", pipeline="sales", stage="new"),
        Record(object="deal", id="3", pipeline="sales", stage="won"),
        Record(object="deal", id="4", pipeline="sales", stage="new", deleted=True),
        Record(object="contact", id="c"),
    ]
    runs = {"r1": run("r1", seq=1), "r2": run("r2", status="running", seq=2), "r3": run("r3", status="done", seq=3)}
    timers = [timer("t1", T0, run_id="r1"), timer("t2", T0 + timedelta(hours=1), run_id="r1")]
    store.commit_batch([Processed(step=Step(records={r.key: r for r in recs}, runs=runs, timers=timers))], T0)
    assert store.stage_counts() == {("deal", "sales", "new"): 2, ("deal", "sales", "won"): 1, ("contact", "", ""): 1}
    work = store.pending_work()
    assert [(r.id, held) for r, held in work] == [("r1", 2), ("r2", 0)]  # active runs only, oldest first
    assert all(not r.trace for r, _ in work)  # without their trace


def test_care_claims_are_counted_per_process_from_a_time_on(store: Store) -> None:
    def claim_at(process: str, record_id: str, at: datetime) -> None:
        wanted = CareOccurrence(process=process, object="contact", record_id=record_id, occurrence="2026-03-01")
        assert store.claim_occurrences([wanted], "a", at)

    claim_at("birthday", "c1", T0)
    claim_at("birthday", "c2", T0 + timedelta(hours=1))
    claim_at("welcome", "c1", T0 + timedelta(hours=2))
    assert store.care_claims_since(T0 + timedelta(minutes=30)) == {"birthday": 1, "welcome": 1}
    assert store.care_claims_since(T0) == {"birthday": 2, "welcome": 1}
    assert store.care_claims_since(T0 + timedelta(hours=3)) == {}
