"""Indexes the retention purge reads: each purge query is a range of one index, oldest first.

``changes (processed_at)``, ``runs (updated_at)``, ``outbox (status, sent_at)`` and
``outbox (status, created_at)``, ``care_occurrences (done_at)``. Without them every purge round
would read the whole table to find the few rows that just became old enough.

SQLite's ``auto_vacuum=INCREMENTAL``, which lets a purge give pages back to the file system, is
not set here: switching an existing file needs a ``VACUUM``, which rewrites the whole file and
cannot run inside the migration's transaction. New files get it when created
(``store/engines.py``); an existing one gets it from ``flowctl db vacuum`` (docs/operations.md).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    ("changes", ("processed_at",)),
    ("runs", ("updated_at",)),
    ("outbox", ("status", "sent_at")),
    ("outbox", ("status", "created_at")),
    ("care_occurrences", ("done_at",)),
)


def upgrade() -> None:
    for table, columns in INDEXES:
        op.create_index(op.f(f"ix_{table}_{'_'.join(columns)}"), table, list(columns))


def downgrade() -> None:
    for table, columns in INDEXES:
        op.drop_index(op.f(f"ix_{table}_{'_'.join(columns)}"), table_name=table)
