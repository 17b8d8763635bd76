"""The ``bitrix24`` channel against a local portal that follows Bitrix24's documented REST contract:
the call and its answer, the rate limit retried, other errors dead-lettered, the token masked."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from flowctl.channels.base import PermanentFailure, TemporaryFailure
from flowctl.channels.bitrix24 import Bitrix24Sender
from flowctl.ports import OutboxRow
from flowctl.spec.model import Channel
from tests.channels.bitrix24_server import TOKEN, Bitrix24Server, bitrix24_server

MakeChannel = Callable[..., Channel]
MakeRow = Callable[..., OutboxRow]


@pytest.fixture
def portal() -> Iterator[Bitrix24Server]:
    with bitrix24_server() as state:
        state.deals["7"] = {"TITLE": "Sofa", "STAGE_ID": "NEW"}
        yield state


@pytest.fixture
def sender(portal: Bitrix24Server, make_channel: MakeChannel) -> Iterator[Bitrix24Sender]:
    channel = make_channel("b24", type="bitrix24", url="${B24_WEBHOOK_URL}", timeout="5s")
    sender = Bitrix24Sender(channel, {"B24_WEBHOOK_URL": portal.webhook})
    yield sender
    sender.close()


def call(make_row: MakeRow, method: str, params: dict[str, Any]) -> OutboxRow:
    return make_row(action="write_back", channel="b24", key="run-1:3:wb", method=method, params=params)


def test_a_deal_update_reaches_the_portal(sender: Bitrix24Sender, portal: Bitrix24Server, make_row: MakeRow) -> None:
    receipt = sender.send(call(make_row, "crm.deal.update", {"id": "7", "fields": {"STAGE_ID": "WON"}}))
    assert receipt.detail == "crm.deal.update → true"
    assert portal.calls == [("crm.deal.update", {"id": "7", "fields": {"STAGE_ID": "WON"}})]
    assert portal.deals["7"]["STAGE_ID"] == "WON"


def test_query_limit_exceeded_is_retried_then_succeeds(
    sender: Bitrix24Sender, portal: Bitrix24Server, make_row: MakeRow
) -> None:
    portal.busy()
    row = call(make_row, "tasks.task.add", {"fields": {"TITLE": "Call", "RESPONSIBLE_ID": "1"}})
    with pytest.raises(TemporaryFailure) as failed:
        sender.send(row)
    assert "QUERY_LIMIT_EXCEEDED" in failed.value.reason and failed.value.retry_after == 1.0
    assert sender.send(row).detail.startswith("tasks.task.add → ")
    assert portal.methods() == ["tasks.task.add"]


def test_a_refused_call_is_permanent_and_never_shows_the_token(
    sender: Bitrix24Sender, portal: Bitrix24Server, make_row: MakeRow, make_channel: MakeChannel
) -> None:
    with pytest.raises(PermanentFailure, match="ERROR_CORE: Not found"):
        sender.send(call(make_row, "crm.deal.update", {"id": "404", "fields": {"TITLE": "x"}}))
    wrong = Bitrix24Sender(make_channel("b24", type="bitrix24", url=f"{portal.url}/rest/1/wrongtoken/"), {})
    with pytest.raises(PermanentFailure, match="INVALID_CREDENTIALS"):
        wrong.send(call(make_row, "crm.deal.update", {"id": "7", "fields": {}}))
    wrong.close()
    with pytest.raises(PermanentFailure) as unknown:
        sender.send(call(make_row, "crm.deal.frobnicate", {"fields": {}}))
    assert "ERROR_METHOD_NOT_FOUND" in unknown.value.reason and TOKEN not in unknown.value.reason


def test_an_unreachable_portal_is_retried_without_the_token(make_channel: MakeChannel, make_row: MakeRow) -> None:
    channel = make_channel("b24", type="bitrix24", url="${B24}", timeout="2s")
    sender = Bitrix24Sender(channel, {"B24": f"http://127.0.0.1:9/rest/1/{TOKEN}/"})
    with pytest.raises(TemporaryFailure) as failed:
        sender.send(call(make_row, "crm.deal.update", {"id": "7", "fields": {}}))
    assert TOKEN not in failed.value.reason
    sender.close()
