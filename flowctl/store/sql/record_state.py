"""``RecordState`` on SQL: what the engine reads, by primary key or the owner index.

Reads run outside any write transaction (SQLite: autocommit, one snapshot per statement), so a
worker's reads never queue for the write lock; the inline run's reads are the exception: they
run in the append's transaction that runs them (``_reading``). The batch forms read a chunk of
keys per query; a batch of one reads by the key, through the driver (``_dicts``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from flowctl.engine.state import Record, Run, Timer
from flowctl.store import rows
from flowctl.store.sql.base import SqlBase, by_object


class SqlRecordState(SqlBase):
    """Records, runs, timers and allocation state, as the engine reads them."""

    def record(self, object: str, id: str) -> Record | None:
        with self._reading() as conn:
            found = self._dicts(conn, self._get_record, {"object": object, "id": id})
        return rows.record_from(found[0]) if found else None

    def active_runs(self, object: str, id: str) -> list[Run]:
        with self._reading() as conn:
            found = self._dicts(conn, self._get_active_runs, {"object": object, "id": id})
        return [rows.run_from(row) for row in found]

    def run(self, run_id: str) -> Run | None:
        with self._reading() as conn:
            found = self._dicts(conn, self._get_run, {"id": run_id})
        return rows.run_from(found[0]) if found else None

    def timers_of(self, run_id: str) -> list[Timer]:
        with self._reading() as conn:
            return [rows.timer_from(row) for row in self._dicts(conn, self._get_timers, {"run_id": run_id})]

    def allocation(self, rule: str) -> Mapping[str, Any]:
        with self._reading() as conn:
            state = conn.execute(self._get_allocation, {"rule": rule}).scalar()
        return state if state is not None else {}

    def open_owned(self, object: str, users: Sequence[str], final: Collection[tuple[str, str]]) -> dict[str, int]:
        counts = dict.fromkeys(users, 0)
        if not counts:
            return counts
        with self._reading() as conn:
            for owner, pipeline, stage, count in conn.execute(self._owned, {"object": object, "users": list(counts)}):
                if (pipeline, stage) not in final:
                    counts[owner] += count
        return counts

    def records_of(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Record]:
        """The stored records among ``keys`` (missing ones are absent from the answer)."""
        out: dict[tuple[str, str], Record] = {}
        with self._reading() as conn:
            for object_, ids in by_object(keys):
                found = (
                    self._dicts(conn, self._get_record, {"object": object_, "id": ids[0]})
                    if len(ids) == 1
                    else [row._mapping for row in conn.execute(self._records_in, {"object": object_, "ids": list(ids)})]
                )
                for row in found:
                    record = rows.record_from(row)
                    out[record.key] = record
        return out

    def active_runs_of(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], list[Run]]:
        """The active runs of every record in ``keys``, each list as ``active_runs`` orders it."""
        out: dict[tuple[str, str], list[Run]] = {key: [] for key in keys}
        with self._reading() as conn:
            for object_, ids in by_object(keys):
                some = {"object": object_, "ids": list(ids)}
                found = (
                    self._dicts(conn, self._get_active_runs, {"object": object_, "id": ids[0]})
                    if len(ids) == 1
                    else [row._mapping for row in conn.execute(self._active_runs_in, some)]
                )
                for row in found:
                    run = rows.run_from(row)
                    out[(run.object, run.record_id)].append(run)
        return out
