"""The ``zalo_zns`` channel against a local server that follows Zalo's documented contract:
expiry, refresh with rotation (a spent refresh token is refused), a phone without Zalo."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flowctl.channels import build_senders
from flowctl.channels.base import PermanentFailure, TemporaryFailure
from flowctl.channels.env import unset_env
from flowctl.channels.zalo import ZaloSender, normalise_phone
from flowctl.ports import OutboxRow, Store
from flowctl.spec.model import Bundle, Channel, ChannelFallback, Config, Metadata, frozen_map
from flowctl.store import open_store
from flowctl.testing import FrozenClock
from tests.channels.zalo_server import APP_ID, FIRST_REFRESH, SECRET_KEY, ZaloServer, zalo_server

T0 = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)
MakeChannel = Callable[..., Channel]
MakeRow = Callable[..., OutboxRow]


@pytest.fixture
def server() -> Iterator[ZaloServer]:
    with zalo_server() as state:
        yield state


@pytest.fixture
def store() -> Store:
    return open_store("memory://")


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


def env(server: ZaloServer, refresh: str = FIRST_REFRESH) -> dict[str, str]:
    return {"ZALO_APP_ID": APP_ID, "ZALO_SECRET_KEY": SECRET_KEY, "ZALO_REFRESH_TOKEN": refresh, "ZALO": server.url}


def zalo(make_channel: MakeChannel, **values: Any) -> Channel:
    return make_channel(
        "zalo",
        type="zalo_zns",
        app_id="${ZALO_APP_ID}",
        secret_key="${ZALO_SECRET_KEY}",
        refresh_token="${ZALO_REFRESH_TOKEN}",
        url="${ZALO}/message/template",
        token_url="${ZALO}/v4/oa/access_token",
        timeout="5s",
        **values,
    )


def zns_row(make_row: MakeRow, to: str = "0912 345 678", key: str = "run-1:zns:0", **values: Any) -> OutboxRow:
    return make_row(
        "send_sms",
        "zalo",
        key=key,
        to=to,
        template_id="231564",
        template_data={"customer_name": "Nguyễn Thị Lan", "birthday": "04/12"},
        **values,
    )


@pytest.fixture
def sender(server: ZaloServer, store: Store, clock: FrozenClock, make_channel: MakeChannel) -> Iterator[ZaloSender]:
    made = ZaloSender(zalo(make_channel), env(server), store, clock)
    yield made
    made.close()


@pytest.mark.parametrize(
    ("written", "sent"),
    [
        ("0912 345 678", "84912345678"),
        ("+84 912-345-678", "84912345678"),
        ("84912345678", "84912345678"),
        ("912345678", "84912345678"),
        ("(+84) 912.345.678", "84912345678"),
        ("+1 415 555 2671", "14155552671"),  # not 8414155552671
        ("01686123456", ""),  # retired in 2018: no plan has it
        ("123456", ""),
        ("", ""),
        ("n/a", ""),
    ],
)
def test_phones_are_normalised_to_84(written: str, sent: str) -> None:
    assert normalise_phone(written) == sent


def test_the_first_send_refreshes_from_the_configured_token_and_keeps_the_pair(
    server: ZaloServer, store: Store, sender: ZaloSender, make_row: MakeRow
) -> None:
    receipt = sender.send(zns_row(make_row))
    assert receipt.detail == "ZNS msg_id msg-1"
    assert server.refreshes == [FIRST_REFRESH]
    assert server.sent == [
        {
            "phone": "84912345678",
            "template_id": "231564",
            "template_data": {"customer_name": "Nguyễn Thị Lan", "birthday": "04/12"},
            "tracking_id": "run-1:zns:0",
        }
    ]
    stored = store.channel_token("zalo")
    assert stored is not None
    assert (stored.access_token, stored.refresh_token) == ("at-1-access", "rt-1-refresh")
    assert stored.expires_at == T0 + timedelta(seconds=90000)
    sender.send(zns_row(make_row, key="run-2:zns:0"))
    assert server.refreshes == [FIRST_REFRESH]  # the stored access token is still good


def test_an_access_token_about_to_expire_is_refreshed_first_with_the_newest_refresh_token(
    server: ZaloServer, store: Store, sender: ZaloSender, clock: FrozenClock, make_row: MakeRow
) -> None:
    sender.send(zns_row(make_row))
    clock.set(T0 + timedelta(seconds=90000) - timedelta(minutes=4))  # inside the 5-minute margin
    sender.send(zns_row(make_row, key="run-2:zns:0"))
    assert server.refreshes == [FIRST_REFRESH, "rt-1-refresh"]
    stored = store.channel_token("zalo")
    assert stored is not None and stored.refresh_token == "rt-2-refresh"
    assert len(server.sent) == 2 and not server.refused


def test_an_access_token_zalo_refuses_is_refreshed_and_the_message_sent_again(
    server: ZaloServer, sender: ZaloSender, make_row: MakeRow
) -> None:
    sender.send(zns_row(make_row))
    server.expire()  # -124 on the next send although our clock says the token is good
    assert sender.send(zns_row(make_row, key="run-2:zns:0")).detail == "ZNS msg_id msg-2"
    assert server.refreshes == [FIRST_REFRESH, "rt-1-refresh"]


def test_a_restarted_sender_refreshes_with_the_stored_token_not_the_spent_configured_one(
    server: ZaloServer,
    store: Store,
    sender: ZaloSender,
    clock: FrozenClock,
    make_channel: MakeChannel,
    make_row: MakeRow,
) -> None:
    sender.send(zns_row(make_row))
    server.expire()
    again = ZaloSender(zalo(make_channel), env(server), store, clock)  # a restart, or a second replica
    try:
        again.send(zns_row(make_row, key="run-2:zns:0"))
    finally:
        again.close()
    assert server.refreshes == [FIRST_REFRESH, "rt-1-refresh"] and not server.refused


def test_a_replica_that_lost_the_refresh_race_uses_the_winners_pair(
    server: ZaloServer, store: Store, clock: FrozenClock, make_channel: MakeChannel, make_row: MakeRow
) -> None:
    first = ZaloSender(zalo(make_channel), env(server), store, clock)
    second = ZaloSender(zalo(make_channel), env(server), store, clock)
    try:
        first.send(zns_row(make_row))
        server.expire()
        stale = store.channel_token("zalo")
        assert stale is not None
        first.send(zns_row(make_row, key="run-2:zns:0"))  # rotates rt-1 -> rt-2
        # the second replica read rt-1 before the rotation and presents it: refused, spent
        assert second._refresh(stale.refresh_token, stale.origin, clock.now()) is None
        second.send(zns_row(make_row, key="run-3:zns:0"))  # reads the newest pair from the store
    finally:
        first.close()
        second.close()
    assert server.refused == ["rt-1-refresh"] and len(server.sent) == 3


def test_a_refused_refresh_token_with_nothing_newer_is_a_temporary_failure_that_says_what_to_do(
    server: ZaloServer, sender: ZaloSender, make_row: MakeRow
) -> None:
    server.refresh_token = "rt-someone-else"  # ours was spent by another client
    sender.rotation_grace = 0.0  # nobody will save a newer pair: do not wait for one
    with pytest.raises(TemporaryFailure, match="refused the refresh token") as caught:
        sender.send(zns_row(make_row))
    assert FIRST_REFRESH not in str(caught.value) and not server.sent


def test_a_new_configured_refresh_token_starts_the_chain_over(
    server: ZaloServer,
    store: Store,
    sender: ZaloSender,
    clock: FrozenClock,
    make_channel: MakeChannel,
    make_row: MakeRow,
) -> None:
    sender.send(zns_row(make_row))
    server.refresh_token, server.access_token = "rt-reauthorised", ""  # the operator authorised the OA again
    again = ZaloSender(zalo(make_channel), env(server, refresh="rt-reauthorised"), store, clock)
    try:
        again.send(zns_row(make_row, key="run-2:zns:0"))
    finally:
        again.close()
    stored = store.channel_token("zalo")
    assert server.refreshes[-1] == "rt-reauthorised" and stored is not None and stored.refresh_token == "rt-2-refresh"


def test_a_phone_without_zalo_is_a_permanent_failure_and_the_fallback_is_queued_once(
    server: ZaloServer, store: Store, sender: ZaloSender, make_row: MakeRow
) -> None:
    server.no_zalo.add("84987654321")
    fallback = {"channel": "sms", "template": "sms-sinh-nhat", "text": "Chuc mung sinh nhat Lan!"}
    row = zns_row(make_row, to="0987654321", fallback=fallback)
    with pytest.raises(PermanentFailure, match=r"-118.*queued on sms as the fallback"):
        sender.send(row)
    with pytest.raises(PermanentFailure, match="already queued on sms"):  # a resend never queues twice
        sender.send(row)
    [queued] = store.claim_outbox(T0, 10, "w", 60)
    assert (queued.key, queued.channel, queued.action) == ("run-1:zns:0:fallback", "sms", "send_sms")
    assert queued.payload["to"] == "0987654321" and queued.payload["text"] == "Chuc mung sinh nhat Lan!"
    assert queued.payload["segments"] == 1 and queued.payload["fallback_of"] == "run-1:zns:0"


def test_a_phone_no_plan_has_fails_for_good_naming_it_and_never_reaches_zalo(
    server: ZaloServer, sender: ZaloSender, make_row: MakeRow
) -> None:
    with pytest.raises(PermanentFailure, match=r"'01686123456' is not a phone number any numbering plan has"):
        sender.send(zns_row(make_row, to="01686123456"))
    assert server.sent == []


def test_a_phone_without_zalo_and_no_fallback_is_dead_lettered(
    server: ZaloServer, store: Store, sender: ZaloSender, make_row: MakeRow
) -> None:
    server.no_zalo.add("84987654321")
    with pytest.raises(PermanentFailure, match="no fallback"):
        sender.send(zns_row(make_row, to="0987654321"))
    assert store.claim_outbox(T0, 10, "w", 60) == []


@pytest.mark.parametrize(
    ("code", "failure"),
    [
        (-108, PermanentFailure),  # phone number invalid
        (-109, PermanentFailure),  # template id invalid
        (-112, PermanentFailure),  # template data invalid
        (-100, TemporaryFailure),  # unknown error: try again later
        (-115, TemporaryFailure),  # out of quota
        (-999, TemporaryFailure),  # not documented: retried, within max_attempts
    ],
)
def test_zalo_error_codes_map_to_temporary_or_permanent(
    server: ZaloServer, sender: ZaloSender, make_row: MakeRow, code: int, failure: type[Exception]
) -> None:
    server.answer_code = code
    with pytest.raises(failure, match=f"ZNS error {code}"):
        sender.send(zns_row(make_row))


def test_no_phone_or_no_template_id_is_permanent(sender: ZaloSender, make_row: MakeRow) -> None:
    with pytest.raises(PermanentFailure, match="no phone"):
        sender.send(zns_row(make_row, to=""))
    with pytest.raises(PermanentFailure, match="no template_id"):
        sender.send(make_row("send_sms", "zalo", to="0912345678"))


def test_an_unreachable_zalo_is_temporary(
    store: Store, clock: FrozenClock, make_channel: MakeChannel, make_row: MakeRow
) -> None:
    with zalo_server() as gone:
        url = gone.url
    made = ZaloSender(zalo(make_channel), {**env(gone), "ZALO": url}, store, clock)
    try:
        with pytest.raises(TemporaryFailure, match="token refresh"):
            made.send(zns_row(make_row))
    finally:
        made.close()


def test_build_senders_makes_a_zalo_sender_only_with_a_store(
    server: ZaloServer, store: Store, clock: FrozenClock, make_channel: MakeChannel
) -> None:
    channel = zalo(make_channel, fallback=ChannelFallback(channel="sms", template="t"))
    bundle = Bundle(root=Path(), config=Config(metadata=Metadata(name="c")), channels=frozen_map({"zalo": channel}))
    daemon = build_senders(bundle, env(server), store=store, clock=clock)
    assert isinstance(daemon["zalo"], ZaloSender)
    daemon["zalo"].close()  # type: ignore[attr-defined]
    outside = build_senders(bundle, env(server))
    assert "sends only from the daemon" in outside["zalo"].unconfigured  # type: ignore[attr-defined]


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_two_replicas_refreshing_at_once_spend_the_refresh_token_once(
    backend: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    server: ZaloServer,
    clock: FrozenClock,
    make_channel: MakeChannel,
    make_row: MakeRow,
) -> None:
    url = f"sqlite:///{tmp_path / 'z.db'}" if backend == "sqlite" else str(request.getfixturevalue("pg_url"))
    stores = [open_store(url), open_store(url)]  # one per replica, as two daemons would open it
    replicas = [ZaloSender(zalo(make_channel), env(server), store, clock) for store in stores]
    try:
        replicas[0].send(zns_row(make_row))
        server.expire()  # both replicas now find the stored access token refused
        start = threading.Barrier(2)
        outcomes: list[str] = []

        def send(replica: ZaloSender, key: str) -> None:
            start.wait()
            try:
                replica.send(zns_row(make_row, key=key))
            except TemporaryFailure:  # the deliverer retries it: at most once here
                replica.send(zns_row(make_row, key=key))
                outcomes.append("retried")
            else:
                outcomes.append("sent")

        threads = [threading.Thread(target=send, args=(r, f"run-{i}:zns:0")) for i, r in enumerate(replicas, 2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stored = stores[1].channel_token("zalo")
    finally:
        for replica in replicas:
            replica.close()
        for store in stores:
            store.close()
    assert len(outcomes) == 2 and len(server.sent) == 3
    assert server.issued == 2  # the first refresh, and exactly one for the race: rt-1 was spent once
    assert server.refused in ([], ["rt-1-refresh"])  # the loser presented rt-1 and took the winner's pair
    assert stored is not None and stored.refresh_token == server.refresh_token == "rt-2-refresh"


def test_an_unset_zalo_variable_holds_the_channel_and_is_named(
    server: ZaloServer, store: Store, clock: FrozenClock, make_channel: MakeChannel
) -> None:
    bundle = Bundle(
        root=Path(), config=Config(metadata=Metadata(name="c")), channels=frozen_map({"zalo": zalo(make_channel)})
    )
    missing = {k: v for k, v in env(server).items() if k != "ZALO_REFRESH_TOKEN"}
    assert [(u.owner, u.variable) for u in unset_env(bundle, missing)] == [("channel zalo", "ZALO_REFRESH_TOKEN")]
    held = build_senders(bundle, missing, store=store, clock=clock)["zalo"]
    assert "ZALO_REFRESH_TOKEN is not set" in held.unconfigured  # type: ignore[attr-defined]
