"""Deployed versions keep their files: ``config_versions.files`` (path -> text).

``flowctl apply`` stores every file of the configuration so that ``flowctl rollback`` and the
daemon's reload can rebuild a version exactly, without the git checkout it came from. Versions
stored before this revision have no files (NULL) and cannot be rolled back to.

Revision ID: 0003
Revises: 0002
Create Date: 2026-03-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("config_versions") as batch:
        batch.add_column(sa.Column("files", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("config_versions") as batch:
        batch.drop_column("files")
