"""The ``SourceCursors`` contract: one poller per source at a time, its cursor and row hashes kept."""

from __future__ import annotations

from datetime import timedelta

from flowctl.ports import Store
from tests.store.contract import T0


def test_one_replica_polls_a_source_and_its_cursor_survives(store: Store) -> None:
    assert store.claim_source("crm", "a", T0, 60) == {}
    store.save_source("crm", {"position": [1, "x"]}, {"k1": "h1", "k2": "h2"}, "a", T0, 60)
    assert store.claim_source("crm", "b", T0 + timedelta(seconds=30), 60) is None  # a's lease runs
    assert store.claim_source("crm", "a", T0 + timedelta(seconds=30), 60) == {"position": [1, "x"]}
    store.save_source("crm", {"position": [2, "y"]}, {}, "a", T0 + timedelta(seconds=30), 60)
    assert store.claim_source("crm", "b", T0 + timedelta(seconds=80), 60) is None  # the save renewed the lease
    assert store.claim_source("crm", "b", T0 + timedelta(seconds=91), 60) == {"position": [2, "y"]}
    assert store.claim_source("crm", "a", T0 + timedelta(seconds=92), 60) is None  # b's now
    assert store.claim_source("erp", "a", T0, 60) == {}  # each source has its own lease


def test_row_hashes_are_kept_per_key_and_a_gone_row_is_forgotten(store: Store) -> None:
    store.claim_source("crm", "a", T0, 60)
    store.save_source("crm", {}, {"k1": "h1", "k2": "h2"}, "a", T0, 60)
    assert store.source_hashes("crm", ["k1", "k3"]) == {"k1": "h1"}
    assert store.source_keys("crm") == {"k1", "k2"}
    store.save_source("crm", {}, {"k1": None, "k2": "h2b", "k3": "h3"}, "a", T0, 60)
    assert store.source_hashes("crm", ["k1", "k2", "k3"]) == {"k2": "h2b", "k3": "h3"}
    assert store.source_keys("crm") == {"k2", "k3"}
    assert store.source_keys("erp") == set() and store.source_hashes("erp", ["k2"]) == {}
    assert store.source_hashes("crm", []) == {}
