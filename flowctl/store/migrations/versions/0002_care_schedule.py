"""Care schedules: the month-day index of record dates, occurrence leases and the day's config pin.

``record_dates`` (object, record_id, field → month_day, value) is indexed on (object, field,
month_day) so a daily tick reads only the records whose date matches. ``care_occurrences`` gains
``owner`` (who holds the claim) and ``config_version`` (the version that ran it) and an index to
find claims whose lease ran out; ``care_days`` pins (process, local day) to the config version
of the day's first run. Existing records are indexed here.

Revision ID: 0002
Revises: 0001
Create Date: 2026-03-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from flowctl.store.dates import date_rows

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "record_dates",
        sa.Column("object", sa.String(), nullable=False),
        sa.Column("record_id", sa.String(), nullable=False),
        sa.Column("field", sa.String(), nullable=False),
        sa.Column("month_day", sa.Integer(), nullable=False),
        sa.Column("value", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("object", "record_id", "field", name=op.f("pk_record_dates")),
    )
    op.create_index(op.f("ix_record_dates_object_field_month_day"), "record_dates", ["object", "field", "month_day"])
    op.create_table(
        "care_days",
        sa.Column("process", sa.String(), nullable=False),
        sa.Column("day", sa.String(), nullable=False),
        sa.Column("config_version", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("process", "day", name=op.f("pk_care_days")),
    )
    with op.batch_alter_table("care_occurrences") as batch:
        batch.add_column(sa.Column("owner", sa.String(), nullable=True))
        batch.add_column(sa.Column("config_version", sa.String(), nullable=True))
    op.create_index(op.f("ix_care_occurrences_status_claimed_at"), "care_occurrences", ["status", "claimed_at"])
    _index_existing_records()


def _index_existing_records() -> None:
    conn = op.get_bind()
    records = sa.table(
        "records",
        sa.column("object"),
        sa.column("id"),
        sa.column("fields", sa.JSON()),
        sa.column("deleted", sa.Boolean()),
    )
    dates = sa.table(
        "record_dates",
        sa.column("object"),
        sa.column("record_id"),
        sa.column("field"),
        sa.column("month_day"),
        sa.column("value"),
    )
    result = conn.execute(sa.select(records).execution_options(yield_per=5000))  # the statement, not the connection
    for part in result.partitions():
        found = date_rows(dict(row._mapping) for row in part)
        if found:
            conn.execute(dates.insert(), found)


def downgrade() -> None:
    op.drop_index(op.f("ix_care_occurrences_status_claimed_at"), table_name="care_occurrences")
    with op.batch_alter_table("care_occurrences") as batch:
        batch.drop_column("config_version")
        batch.drop_column("owner")
    op.drop_table("care_days")
    op.drop_index(op.f("ix_record_dates_object_field_month_day"), table_name="record_dates")
    op.drop_table("record_dates")
