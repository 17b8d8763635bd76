"""The store's roles, one Protocol each; ``Store`` is their combination."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Protocol

from flowctl.engine.state import Effect, Record, Run, StageEntry, Timer
from flowctl.ports.channel_tokens import ChannelTokens
from flowctl.ports.recycle_bin import RecycleBin
from flowctl.ports.retention import Purging
from flowctl.ports.values import (
    AppendResult,
    CareOccurrence,
    CareSummary,
    ConfigVersion,
    NewChange,
    Note,
    OutboxFilter,
    OutboxRow,
    Processed,
    RunFilter,
    StoredChange,
)


class RecordState(Protocol):
    """What the engine reads (its ``StateView``, through the worker's ``Overlay``): records, their
    runs and timers, allocation state. Reads only; each answers from committed state, fresh
    objects every call, and a missing row is ``None`` or empty, never an error."""

    def record(self, object: str, id: str) -> Record | None: ...
    def active_runs(self, object: str, id: str) -> list[Run]:
        """The record's runs that are not finished, oldest first (by seq, then id)."""
        ...

    def run(self, run_id: str) -> Run | None: ...
    def timers_of(self, run_id: str) -> list[Timer]:
        """The run's pending timers, earliest due first."""
        ...

    def allocation(self, rule: str) -> Mapping[str, Any]:
        """An allocation rule's state (round-robin position…); ``{}`` before its first use."""
        ...

    def open_owned(self, object: str, users: Sequence[str], final: Collection[tuple[str, str]]) -> dict[str, int]:
        """How many live records of ``object`` each of ``users`` owns (0 for none), leaving out
        records in the ``final`` (pipeline, stage) pairs. One aggregate query on the owner index."""
        ...

    # the same, for a whole batch at once (a worker prefetches what its batch will read)
    def records_of(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Record]:
        """The stored records among ``keys``; missing ones are absent from the answer."""
        ...

    def active_runs_of(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], list[Run]]:
        """Every key of ``keys`` with its active runs, each list ordered as ``active_runs``."""
        ...


class InlineRun(Protocol):
    """The engine run inside the transaction that stores changes (``append_changes``): a change
    of a record with nothing else open goes from request to outbox in one commit, without the
    queue's claim and second commit. The store decides which changes may go that way."""

    def now(self) -> datetime:
        """The time the batch is processed and its rows stamped with."""
        ...

    def run(self, changes: Sequence[StoredChange], now: datetime) -> list[Processed]:
        """Handle ``changes`` (seq order) as the worker would; one item per change. Only reads."""
        ...

    def committed(self, items: Sequence[Processed]) -> None:
        """After the commit of ``items`` (counts, metrics, logs)."""
        ...


class ChangeQueue(Protocol):
    """Accepted writes and due timers, waiting for a worker. ``append_changes`` stores changes
    once per idempotency key; claims are leases (``lease_seconds``, ``attempts + 1``) in seq
    order, a record's changes one at a time; ``commit_batch`` writes what the engine decided and
    finishes the inputs in one transaction (the transactional outbox), fenced by ``owner``."""

    def append_changes(self, changes: Sequence[NewChange], inline: InlineRun | None = None) -> list[AppendResult]:
        """Store ``changes`` in one transaction, one result per change in order; a key stored
        before (or earlier in the batch) is not stored again: ``duplicate``, the first seq.

        With ``inline``, the new changes of records that have no other open change and no due
        timer in a worker's hands are run by it in the same transaction and committed done with
        what it decided (``processed``); the others wait for a worker. A store may leave every
        change to the workers (the memory store does)."""
        ...

    def claim_changes(self, limit: int, owner: str, now: datetime, lease_seconds: float) -> list[StoredChange]:
        """Lease up to ``limit`` changes that may run now, in seq order: a record's change only
        with every earlier open change of it. A change whose lease ran out is claimable again."""
        ...

    def claim_due_timers(self, now: datetime, limit: int, owner: str, lease_seconds: float) -> list[Timer]:
        """Lease up to ``limit`` timers due at ``now`` (not leased by a live claim), earliest first."""
        ...

    def commit_batch(self, items: Sequence[Processed], now: datetime, *, owner: str | None = None) -> None:
        """Write the batch in one transaction. With ``owner``, only if ``owner`` still holds the
        lease of every change (with the claim's ``attempts``) and timer: else :class:`LeaseLost`,
        nothing written."""
        ...

    def change(self, seq: int) -> StoredChange | None: ...
    def open_changes(self, object: str, id: str) -> list[StoredChange]:
        """The record's changes not processed yet (pending or claimed), in seq order."""
        ...


