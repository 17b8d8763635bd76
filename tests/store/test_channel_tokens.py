"""The ``ChannelTokens`` contract: the newest token pair per channel, replaced by compare-and-set,
so of two replicas that refreshed from one refresh token only the first saves its pair."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

from flowctl.ports import ChannelToken, Store
from tests.store.contract import T0


def pair(access: str, refresh: str, origin: str = "o1", minutes: int = 60) -> ChannelToken:
    return ChannelToken(
        access_token=access,
        refresh_token=refresh,
        expires_at=T0 + timedelta(minutes=minutes),
        origin=origin,
        updated_at=T0,
    )


def test_the_first_pair_is_stored_once_and_read_back(store: Store) -> None:
    assert store.channel_token("zalo") is None
    assert store.swap_channel_token("zalo", None, pair("a1", "r1"))
    assert not store.swap_channel_token("zalo", None, pair("a1x", "r1x"))  # someone stored one first
    assert store.channel_token("zalo") == pair("a1", "r1")
    assert store.channel_token("other") is None  # per channel


def test_a_pair_is_replaced_only_from_the_refresh_token_it_was_made_from(store: Store) -> None:
    store.swap_channel_token("zalo", None, pair("a1", "r1"))
    assert store.swap_channel_token("zalo", "r1", pair("a2", "r2", minutes=90))
    assert not store.swap_channel_token("zalo", "r1", pair("a2b", "r2b"))  # r1 is spent: the loser
    stored = store.channel_token("zalo")
    assert stored is not None and (stored.access_token, stored.refresh_token) == ("a2", "r2")
    assert stored.expires_at == T0 + timedelta(minutes=90) and stored.updated_at == T0
    no_expiry = ChannelToken(access_token="a3", refresh_token="r3", expires_at=None, origin="o2", updated_at=T0)
    assert store.swap_channel_token("zalo", "r2", no_expiry)
    assert store.channel_token("zalo") == no_expiry


def test_two_replicas_swapping_from_one_token_one_wins(open_more: Callable[[], Store]) -> None:
    first, second = open_more(), open_more()
    first.swap_channel_token("zalo", None, pair("a1", "r1"))
    results: dict[str, bool] = {}
    start = threading.Barrier(2)

    def swap(name: str, store: Store) -> None:
        start.wait()
        results[name] = store.swap_channel_token("zalo", "r1", pair(f"a-{name}", f"r-{name}"))

    threads = [threading.Thread(target=swap, args=(n, s)) for n, s in (("one", first), ("two", second))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results.values()) == [False, True]
    winner = next(name for name, won in results.items() if won)
    assert second.channel_token("zalo") == pair(f"a-{winner}", f"r-{winner}")
