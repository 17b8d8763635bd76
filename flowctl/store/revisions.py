"""Which schema revision a database is at, and who may move it there.

The rule, so that a daemon never changes the schema under a replica still running the old code:

- an empty database (no Alembic revision) is created at this release's head by whoever opens it
  (``flowctl run`` on a fresh clone, ``flowctl apply``, a test's fresh store);
- a database at an older revision is migrated only by ``flowctl db upgrade``; anything else that
  opens it (the daemon, every other command) raises :class:`SchemaBehind`, which names both
  revisions and what to run, because this release's SQL is written for the head's tables;
- a revision this release's scripts do not know was written by a newer flowctl:
  :class:`SchemaAhead`, with both versions, never a guess at what its tables mean.

``lease_holders`` names the replicas that hold live leases (``host:pid``), so ``flowctl db
upgrade`` can refuse while one still works. A replica that holds no lease at that moment (idle)
is not seen: the operator stops the old replicas first (docs/operations.md, "Upgrading").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache

import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from flowctl.store import migrate
from flowctl.store.tables import changes, outbox, timers

UPGRADE_HINT = "stop the old replicas and run `flowctl db upgrade`"


class SchemaMismatch(Exception):
    """The database's schema revision is not the one this flowctl runs on."""

    def __init__(self, message: str, *, current: str, head: str) -> None:
        super().__init__(message)
        self.current = current
        self.head = head


class SchemaBehind(SchemaMismatch):
    """The database was written by an older release: ``flowctl db upgrade`` moves it to head."""

    def __init__(self, current: str, head: str) -> None:
        super().__init__(
            f"the database is at revision {current}, this flowctl needs {head}: {UPGRADE_HINT}",
            current=current,
            head=head,
        )


class SchemaAhead(SchemaMismatch):
    """The database was upgraded by a newer release than this one."""

    def __init__(self, current: str, head: str) -> None:
        super().__init__(
            f"the database is at revision {current}, newer than this flowctl knows (its newest is {head}): "
            "run the flowctl release that upgraded it (or a newer one); downgrading the schema is not supported",
            current=current,
            head=head,
        )


@dataclass(frozen=True, slots=True)
class Revisions:
    """Where a database's schema is (``current``, None when empty) against this release's ``head``."""

    current: str | None
    head: str

    @property
    def state(self) -> str:
        """``empty``, ``current``, ``behind`` (``flowctl db upgrade`` is due) or ``ahead`` (unknown)."""
        if self.current is None:
            return "empty"
        if self.current == self.head:
            return "current"
        return "behind" if self.current in known_revisions() else "ahead"

    def check(self) -> None:
        """Raise :class:`SchemaBehind` or :class:`SchemaAhead` unless the schema is empty or current."""
        if self.current is None or self.state == "current":
            return
        if self.state == "behind":
            raise SchemaBehind(self.current, self.head)
        raise SchemaAhead(self.current, self.head)


@cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(migrate.alembic_config())


def head() -> str:
    """This release's newest revision."""
    revision = _scripts().get_current_head()
    assert revision is not None, "flowctl ships its migrations"
    return revision


def previous_head() -> str | None:
    """The revision before head: the schema the previous release left (None if head is the first)."""
    script = _scripts().get_revision(head())
    assert script is not None
    down = script.down_revision
    assert down is None or isinstance(down, str), "the migrations form one line"
    return down


@cache
def known_revisions() -> frozenset[str]:
    return frozenset(script.revision for script in _scripts().walk_revisions())


def _current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def revisions(engine: Engine) -> Revisions:
    """Read the database's revision (a read; nothing is created)."""
    with engine.connect() as conn:
        return Revisions(current=_current(conn), head=head())


def ensure_current(engine: Engine) -> Revisions:
    """What opening a store does: create an empty database at head, refuse any other revision
    than head. Two processes creating one empty database take turns (the migration lock)."""
    found = revisions(engine)
    if found.current is None:
        with migrate.migrating(engine) as conn:
            found = Revisions(current=_current(conn), head=found.head)
            if found.current is None:  # still empty now that we hold the lock
                migrate.run_upgrade(conn, "head")
                return found
    found.check()
    return found


def upgrade(engine: Engine) -> Revisions:
    """``flowctl db upgrade``: migrate to head (from empty or any older revision); the revisions
    found before. Raises :class:`SchemaAhead` on a revision this release does not know."""
    with migrate.migrating(engine) as conn:
        found = Revisions(current=_current(conn), head=head())
        if found.state == "ahead":
            found.check()
        if found.state != "current":
            migrate.run_upgrade(conn, "head")
    return found


def lease_holders(engine: Engine, now: datetime) -> list[str]:
    """The owners (``host:pid``) of leases still running at ``now`` on changes, timers or outbox
    rows: the replicas working on this database. Their columns exist since the first revision."""
    holders: set[str] = set()
    with engine.connect() as conn:
        for table in (changes, timers, outbox):
            owner, until = table.c.lease_owner, table.c.lease_until
            query = sa.select(owner).where(until > now, owner.is_not(None), owner != "").distinct()
            holders.update(conn.execute(query).scalars())
    return sorted(holders)