class Outbox(Protocol):
    """Effects waiting to be sent, and the sender's leases on them. A row goes ``pending`` →
    ``sending`` (claimed, leased) → ``sent``, or ``retry``/``held`` (due again at
    ``next_attempt_at``) or ``dead``. With ``owner``, a write touches only rows that owner still
    holds (status ``sending``, its lease): rows another sender took over are left to it."""

    def claim_outbox(
        self, now: datetime, limit: int, owner: str, lease_seconds: float, skip_channels: Sequence[str] = ()
    ) -> list[OutboxRow]:
        """Lease up to ``limit`` due rows (pending; retry or held past ``next_attempt_at``;
        ``sending`` whose lease ran out), none of ``skip_channels``, by id; ``attempts + 1``."""
        ...

    def release_outbox(self, row_ids: Sequence[int], now: datetime, *, owner: str | None = None) -> None:
        """Hand claimed rows back untried, due now; the claim's attempt is undone."""
        ...

    def mark_sent(self, row_id: int, now: datetime) -> None: ...
    def mark_sent_many(self, row_ids: Sequence[int], now: datetime, *, owner: str | None = None) -> list[int]:
        """Mark rows sent; with ``owner``, only those it still holds (``sending``, its lease):
        the ids left alone are returned."""
        ...

    def mark_failed(
        self, row_id: int, error: str, next_attempt_at: datetime | None, now: datetime, *, owner: str | None = None
    ) -> bool:
        """Retry at ``next_attempt_at`` (None: ``dead``). False when ``owner`` lost the lease."""
        ...

    def retry_outbox(self, row_id: int, now: datetime) -> bool:
        """A dead, retry or held row is sent again now with a fresh attempt budget (False: not one)."""
        ...

    def cancel_outbox(self, row_id: int, now: datetime) -> bool:
        """A row not sent and not in a sender's hands (pending, retry, held, dead) is ``cancelled``:
        never sent. False when the row is missing or in another status."""
        ...

    def hold_outbox_many(
        self, holds: Sequence[tuple[int, datetime, str]], now: datetime, *, owner: str | None = None
    ) -> list[int]:
        """Hold claimed rows (``held``) until a time a sending policy allows, with a reason; a hold
        is not an attempt. Returns the ids whose lease ``owner`` had lost (left alone)."""
        ...

    def release_held(self, channels: Sequence[str], reason_prefix: str, now: datetime) -> int:
        """Held rows of ``channels`` whose reason starts with ``reason_prefix`` fall due now."""
        ...

    def shift_outbox(self, seconds: float, now: datetime) -> int:
        """The clock went back ``seconds``: waiting rows fall due that much earlier (not before now)."""
        ...

    def clamp_retries(self, longest: float, now: datetime) -> int:
        """Retries due later than any backoff (``longest`` seconds from now) fall due now."""
        ...

    def sent_counts(self, channel: str, since: datetime, recipients: Sequence[str] = ()) -> tuple[int, dict[str, int]]:
        """Rows of ``channel`` sent since ``since``: in all, and per recipient of ``recipients``."""
        ...

    def queue_outbox(self, effects: Sequence[Effect], now: datetime) -> list[str]:
        """Queue messages a sender hands on (a Zalo ZNS fallback to SMS), due now, in one
        transaction; a key queued before is not queued again. Returns the keys that went in."""
        ...


