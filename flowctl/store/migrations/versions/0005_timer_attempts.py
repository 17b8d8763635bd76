"""Timers count their claims, so a timer whose firing kills every worker is given up on.

Changes and outbox rows already count attempts; a timer claimed ``max_attempts`` times whose
last lease ran out too is removed and its run marked failed instead of going round forever.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("timers") as batch:
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("timers") as batch:
        batch.drop_column("attempts")
