"""A record's stage history, kept as it happens: one row per stage a record entered.

Rebuilding it from the record's writes missed every move made by a trigger, a rule or an action
(they are not writes of their own) and the first stage of a record created without one. The
worker writes the rows in the transaction that commits the step; a record's history is read
oldest first from the (object, record_id, id) index. Records written before this revision have
no rows: their timeline shows their current stage without a time.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from flowctl.store.tables import BigId, UtcDateTime

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stage_entries",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("object", sa.String(), nullable=False),
        sa.Column("record_id", sa.String(), nullable=False),
        sa.Column("pipeline", sa.String(), nullable=False),
        sa.Column("stage", sa.String(), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("key", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stage_entries")),
    )
    op.create_index(op.f("ix_stage_entries_object_record_id_id"), "stage_entries", ["object", "record_id", "id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_stage_entries_object_record_id_id"), table_name="stage_entries")
    op.drop_table("stage_entries")