class CareLedger(Protocol):
    """Care schedules: the records due on a day (the month-day index) and the ledger of
    (process, record, occurrence) that decides what ran, once, across replicas and restarts."""

    def care_records(
        self, object: str, field: str, month_days: Sequence[int], on_dates: Sequence[str] = ()
    ) -> list[Record]:
        """Live records of ``object`` whose date ``field`` falls on one of ``month_days`` (MMDD),
        and, given ``on_dates`` (ISO), on one of those exact dates. Reads the month-day index."""
        ...

    def record_ids(self, object: str, after: str = "", limit: int = 1000) -> list[str]:
        """Ids of the live records of ``object`` after ``after``, in id order (a cron care process)."""
        ...

    def care_undated(self, object: str, field: str) -> tuple[int, int]:
        """(live records of ``object``, how many of them have no usable date in ``field``)."""
        ...

    def pin_care_day(self, process: str, day: str, version: str) -> str:
        """The config version of ``process``'s first run on local ``day``: ``version`` if none yet."""
        ...

    def claim_occurrence(self, process: str, object: str, id: str, occurrence: str, now: datetime) -> bool:
        """True the first time this occurrence is claimed, False ever after."""
        ...

    def claim_occurrences(self, wanted: Sequence[CareOccurrence], owner: str, now: datetime) -> list[CareOccurrence]:
        """Claim the ones never claimed before (one transaction); returns those won."""
        ...

    def reclaim_occurrences(self, owner: str, now: datetime, lease_seconds: float, limit: int) -> list[CareOccurrence]:
        """Take over claims whose holder did not finish within the lease (it died)."""
        ...

    def commit_care(self, items: Sequence[tuple[CareOccurrence, Processed]], owner: str, now: datetime) -> int:
        """Mark each occurrence still claimed by ``owner`` with its outcome and write its step, all in
        one transaction; an occurrence taken over by another owner is dropped with its step.
        Returns how many were committed."""
        ...

    def insert_care(self, items: Sequence[tuple[CareOccurrence, Processed]], owner: str, now: datetime) -> bool:
        """Insert each occurrence with its outcome (``status``) and write its step, all in one
        transaction; if any occurrence is in the ledger already, write nothing and return False."""
        ...

    def care_done(self, keys: Sequence[tuple[str, str, str, str]]) -> set[tuple[str, str, str, str]]:
        """Which of these (process, object, record, occurrence) keys the ledger holds, in any status."""
        ...

    def care_summary(self, process: str) -> CareSummary:
        """Occurrences of ``process`` per status, and when the last one was done."""
        ...


class Deployments(Protocol):
    """Config versions (``flowctl plan / apply / history / rollback``) and what a deploy or a
    reload must know of the running state. One version is current; ``deploy_version`` replaces
    it only if nobody else deployed meanwhile."""

    def save_version(self, version: ConfigVersion) -> None:
        """Store ``version`` and make it the current one."""
        ...

    def current_version(self) -> ConfigVersion | None: ...
    def versions(self, limit: int = 50) -> list[ConfigVersion]:
        """Stored versions, newest applied first."""
        ...

    def version(self, id: str) -> ConfigVersion | None: ...
    def deploy_version(
        self,
        version: ConfigVersion,
        expected_current: str | None,
        cancel_runs: Sequence[str] = (),
        now: datetime | None = None,
    ) -> bool:
        """Make ``version`` current and cancel ``cancel_runs`` (and their timers) in one
        transaction, only if the current version is still ``expected_current`` (None: none yet);
        False, nothing written, when another deploy got there first."""
        ...

    def versions_in_use(self, since_day: str) -> set[str]:
        """The config versions an active run started on, or a care process pinned on a local day
        from ``since_day`` (ISO) on: the engines a reload must keep."""
        ...

    def stage_counts(self) -> dict[tuple[str, str, str], int]:
        """Live records per (object, pipeline, stage)."""
        ...

    def pending_work(self) -> list[tuple[Run, int]]:
        """Every active run (without its trace) and how many timers it holds, oldest first."""
        ...

    def care_claims_since(self, since: datetime) -> dict[str, int]:
        """Care occurrences claimed at or after ``since``, per process."""
        ...


