"""An index of timers by record: ``timers (object, record_id)``.

The hot path (a one-change write run in its own commit, ``SqlChangeQueue._run_inline``) asks,
under SQLite's write lock, whether a worker holds a timer of the record now. Without this index
SQLite answered through ``ix_timers_due``, reading every timer already due: after a restart that
found 100,000 delayed messages due, each such write read all of them (16 ms a write).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_timers_object_record_id"), "timers", ["object", "record_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_timers_object_record_id"), table_name="timers")
