"""``ChannelTokens`` in memory: each channel's newest token pair, replaced by compare-and-set."""

from __future__ import annotations

from flowctl.ports import ChannelToken
from flowctl.store.memory.base import MemoryBase


class MemoryChannelTokens(MemoryBase):
    """Rotating OAuth tokens per channel."""

    def channel_token(self, channel: str) -> ChannelToken | None:
        with self._lock:
            return self._channel_tokens.get(channel)

    def swap_channel_token(self, channel: str, expected_refresh: str | None, token: ChannelToken) -> bool:
        with self._lock:
            stored = self._channel_tokens.get(channel)
            if (stored.refresh_token if stored else None) != expected_refresh:
                return False
            self._channel_tokens[channel] = token
            return True