class Leases(Protocol):
    """The leases of claimed work across replicas: a heartbeat extends those in hand, a daemon
    that knows a holder is dead ends them, and work whose every claimer died is failed."""

    def extend_leases(
        self,
        owner: str,
        until: datetime,
        *,
        change_seqs: Sequence[int] = (),
        timer_ids: Sequence[str] = (),
        outbox_ids: Sequence[int] = (),
    ) -> int:
        """Push to ``until`` the leases ``owner`` still holds among these rows; how many."""
        ...

    def expire_leases(self, now: datetime, owner: str | None = None) -> int:
        """End every live lease (of ``owner``) at ``now``; attempts stay counted. How many ended."""
        ...

    def fail_exhausted_changes(self, now: datetime, max_attempts: int) -> list[StoredChange]:
        """Fail (status ``failed``, an error saying why) the changes claimed ``max_attempts`` times
        whose last lease ran out too; returns them as failed."""
        ...

    def fail_exhausted_timers(self, now: datetime, max_attempts: int) -> list[Timer]:
        """Remove the timers claimed ``max_attempts`` times whose last lease ran out, and fail
        their runs; returns the timers removed."""
        ...


class SourceCursors(Protocol):
    """What a polling source remembers between polls: its state (cursor) under a lease, so one
    replica polls it at a time, and a hash per key it copied."""

    def claim_source(self, source: str, owner: str, now: datetime, lease_seconds: float) -> dict[str, Any] | None:
        """Lease ``source`` to ``owner`` and return its saved state (``{}`` the first time); None
        while another owner's lease runs."""
        ...

    def save_source(
        self,
        source: str,
        state: Mapping[str, Any],
        hashes: Mapping[str, str | None],
        owner: str,
        now: datetime,
        lease_seconds: float,
    ) -> None:
        """Store a poll's row hashes (None: the row is gone) and state, renewing the lease."""
        ...

    def source_hashes(self, source: str, keys: Sequence[str]) -> dict[str, str]:
        """The stored hash of each of ``keys`` seen before (absent: never seen, or deleted)."""
        ...

    def source_keys(self, source: str) -> set[str]:
        """Every key of ``source`` the store holds a copy of."""
        ...


