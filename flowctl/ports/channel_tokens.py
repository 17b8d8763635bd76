"""The ``ChannelTokens`` role: the newest OAuth tokens of a channel that rotates them (Zalo ZNS).

Zalo answers every refresh with a new access token *and* a new refresh token, and the old refresh
token is spent. A sender that kept its tokens in memory would, after a restart, refresh with the
token from the config, long spent; two replicas refreshing at once would spend each other's. So
the newest pair lives in the store, and it is replaced by compare-and-set on the refresh token it
was made from: of two replicas that refreshed from the same token, one wins and the other reads
the winner's pair instead of saving its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ChannelToken:
    """A channel's token pair. ``origin`` names the configured refresh token the chain of
    rotations started from (a digest, never the token), so a new one set by the operator is
    noticed; ``expires_at`` is when the access token runs out (None: unknown)."""

    access_token: str
    refresh_token: str
    expires_at: datetime | None
    origin: str
    updated_at: datetime


class ChannelTokens(Protocol):
    def channel_token(self, channel: str) -> ChannelToken | None:
        """The newest token pair stored for ``channel``; None before its first refresh."""
        ...

    def swap_channel_token(self, channel: str, expected_refresh: str | None, token: ChannelToken) -> bool:
        """Store ``token`` only if the stored refresh token is still ``expected_refresh`` (None: no
        pair stored yet), in one transaction; False, nothing written, when another writer got there
        first (read theirs with :meth:`channel_token`)."""
        ...
