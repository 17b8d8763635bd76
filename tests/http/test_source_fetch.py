"""A webhook Source's fetch against a local portal that follows Bitrix24's REST contract
(``tests/channels/b24_rest_server.py``): the answer, rate limits and timeouts retried, permanent
errors not, events queued as pending fetches, and a change mapped from the complete record."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from http_support import SECRET, MakeApi

from flowctl.channels.base import PermanentFailure, TemporaryFailure
from flowctl.runtime.api.handlers import openapi
from flowctl.runtime.daemon.fetching import FetchSender, fetch_senders
from flowctl.sources.errors import Invalid, PayloadTooLarge
from flowctl.sources.fetch import Fetcher, FetchFailed, masked, pending_fetches
from flowctl.sources.webhooks import WebhookSource
from flowctl.spec import model as m
from flowctl.spec.config import load_bundle
from tests.channels.b24_rest_server import TOKEN, Portal, b24_portal

DEAL = {"TITLE": "Sofa for Lan", "OPPORTUNITY": "15000000.00", "CURRENCY_ID": "VND", "STAGE_ID": "NEW"}
EVENT = {"event": "ONCRMDEALUPDATE", "data": {"FIELDS": {"ID": "42"}}, "ts": "1733300000"}


@pytest.fixture
def portal() -> Iterator[Portal]:
    with b24_portal() as state:
        state.deals["42"] = dict(DEAL)
        state.contacts["7"] = {"NAME": "Lan", "LAST_NAME": "Nguyen", "PHONE": [{"VALUE": "+84912345678"}]}
        yield state


def fetcher(
    portal: Portal, method: str = "crm.deal.get", *, http: str = "POST", timeout: float = 5, retries: int = 3
) -> Fetcher:
    spec = m.SourceFetch(
        url="${B24_WEBHOOK_URL}" + method + ".json",
        method="GET" if http == "GET" else "POST",
        params={"id": "{{ payload.data.FIELDS.ID }}"},
        timeout=m.Duration(text=f"{timeout}s", value=timedelta(seconds=timeout)),
        retries=retries,
    )
    return Fetcher("b24", spec, {"B24_WEBHOOK_URL": portal.webhook}, backoff=0.01)


def fetch(f: Fetcher, event: Any = EVENT) -> Any:
    return asyncio.run(f.fetch(f.params({"payload": event, "headers": {}})))


@pytest.mark.parametrize("http", ["POST", "GET"])
def test_the_full_record_is_read_by_post_or_get(portal: Portal, http: str) -> None:
    answer = fetch(fetcher(portal, http=http))
    assert answer["result"] == {"ID": "42", **DEAL} and "time" in answer
    assert portal.calls == [(http, "crm.deal.get", {"id": "42"})]


def test_a_contact_is_read_the_same_way(portal: Portal) -> None:
    answer = fetch(fetcher(portal, "crm.contact.get"), {"data": {"FIELDS": {"ID": "7"}}})
    assert answer["result"]["NAME"] == "Lan"


def test_rate_limit_answers_are_retried_until_the_record_comes(portal: Portal) -> None:
    portal.trouble = ["limit", "limit"]
    assert fetch(fetcher(portal))["result"]["TITLE"] == "Sofa for Lan"
    assert len(portal.calls) == 3


def test_a_timeout_is_retried(portal: Portal) -> None:
    portal.trouble, portal.slow_seconds = ["slow"], 3.0
    assert fetch(fetcher(portal, timeout=1))["result"]["ID"] == "42"
    assert len(portal.calls) == 2


def test_after_the_retries_the_failure_is_transient_and_never_names_the_token(portal: Portal) -> None:
    portal.trouble = ["limit", "down", "limit"]
    with pytest.raises(FetchFailed) as failed:
        fetch(fetcher(portal, retries=2))
    assert failed.value.transient and len(portal.calls) == 3
    assert "QUERY_LIMIT_EXCEEDED" in failed.value.message and TOKEN not in failed.value.message


@pytest.mark.parametrize(
    ("event", "method", "said"),
    [
        ({"data": {"FIELDS": {"ID": "404"}}}, "crm.deal.get", "Not found"),
        ({"data": {"FIELDS": {"ID": "x"}}}, "crm.deal.get", "ID is not defined or invalid."),
        (EVENT, "crm.deal.gett", "ERROR_METHOD_NOT_FOUND"),
    ],
)
def test_permanent_errors_are_not_retried(portal: Portal, event: Any, method: str, said: str) -> None:
    with pytest.raises(FetchFailed) as failed:
        fetch(fetcher(portal, method), event)
    assert not failed.value.transient and said in failed.value.message
    assert len(portal.calls) == 1


def test_a_wrong_token_is_permanent(portal: Portal) -> None:
    f = fetcher(portal)
    f.url = f.url.replace(TOKEN, "revoked")
    with pytest.raises(FetchFailed) as failed:
        fetch(f)
    assert not failed.value.transient and "NO_AUTH_FOUND" in failed.value.message


def test_a_refused_connection_is_transient(portal: Portal) -> None:
    f = fetcher(portal, retries=1)
    f.url = "http://127.0.0.1:9/rest/1/x/crm.deal.get.json"
    with pytest.raises(FetchFailed) as failed:
        fetch(f)
    assert failed.value.transient


def test_masked_urls_keep_the_host_and_method_only() -> None:
    assert masked(f"https://shop.bitrix24.vn/rest/1/{TOKEN}/crm.deal.get.json") == (
        "https://shop.bitrix24.vn/…/crm.deal.get.json"
    )


def test_each_event_becomes_a_pending_fetch_keyed_by_its_event_id(portal: Portal) -> None:
    f = fetcher(portal)
    [effect] = pending_fetches(f, [EVENT], {"x-b24": "1"}, lambda context: "ev-1")
    assert (effect.channel, effect.key, effect.action, effect.record_id) == (
        "fetch:b24",
        "fetch:b24:ev-1",
        "fetch",
        "42",
    )
    assert effect.params == {"params": {"id": "42"}, "payload": EVENT, "headers": {"x-b24": "1"}}
    unkeyed = pending_fetches(f, [EVENT, EVENT], {}, lambda context: "")
    assert len({e.key for e in unkeyed}) == 2
    with pytest.raises(Invalid):
        pending_fetches(f, [{"data": "no fields"}], {}, lambda context: "")
    with pytest.raises(PayloadTooLarge):
        pending_fetches(f, [EVENT] * 51, {}, lambda context: "")
    assert portal.calls == []  # nothing is fetched in the request


SOURCE = """\
apiVersion: flowctl/v1
kind: ObjectType
metadata: {name: deal}
spec:
  fields: {title: {type: string}, amount: {type: money}}
