"""Notes on a record's timeline: one row per ``add_note`` effect.

The worker writes them in the transaction that commits the step, keyed by the effect's key so a
step committed twice (a retry after a lost commit answer) writes its note once. A record's notes
are read newest first from the (object, record_id, id) index.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from flowctl.store.tables import BigId, UtcDateTime

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notes",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.Column("object", sa.String(), nullable=False),
        sa.Column("record_id", sa.String(), nullable=False),
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notes")),
        sa.UniqueConstraint("key", name=op.f("uq_notes_key")),
    )
    op.create_index(op.f("ix_notes_object_record_id_id"), "notes", ["object", "record_id", "id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_notes_object_record_id_id"), table_name="notes")
    op.drop_table("notes")
