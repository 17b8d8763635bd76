"""Indexes for the read API and the console: every list is a keyset page read in index order.

Runs are listed newest first by (seq, id), filtered by record, status or automation; outbox rows
newest first by id, filtered by record, channel or status; a board's column is the live records
of one (object, pipeline, stage) by id. With an index ending in the order of each list, a page
reads as many entries as it shows, whether there are a hundred rows or a million.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("runs", ("object", "record_id", "seq", "id")),
    ("runs", ("status", "seq", "id")),
    ("runs", ("automation", "seq", "id")),
    ("runs", ("seq", "id")),
    ("outbox", ("object", "record_id", "id")),
    ("outbox", ("channel", "id")),
    ("outbox", ("status", "id")),
    ("records", ("object", "pipeline", "stage", "deleted", "id")),
)


def _name(table: str, columns: Sequence[str]) -> str:
    return f"ix_{table}_{'_'.join(columns)}"


def upgrade() -> None:
    for table, columns in INDEXES:
        op.create_index(op.f(_name(table, columns)), table, list(columns))


def downgrade() -> None:
    for table, columns in reversed(INDEXES):
        op.drop_index(op.f(_name(table, columns)), table_name=table)
