"""``Outbox.queue_outbox``: a message a sender hands on (a ZNS fallback) is queued once per key."""

from __future__ import annotations

from flowctl.ports import Store
from tests.store.contract import T0, effect


def test_a_handed_on_message_is_queued_once_and_claimable(store: Store) -> None:
    fallback = effect("run1:sms:fallback", text="Chuc mung sinh nhat")
    assert store.queue_outbox([fallback], T0) == ["run1:sms:fallback"]
    assert store.queue_outbox([fallback, effect("other")], T0) == ["other"]  # the first is stored already
    claimed = store.claim_outbox(T0, 10, "w1", 60)
    assert [row.key for row in claimed] == ["run1:sms:fallback", "other"]
    assert claimed[0].payload["text"] == "Chuc mung sinh nhat" and claimed[0].status == "sending"
    assert store.queue_outbox([fallback], T0) == []
