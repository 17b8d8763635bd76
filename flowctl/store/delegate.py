"""A ``Store`` that hands every call to another one: the base of a wrapper that intercepts a few.

A wrapper that adds to a store (``runtime/leases.py``'s ``LeaseKeeper`` notes what its caller
holds; the care tick answers ``records_of`` from the records it read) subclasses
:class:`StoreDelegate` and overrides only the methods it intercepts. Every other call reaches the
wrapped store unchanged, through an explicit, typed method: mypy checks the wrapper against the
role protocols of ``flowctl.ports``, and a name the wrapper also uses for something else (a
thread's ``run``) cannot silently hide the store's method the way ``__getattr__`` behind a
``cast`` did.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from flowctl.engine.state import Effect, Record, Run, StageEntry, Timer
from flowctl.ports import (
    AppendResult,
    CareOccurrence,
    CareSummary,
    ChannelToken,
    ConfigVersion,
    InlineRun,
    NewChange,
    Note,
    OutboxFilter,
    OutboxRow,
    Processed,
    PurgeKind,
    RunFilter,
    Store,
    StoredChange,
)


class StoreDelegate:
    """Every method of every role of ``Store``, passed to ``store`` as it was called."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # ---- RecordState
    def record(self, object: str, id: str) -> Record | None:
        return self.store.record(object, id)

    def active_runs(self, object: str, id: str) -> list[Run]:
        return self.store.active_runs(object, id)

    def run(self, run_id: str) -> Run | None:
        return self.store.run(run_id)

    def timers_of(self, run_id: str) -> list[Timer]:
        return self.store.timers_of(run_id)

    def allocation(self, rule: str) -> Mapping[str, Any]:
        return self.store.allocation(rule)

    def open_owned(self, object: str, users: Sequence[str], final: Collection[tuple[str, str]]) -> dict[str, int]:
        return self.store.open_owned(object, users, final)

    def records_of(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Record]:
        return self.store.records_of(keys)

    def active_runs_of(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], list[Run]]:
        return self.store.active_runs_of(keys)

    # ---- ChangeQueue
    def append_changes(self, changes: Sequence[NewChange], inline: InlineRun | None = None) -> list[AppendResult]:
        return self.store.append_changes(changes, inline)

    def claim_changes(self, limit: int, owner: str, now: datetime, lease_seconds: float) -> list[StoredChange]:
        return self.store.claim_changes(limit, owner, now, lease_seconds)

    def claim_due_timers(self, now: datetime, limit: int, owner: str, lease_seconds: float) -> list[Timer]:
        return self.store.claim_due_timers(now, limit, owner, lease_seconds)

    def commit_batch(self, items: Sequence[Processed], now: datetime, *, owner: str | None = None) -> None:
        self.store.commit_batch(items, now, owner=owner)

    def change(self, seq: int) -> StoredChange | None:
        return self.store.change(seq)

    def open_changes(self, object: str, id: str) -> list[StoredChange]:
        return self.store.open_changes(object, id)

    # ---- Outbox
    def claim_outbox(
        self, now: datetime, limit: int, owner: str, lease_seconds: float, skip_channels: Sequence[str] = ()
    ) -> list[OutboxRow]:
        return self.store.claim_outbox(now, limit, owner, lease_seconds, skip_channels)

    def release_outbox(self, row_ids: Sequence[int], now: datetime, *, owner: str | None = None) -> None:
        self.store.release_outbox(row_ids, now, owner=owner)

    def mark_sent(self, row_id: int, now: datetime) -> None:
        self.store.mark_sent(row_id, now)

    def mark_sent_many(self, row_ids: Sequence[int], now: datetime, *, owner: str | None = None) -> list[int]:
        return self.store.mark_sent_many(row_ids, now, owner=owner)

    def mark_failed(
        self, row_id: int, error: str, next_attempt_at: datetime | None, now: datetime, *, owner: str | None = None
    ) -> bool:
        return self.store.mark_failed(row_id, error, next_attempt_at, now, owner=owner)

    def retry_outbox(self, row_id: int, now: datetime) -> bool:
        return self.store.retry_outbox(row_id, now)

    def cancel_outbox(self, row_id: int, now: datetime) -> bool:
        return self.store.cancel_outbox(row_id, now)

    def hold_outbox_many(
        self, holds: Sequence[tuple[int, datetime, str]], now: datetime, *, owner: str | None = None
    ) -> list[int]:
        return self.store.hold_outbox_many(holds, now, owner=owner)

    def release_held(self, channels: Sequence[str], reason_prefix: str, now: datetime) -> int:
        return self.store.release_held(channels, reason_prefix, now)

    def shift_outbox(self, seconds: float, now: datetime) -> int:
        return self.store.shift_outbox(seconds, now)

    def clamp_retries(self, longest: float, now: datetime) -> int:
        return self.store.clamp_retries(longest, now)

    def sent_counts(self, channel: str, since: datetime, recipients: Sequence[str] = ()) -> tuple[int, dict[str, int]]:
        return self.store.sent_counts(channel, since, recipients)

    # ---- CareLedger
    def care_records(
        self, object: str, field: str, month_days: Sequence[int], on_dates: Sequence[str] = ()
    ) -> list[Record]:
        return self.store.care_records(object, field, month_days, on_dates)

    def record_ids(self, object: str, after: str = "", limit: int = 1000) -> list[str]:
        return self.store.record_ids(object, after, limit)

    def care_undated(self, object: str, field: str) -> tuple[int, int]:
        return self.store.care_undated(object, field)

    def pin_care_day(self, process: str, day: str, version: str) -> str:
        return self.store.pin_care_day(process, day, version)

    def claim_occurrence(self, process: str, object: str, id: str, occurrence: str, now: datetime) -> bool:
        return self.store.claim_occurrence(process, object, id, occurrence, now)

    def claim_occurrences(self, wanted: Sequence[CareOccurrence], owner: str, now: datetime) -> list[CareOccurrence]:
        return self.store.claim_occurrences(wanted, owner, now)

    def reclaim_occurrences(self, owner: str, now: datetime, lease_seconds: float, limit: int) -> list[CareOccurrence]:
        return self.store.reclaim_occurrences(owner, now, lease_seconds, limit)

    def commit_care(self, items: Sequence[tuple[CareOccurrence, Processed]], owner: str, now: datetime) -> int:
        return self.store.commit_care(items, owner, now)

    def insert_care(self, items: Sequence[tuple[CareOccurrence, Processed]], owner: str, now: datetime) -> bool:
        return self.store.insert_care(items, owner, now)

    def care_done(self, keys: Sequence[tuple[str, str, str, str]]) -> set[tuple[str, str, str, str]]:
        return self.store.care_done(keys)

    def care_summary(self, process: str) -> CareSummary:
        return self.store.care_summary(process)

    # ---- Deployments
    def save_version(self, version: ConfigVersion) -> None:
        self.store.save_version(version)

    def current_version(self) -> ConfigVersion | None:
        return self.store.current_version()

    def versions(self, limit: int = 50) -> list[ConfigVersion]:
        return self.store.versions(limit)

    def version(self, id: str) -> ConfigVersion | None:
        return self.store.version(id)

    def deploy_version(
        self,
        version: ConfigVersion,
        expected_current: str | None,
        cancel_runs: Sequence[str] = (),
        now: datetime | None = None,
    ) -> bool:
        return self.store.deploy_version(version, expected_current, cancel_runs, now)

    def versions_in_use(self, since_day: str) -> set[str]:
        return self.store.versions_in_use(since_day)

    def stage_counts(self) -> dict[tuple[str, str, str], int]:
        return self.store.stage_counts()

    def pending_work(self) -> list[tuple[Run, int]]:
        return self.store.pending_work()

    def care_claims_since(self, since: datetime) -> dict[str, int]:
        return self.store.care_claims_since(since)

    # ---- Leases
    def extend_leases(
        self,
        owner: str,
        until: datetime,
        *,
        change_seqs: Sequence[int] = (),
        timer_ids: Sequence[str] = (),
        outbox_ids: Sequence[int] = (),
    ) -> int:
        return self.store.extend_leases(
            owner, until, change_seqs=change_seqs, timer_ids=timer_ids, outbox_ids=outbox_ids
        )

    def expire_leases(self, now: datetime, owner: str | None = None) -> int:
        return self.store.expire_leases(now, owner)

    def fail_exhausted_changes(self, now: datetime, max_attempts: int) -> list[StoredChange]:
        return self.store.fail_exhausted_changes(now, max_attempts)

    def fail_exhausted_timers(self, now: datetime, max_attempts: int) -> list[Timer]:
        return self.store.fail_exhausted_timers(now, max_attempts)

    # ---- SourceCursors
    def claim_source(self, source: str, owner: str, now: datetime, lease_seconds: float) -> dict[str, Any] | None:
        return self.store.claim_source(source, owner, now, lease_seconds)

    def save_source(
        self,
        source: str,
        state: Mapping[str, Any],
        hashes: Mapping[str, str | None],
        owner: str,
        now: datetime,
        lease_seconds: float,
    ) -> None:
        self.store.save_source(source, state, hashes, owner, now, lease_seconds)

    def source_hashes(self, source: str, keys: Sequence[str]) -> dict[str, str]:
        return self.store.source_hashes(source, keys)

    def source_keys(self, source: str) -> set[str]:
        return self.store.source_keys(source)

    def queue_outbox(self, effects: Sequence[Effect], now: datetime) -> list[str]:
        return self.store.queue_outbox(effects, now)

    # ---- ChannelTokens
    def channel_token(self, channel: str) -> ChannelToken | None:
        return self.store.channel_token(channel)

    def swap_channel_token(self, channel: str, expected_refresh: str | None, token: ChannelToken) -> bool:
        return self.store.swap_channel_token(channel, expected_refresh, token)

    # ---- Inspection
    def list_records(
        self, object: str, stage: str = "", limit: int = 100, after: str = "", deleted: bool = False
    ) -> list[Record]:
        return self.store.list_records(object, stage, limit, after, deleted)

    def deleted_records(
        self, object: str, after: str = "", limit: int = 100, stage: str = ""
    ) -> list[tuple[Record, datetime | None]]:
        return self.store.deleted_records(object, after, limit, stage)

    def purge_deleted(self, before: datetime, limit: int = 1000) -> int:
        return self.store.purge_deleted(before, limit)

    def purge(self, kind: PurgeKind, before: datetime, limit: int = 1000) -> int:
        return self.store.purge(kind, before, limit)

    def purgeable(self, kind: PurgeKind, before: datetime) -> int:
        return self.store.purgeable(kind, before)

    def reclaim_space(self, pages: int = 2048) -> int:
        return self.store.reclaim_space(pages)

    def list_runs(self, limit: int = 50, status: str = "", object: str = "", record_id: str = "") -> list[Run]:
        return self.store.list_runs(limit, status, object, record_id)

    def list_outbox(self, limit: int = 50, status: str = "") -> list[OutboxRow]:
        return self.store.list_outbox(limit, status)

    def outbox_row(self, row_id: int) -> OutboxRow | None:
        return self.store.outbox_row(row_id)

    def counts(self) -> Mapping[str, int]:
        return self.store.counts()

    def queue_counts(self) -> dict[str, Any]:
        return self.store.queue_counts()

    def changes_after(self, seq: int, limit: int = 1000) -> list[StoredChange]:
        return self.store.changes_after(seq, limit)

    def outbox_between(self, since: datetime, until: datetime) -> list[OutboxRow]:
        return self.store.outbox_between(since, until)

    def runs_page(self, filter: RunFilter, before: tuple[int, str] | None = None, limit: int = 50) -> list[Run]:
        return self.store.runs_page(filter, before, limit)

    def outbox_page(self, filter: OutboxFilter, before: int | None = None, limit: int = 50) -> list[OutboxRow]:
        return self.store.outbox_page(filter, before, limit)

    def stage_totals(
        self, object: str, pipeline: str, sum_field: str = "", owner: str = "", q: str = ""
    ) -> dict[str, tuple[int, float]]:
        return self.store.stage_totals(object, pipeline, sum_field, owner, q)

    def stage_records(
        self, object: str, pipeline: str, stage: str, *, after: str = "", limit: int = 20, owner: str = "", q: str = ""
    ) -> list[tuple[Record, datetime | None]]:
        return self.store.stage_records(object, pipeline, stage, after=after, limit=limit, owner=owner, q=q)

    def active_counts(self, prefix: str) -> dict[tuple[str, str], int]:
        return self.store.active_counts(prefix)

    def versions_page(self, before: tuple[datetime, str] | None = None, limit: int = 50) -> list[ConfigVersion]:
        return self.store.versions_page(before, limit)

    def record_changes(self, object: str, id: str, limit: int = 1000) -> list[StoredChange]:
        return self.store.record_changes(object, id, limit)

    def notes(self, object: str, record_id: str, limit: int = 100) -> list[Note]:
        return self.store.notes(object, record_id, limit)

    def stage_entries(self, object: str, record_id: str, limit: int = 1000) -> list[StageEntry]:
        return self.store.stage_entries(object, record_id, limit)

    # ---- Store
    def kept_connection(self) -> AbstractContextManager[None]:
        return self.store.kept_connection()

    def close(self) -> None:
        self.store.close()
