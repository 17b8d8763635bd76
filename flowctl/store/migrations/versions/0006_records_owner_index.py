"""An index on records (object, owner): ``least_loaded`` counts the open records each user owns.

The count runs when an allocation rule decides; with the index it reads the rows of the rule's
users of one object, not every record of the object.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_records_object_owner"), "records", ["object", "owner"])


def downgrade() -> None:
    op.drop_index(op.f("ix_records_object_owner"), table_name="records")