class Inspection(Protocol):
    """The read side for the CLI, ``/metrics`` and the console: listings, gauges and history.
    Reads only; never on the worker's hot path."""

    def list_records(
        self, object: str, stage: str = "", limit: int = 100, after: str = "", deleted: bool = False
    ) -> list[Record]:
        """Live records of ``object`` (in ``stage``) by id, from just after ``after``; with
        ``deleted``, the records in the recycle bin instead."""
        ...

    def list_runs(self, limit: int = 50, status: str = "", object: str = "", record_id: str = "") -> list[Run]:
        """Runs, newest first, filtered by what is given."""
        ...

    def list_outbox(self, limit: int = 50, status: str = "") -> list[OutboxRow]:
        """Outbox rows, newest first."""
        ...

    def outbox_row(self, row_id: int) -> OutboxRow | None: ...
    def counts(self) -> Mapping[str, int]:
        """Gauges: records, timers, changes and outbox rows by status, active runs by status."""
        ...

    def queue_counts(self) -> dict[str, Any]:
        """Open changes and unsent outbox rows by status, their oldest, pending timers."""
        ...

    def changes_after(self, seq: int, limit: int = 1000) -> list[StoredChange]:
        """Up to ``limit`` recorded changes with a seq above ``seq``, in seq order (replay)."""
        ...

    def outbox_between(self, since: datetime, until: datetime) -> list[OutboxRow]:
        """Outbox rows created in ``[since, until)``, oldest first (replay)."""
        ...

    # the console's pages: keyset pages (``before``/``after`` is the last item of the previous
    # page), each read from an index in the order it returns, so a page costs the same on page 1000

    def runs_page(self, filter: RunFilter, before: tuple[int, str] | None = None, limit: int = 50) -> list[Run]:
        """Runs matching ``filter``, newest first by (seq, id), strictly before ``before``."""
        ...

    def outbox_page(self, filter: OutboxFilter, before: int | None = None, limit: int = 50) -> list[OutboxRow]:
        """Outbox rows matching ``filter``, newest first by id, with an id below ``before``."""
        ...

    def stage_totals(
        self, object: str, pipeline: str, sum_field: str = "", owner: str = "", q: str = ""
    ) -> dict[str, tuple[int, float]]:
        """Live records of ``object`` in ``pipeline`` per stage: (how many, the sum of their
        ``sum_field``; a missing or non-numeric value counts 0). ``owner``/``q`` as in
        ``stage_records``. Stages without records are absent."""
        ...

    def stage_records(
        self, object: str, pipeline: str, stage: str, *, after: str = "", limit: int = 20, owner: str = "", q: str = ""
    ) -> list[tuple[Record, datetime | None]]:
        """Live records of ``object`` in ``pipeline``/``stage`` by id, from just after ``after``, each
        with when it was last written; only ``owner``'s, and only those whose id or fields (as JSON
        text) contain ``q``, in any case."""
        ...

    def active_counts(self, prefix: str) -> dict[tuple[str, str], int]:
        """Active runs (running, waiting, queued) whose automation starts with ``prefix``, per
        (automation, node): what a diagram shows waiting at each node or rule."""
        ...

    def versions_page(self, before: tuple[datetime, str] | None = None, limit: int = 50) -> list[ConfigVersion]:
        """Config versions newest applied first by (applied_at, id), strictly before ``before``."""
        ...

    def record_changes(self, object: str, id: str, limit: int = 1000) -> list[StoredChange]:
        """The record's recorded changes (every status), oldest first: its history of writes."""
        ...

    def notes(self, object: str, record_id: str, limit: int = 100) -> list[Note]:
        """The newest ``limit`` notes ``add_note`` wrote on the record, newest first."""
        ...

    def stage_entries(self, object: str, record_id: str, limit: int = 1000) -> list[StageEntry]:
        """The first ``limit`` stages the record entered, oldest first, each with when and the
        input that caused it (committed with the step that moved it, whatever moved it: a write,
        a trigger, a rule, an action). A record last written before the store kept them (schema
        revision 0009) has none for the stages it entered before."""
        ...


class WorkerStore(RecordState, ChangeQueue, Protocol):
    """What a worker needs: the state the engine reads, and the queue it claims from and commits to."""

    def outbox_page(self, filter: OutboxFilter, before: int | None = None, limit: int = 50) -> list[OutboxRow]:
        """A record's newest outbox rows (the worker reads its recent write-backs to drop a CRM's echo)."""
        ...


class Store(
    RecordState,
    ChangeQueue,
    Outbox,
    CareLedger,
    Deployments,
    Leases,
    SourceCursors,
    Inspection,
    RecycleBin,
    Purging,
    ChannelTokens,
    Protocol,
):
    """Durable state: every role at once, where the daemon is wired. Every method is one
    transaction unless it says otherwise."""

    def kept_connection(self) -> AbstractContextManager[None]:
        """Within the block, the calling thread's write transactions may reuse one connection
        instead of taking one from a pool each time: for threads that write all their lives (the
        ingest, the worker, the delivery). Nothing else changes; a store without a pool ignores it."""
        ...

    def close(self) -> None:
        """Release connections (and the SQLite write lock); the store is not used afterwards."""
        ...
