"""``Deployments`` on SQL: config versions, and what a deploy or reload must know of running state.

Deploys take turns (an advisory lock on PostgreSQL, the write transaction on SQLite): each checks
the current version, then replaces it and cancels the runs the plan named, in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa

from flowctl.engine.state import ACTIVE, Run
from flowctl.ports import ConfigVersion
from flowctl.store import rows
from flowctl.store.sql.base import PG_DEPLOY_LOCK, SqlBase, chunks
from flowctl.store.tables import care_days, care_occurrences, config_versions, records, runs, timers


class SqlDeployments(SqlBase):
    """Config versions and what a deploy must know."""

    def save_version(self, version: ConfigVersion) -> None:
        """Store ``version`` and make it the current one."""
        with self._write_lock, self._writer.begin() as conn:
            conn.execute(sa.update(config_versions).where(config_versions.c.current.is_(True)).values(current=False))
            conn.execute(self._upsert_version, rows.version_row(version))

    def current_version(self) -> ConfigVersion | None:
        with self.engine.connect() as conn:
            row = conn.execute(config_versions.select().where(config_versions.c.current.is_(True))).first()
        return rows.version_from(row._mapping) if row else None

    def versions(self, limit: int = 50) -> list[ConfigVersion]:
        """Stored versions, newest applied first (the current one first among equal times)."""
        v = config_versions.c
        stmt = config_versions.select().order_by(v.applied_at.desc(), v.current.desc(), v.id).limit(limit)
        with self.engine.connect() as conn:
            return [rows.version_from(row._mapping) for row in conn.execute(stmt)]

    def version(self, id: str) -> ConfigVersion | None:
        with self.engine.connect() as conn:
            row = conn.execute(config_versions.select().where(config_versions.c.id == id)).first()
        return rows.version_from(row._mapping) if row else None

    def deploy_version(
        self,
        version: ConfigVersion,
        expected_current: str | None,
        cancel_runs: Sequence[str] = (),
        now: datetime | None = None,
    ) -> bool:
        """Make ``version`` current and cancel ``cancel_runs`` (and their timers), in one
        transaction, only if the current version is still ``expected_current`` (None: none yet).
        False, with nothing written, when another deploy got there first."""
        stamp = (now or version.applied_at).isoformat()
        v = config_versions.c
        with self._writer.begin() as conn:
            if self._postgres:
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(PG_DEPLOY_LOCK)))
            current = conn.execute(sa.select(v.id).where(v.current.is_(True))).scalar()
            if current != expected_current:
                return False
            conn.execute(sa.update(config_versions).where(v.current.is_(True)).values(current=False))
            conn.execute(self._upsert_version, rows.version_row(version))
            for part in chunks(list(cancel_runs)):
                conn.execute(sa.delete(timers).where(timers.c.run_id.in_(part)))
                conn.execute(
                    sa.update(runs)
                    .where(runs.c.id.in_(part), runs.c.status.in_(ACTIVE))
                    .values(status="cancelled", waiting_for="", updated_at=stamp)
                )
        return True

    def versions_in_use(self, since_day: str) -> set[str]:
        """Config versions of active runs and of care pins from ``since_day`` on (a reload keeps their
        engines). One DISTINCT over the active runs: a reload is rare, the runs table may be large."""
        r, d = runs.c, care_days.c
        with self.engine.connect() as conn:
            found = set(conn.execute(sa.select(r.config_version).where(r.status.in_(ACTIVE)).distinct()).scalars())
            found |= set(conn.execute(sa.select(d.config_version).where(d.day >= since_day).distinct()).scalars())
        return found

    def stage_counts(self) -> dict[tuple[str, str, str], int]:
        """Live records per (object, pipeline, stage)."""
        r = records.c
        stmt = (
            sa.select(r.object, r.pipeline, r.stage, sa.func.count())
            .where(r.deleted.is_(False))
            .group_by(r.object, r.pipeline, r.stage)
        )
        with self.engine.connect() as conn:
            return {(o, p, s): n for o, p, s, n in conn.execute(stmt)}

    def pending_work(self) -> list[tuple[Run, int]]:
        """Every active run (without its trace) and how many timers it holds, oldest first."""
        r = runs.c
        columns = [col for col in runs.c if col.name != "trace"]
        stmt = sa.select(*columns).where(r.status.in_(ACTIVE)).order_by(r.seq, r.id)
        counts = sa.select(timers.c.run_id, sa.func.count()).group_by(timers.c.run_id)
        with self.engine.connect() as conn:
            held: dict[str, int] = dict(conn.execute(counts).all())
            return [(rows.run_from({**row._mapping, "trace": []}), held.get(row.id, 0)) for row in conn.execute(stmt)]

    def care_claims_since(self, since: datetime) -> dict[str, int]:
        """Care occurrences claimed at or after ``since``, per process."""
        o = care_occurrences.c
        stmt = sa.select(o.process, sa.func.count()).where(o.claimed_at >= since).group_by(o.process)
        with self.engine.connect() as conn:
            return dict(conn.execute(stmt).all())
