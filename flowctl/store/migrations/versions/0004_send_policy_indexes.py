"""Indexes for sending policies: rows sent since a time, per channel and per channel and recipient.

The deliverer counts what a channel sent today (daily budget) and what each recipient got today
(per-recipient cap) before every round; these indexes keep both counts proportional to today's
rows of that channel, not to the whole outbox.

Revision ID: 0004
Revises: 0003
Create Date: 2026-03-03
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_outbox_channel_sent_at"), "outbox", ["channel", "sent_at"])
    op.create_index(op.f("ix_outbox_channel_recipient_sent_at"), "outbox", ["channel", "recipient", "sent_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_outbox_channel_recipient_sent_at"), table_name="outbox")
    op.drop_index(op.f("ix_outbox_channel_sent_at"), table_name="outbox")
