"""API Idempotency-Keys get their own namespace (``api/<key>``) and a fingerprint of their body.

Webhook keys are ``<source>:<event_id>``; an API write whose Idempotency-Key happened to read
``crm:evt-9`` used to swallow the later webhook event ``evt-9``. The API now stores its keys
under ``api/`` (a Source's name cannot hold '/'), and this migration moves the keys already
stored by the API there, so a client retrying across the upgrade still gets its first answer.

``changes.fingerprint`` holds the sha256 of what a keyed API write asked for: a key reused with
another body is refused (409) from it, after a restart too (the process's memory used to decide).
Changes stored before have none and answer as repeats.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_API = "source = 'api' AND idempotency_key NOT LIKE 'auto-%'"  # keys the API made up itself never come back


def upgrade() -> None:
    with op.batch_alter_table("changes") as batch:
        batch.add_column(sa.Column("fingerprint", sa.String(), nullable=True))
    op.execute(sa.text(f"UPDATE changes SET idempotency_key = 'api/' || idempotency_key WHERE {_API}"))


def downgrade() -> None:
    with op.batch_alter_table("changes") as batch:
        batch.drop_column("fingerprint")
    op.execute(
        sa.text(
            "UPDATE changes SET idempotency_key = substr(idempotency_key, 5) "
            "WHERE source = 'api' AND idempotency_key LIKE 'api/%'"
        )
    )