---
apiVersion: flowctl/v1
kind: Source
metadata: {name: b24}
spec:
  type: webhook
  path: /hooks/b24
  fetch:
    url: "${B24_WEBHOOK_URL}crm.deal.get.json"
    method: GET
    params: {id: "{{ payload.data.FIELDS.ID }}"}
    timeout: 7s
    retries: 2
  map:
    object: deal
    id: "{{ fetched.result.ID }}"
    fields: {title: "{{ fetched.result.TITLE }}", amount: "{{ fetched.result.OPPORTUNITY | float }}"}
"""


def test_the_builder_reads_fetch_and_the_map_reads_fetched(tmp_path: Path, portal: Portal) -> None:
    (tmp_path / "flowctl.yaml").write_text(SOURCE)
    loaded = load_bundle(tmp_path)
    assert not loaded.errors, loaded.errors
    source = loaded.bundle.sources["b24"]
    assert source.fetch is not None and source.fetch.method == "GET" and source.fetch.retries == 2
    hook = WebhookSource(source, {"B24_WEBHOOK_URL": portal.webhook})
    assert hook.fetcher is not None and hook.fetcher.timeout == 7
    fetched = [fetch(hook.fetcher)]
    [change] = hook.changes(EVENT, {}, datetime(2026, 12, 4, tzinfo=UTC), loaded.bundle.objects, fetched)
    assert (change.object, change.record_id) == ("deal", "42")
    assert change.fields == {"title": "Sofa for Lan", "amount": 15000000}


B24_SOURCE = """\
apiVersion: flowctl/v1
kind: Source
metadata: {name: b24}
spec:
  type: webhook
  path: /hooks/b24
  auth: none
  fetch:
    url: "${B24_WEBHOOK_URL}crm.deal.get.json"
    params: {id: "{{ payload.data.FIELDS.ID }}"}
  map:
    object: deal
    id: "{{ fetched.result.ID }}"
    fields: {title: "{{ fetched.result.TITLE }}", amount: "{{ fetched.result.OPPORTUNITY | float }}"}
