"""``ChannelTokens`` on SQL: each channel's newest token pair in ``channel_tokens``.

A swap is one statement guarded by the refresh token it expects (an ``UPDATE … WHERE
refresh_token = :expected``, or an insert that does nothing on conflict for the first pair), so
two replicas that refreshed from the same token cannot both save: the row count says who won.
"""

from __future__ import annotations

import sqlalchemy as sa

from flowctl.ports import ChannelToken
from flowctl.store.sql.base import SqlBase
from flowctl.store.tables import channel_tokens


class SqlChannelTokens(SqlBase):
    """Rotating OAuth tokens per channel."""

    def channel_token(self, channel: str) -> ChannelToken | None:
        t = channel_tokens.c
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(t.access_token, t.refresh_token, t.expires_at, t.origin, t.updated_at).where(
                    t.channel == channel
                )
            ).first()
        if row is None:
            return None
        return ChannelToken(
            access_token=row.access_token,
            refresh_token=row.refresh_token,
            expires_at=row.expires_at,
            origin=row.origin,
            updated_at=row.updated_at,
        )

    def swap_channel_token(self, channel: str, expected_refresh: str | None, token: ChannelToken) -> bool:
        t = channel_tokens.c
        values = {
            "access_token": token.access_token,
            "refresh_token": token.refresh_token,
            "expires_at": token.expires_at,
            "origin": token.origin,
            "updated_at": token.updated_at,
        }
        with self._write_lock, self._writer.begin() as conn:
            if expected_refresh is None:
                # RETURNING says whether the row went in (psycopg reports no rowcount for this INSERT)
                insert = self._insert_for(channel_tokens).on_conflict_do_nothing().returning(t.channel)
                return conn.execute(insert, {"channel": channel, **values}).first() is not None
            update = sa.update(channel_tokens).where(t.channel == channel, t.refresh_token == expected_refresh)
            return bool(conn.execute(update.values(**values)).rowcount == 1)
