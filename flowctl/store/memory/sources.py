"""``SourceCursors`` in memory: a polling source's state under a lease, a hash per copied row."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from flowctl.store.memory.base import MemoryBase


class MemorySourceCursors(MemoryBase):
    """Polling sources: a cursor under a lease, row hashes."""

    def claim_source(self, source: str, owner: str, now: datetime, lease_seconds: float) -> dict[str, Any] | None:
        with self._lock:
            sources = self._sources
            state = dict(sources.get(source, {}))
            holder, held_until = state.get("owner"), state.get("lease_until")
            if holder and holder != owner and held_until and datetime.fromisoformat(held_until) > now:
                return None
            state.update(owner=owner, lease_until=(now + timedelta(seconds=lease_seconds)).isoformat())
            sources[source] = json.loads(json.dumps(state))
        state.pop("owner", None)
        state.pop("lease_until", None)
        return state

    def save_source(
        self,
        source: str,
        state: Mapping[str, Any],
        hashes: Mapping[str, str | None],
        owner: str,
        now: datetime,
        lease_seconds: float,
    ) -> None:
        until = (now + timedelta(seconds=lease_seconds)).isoformat()
        encoded = json.loads(json.dumps({**state, "owner": owner, "lease_until": until}))
        with self._lock:
            self._sources[source] = encoded
            copies = self._source_rows
            for key, value in hashes.items():
                if value is None:
                    copies.pop((source, key), None)
                else:
                    copies[(source, key)] = value

    def source_hashes(self, source: str, keys: Sequence[str]) -> dict[str, str]:
        with self._lock:
            copies = self._source_rows
            return {key: copies[(source, key)] for key in keys if (source, key) in copies}

    def source_keys(self, source: str) -> set[str]:
        with self._lock:
            return {key for (src, key) in self._source_rows if src == source}