"""


def test_the_hook_queues_a_fetch_and_the_sender_stores_the_full_record_once(make_api: MakeApi, portal: Portal) -> None:
    env = {"HOOK_SECRET": SECRET, "B24_WEBHOOK_URL": portal.webhook}
    api = make_api(env=env, **{"sources/b24.yaml": B24_SOURCE})
    answer = api.client.post("/hooks/b24", json=EVENT)
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["changes"] == [] and len(body["fetches"]) == 1 and body["duplicate"] is False
    jsonschema.validate(body, {**openapi()["components"]["schemas"]["HookAccepted"]})
    assert portal.calls == [] and api.changes() == []  # nothing fetched or stored in the request

    [row] = api.svc.store.list_outbox()
    assert (row.channel, row.action, row.record_id) == ("fetch:b24", "fetch", "42")
    sender = fetch_senders(api.svc.bundle, env, api.svc.ingest, api.svc.clock)["fetch:b24"]
    assert isinstance(sender, FetchSender) and sender.max_attempts == 4 and sender.timeout == 10
    assert "stored as change 1" in sender.send(row).detail
    sender.send(row)  # a crash before the row was marked sent: the resend stores nothing new
    [change] = api.changes()
    assert (change.record_id, change.idempotency_key) == ("42", row.key)
    assert change.fields == {"title": "Sofa for Lan", "amount": 15000000}

    portal.trouble = ["limit"]
    with pytest.raises(TemporaryFailure, match="QUERY_LIMIT_EXCEEDED"):
        sender.send(row)
    gone = replace(row, payload={**row.payload, "params": {"id": "404"}})
    with pytest.raises(PermanentFailure, match="Not found"):
        sender.send(gone)
    portal.deals["43"] = {"OPPORTUNITY": "1.00"}  # no TITLE: the record does not fit the object type
    with pytest.raises(PermanentFailure, match="title"):
        sender.send(replace(row, payload={**row.payload, "params": {"id": "43"}}))
    assert len(api.changes()) == 1


def test_an_unset_webhook_url_holds_the_fetches_and_an_invalid_param_is_a_422(
    make_api: MakeApi, portal: Portal
) -> None:
    api = make_api(env={"HOOK_SECRET": SECRET}, **{"sources/b24.yaml": B24_SOURCE})
    assert api.client.post("/hooks/b24", json=EVENT).status_code == 202  # accepted, kept
    sender = fetch_senders(api.svc.bundle, {}, api.svc.ingest, api.svc.clock)["fetch:b24"]
    assert getattr(sender, "unconfigured", "") == (
        "channel fetch:b24: B24_WEBHOOK_URL is not set (the fetch url of webhook source b24)"
    )
    refused = api.client.post("/hooks/b24", json={"data": "no fields"})
    assert refused.status_code == 422 and "fetch.params.id" in refused.json()["error"]["message"]
