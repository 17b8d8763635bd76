"""The records and events API: 202 only after commit, 4xx with nothing stored, idempotency, auth."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from http_support import (
    CONFIG,
    OBJECTS,
    PIPELINE,
    Api,
    Background,
    FailingStore,
    FakeService,
    MakeApi,
    TestClient,
    write_config,
)

from flowctl.runtime.api.access import listen_allowed
from flowctl.runtime.api.app import create_app
from flowctl.store.memory import MemoryStore

DEAL = {"fields": {"title": "Sofa", "amount": 1500000}}


def error_of(response: Any) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    return body["error"]


# ------------------------------------------------------------------------------- accepted writes


def test_put_answers_202_after_the_change_is_stored(api: Api) -> None:
    response = api.client.put("/v1/records/deal/7", json={**DEAL, "stage": "new"})

    assert response.status_code == 202
    assert response.json() == {"accepted": True, "seq": 1, "duplicate": False}
    (change,) = api.changes()  # answered only after commit: it is already in the store
    assert (change.object, change.record_id, change.op, change.stage) == ("deal", "7", "put", "new")
    assert change.fields == DEAL["fields"]
    assert change.source == "api"


def test_a_written_record_reads_back_as_written_pending_until_processed(api: Api) -> None:
    api.client.put("/v1/records/deal/7", json=DEAL)

    pending = api.client.get("/v1/records/deal/7")  # accepted, not yet processed

    assert pending.status_code == 200
    assert pending.json() == {
        "object": "deal",
        "id": "7",
        "fields": DEAL["fields"],
        "stage": "",
        "pipeline": "",
        "owner": "",
        "version": 1,
        "pending": True,
    }
    api.process()
    record = api.client.get("/v1/records/deal/7").json()
    assert record == {
        "object": "deal",
        "id": "7",
        "fields": DEAL["fields"],
        "stage": "new",
        "pipeline": "sales",
        "owner": "",
        "version": 1,
        "pending": False,
    }


def test_a_read_shows_every_acknowledged_write_of_the_record_in_order(api: Api) -> None:
    client = api.client
    client.put("/v1/records/deal/7", json=DEAL)
    api.process()
    client.patch("/v1/records/deal/7", json={"fields": {"contract_no": "HD-1"}})
    client.post("/v1/records/deal/7/stage", json={"stage": "won"})
    client.patch("/v1/records/deal/7", json={"fields": {"amount": 2}})

    record = client.get("/v1/records/deal/7").json()

    assert record["pending"] is True and record["stage"] == "won" and record["version"] == 4
    assert record["fields"] == {**DEAL["fields"], "contract_no": "HD-1", "amount": 2}
    client.delete("/v1/records/deal/7")
    assert client.get("/v1/records/deal/7").status_code == 404  # deleted, even before it is processed
    assert client.get("/v1/records/deal/8").status_code == 404
    event = {"event": "invoice.paid", "object": "deal", "id": 9}
    client.post("/v1/events", json=event)
    assert client.get("/v1/records/deal/9").status_code == 404  # an event creates no record


RULED = PIPELINE.replace(
    "    - id: new\n",
    """    - id: new
      rules:
        - {name: stamp, action: update_fields, set: {contract_no: "HD-{{ record.id }}"}}
""",
)


def test_prefer_wait_answers_with_the_processed_record_and_the_runs_it_started(make_api: MakeApi) -> None:
    api = make_api(**{"pipelines/sales.yaml": RULED})
    with Background(api):
        response = api.client.put("/v1/records/deal/7", json=DEAL, headers={"Prefer": "wait=10"})

    assert response.status_code == 200, response.text
    assert response.headers["preference-applied"] == "wait=10"
    body = response.json()
    assert (body["accepted"], body["seq"], body["duplicate"], body["status"], body["error"]) == (
        True,
        1,
        False,
        "done",
        "",
    )
    assert body["record"]["stage"] == "new" and body["record"]["fields"]["contract_no"] == "HD-7"
    assert body["record"]["pending"] is False
    assert [(run["automation"], run["status"]) for run in body["runs"]] == [("rule:sales/new/stamp", "done")]


def test_prefer_wait_answers_202_when_the_change_is_not_processed_in_time(api: Api) -> None:
    started = time.monotonic()
    response = api.client.put("/v1/records/deal/7", json=DEAL, headers={"Prefer": "respond-async, wait=0.3"})

    assert response.status_code == 202  # nothing processes it here
    assert response.json() == {"accepted": True, "seq": 1, "duplicate": False}
    assert response.headers["preference-applied"] == "wait=0.3"
    assert time.monotonic() - started >= 0.3
    assert "preference-applied" not in api.client.put("/v1/records/deal/8", json=DEAL).headers


def test_patch_move_delete_and_event_are_stored_with_their_op(api: Api) -> None:
    client = api.client
    assert client.put("/v1/records/deal/7", json=DEAL).status_code == 202
    api.process()
    assert client.patch("/v1/records/deal/7", json={"fields": {"contract_no": "HD-1"}}).status_code == 202
    assert client.post("/v1/records/deal/7/stage", json={"stage": "won"}).status_code == 202
    event = {"event": "invoice.paid", "object": "deal", "id": 7, "data": {"amount": 10}}
    assert client.post("/v1/events", json=event).status_code == 202
    assert client.delete("/v1/records/deal/7").status_code == 202

    ops = [(c.op, c.fields, c.stage, c.event, c.data) for c in api.changes()[1:]]

    assert ops == [
        ("patch", {"contract_no": "HD-1"}, "", "", {}),
        ("move", {}, "won", "", {}),
        ("event", {}, "", "invoice.paid", {"amount": 10}),
        ("delete", {}, "", "", {}),
    ]
    api.process()
    assert client.get("/v1/records/deal/7").status_code == 404  # deleted reads as missing


def test_list_records_pages_by_id(api: Api) -> None:
    for n in range(3):
        api.client.put(f"/v1/records/deal/{n}", json=DEAL)
    api.process()

    first = api.client.get("/v1/records/deal", params={"limit": 2}).json()
    second = api.client.get("/v1/records/deal", params={"limit": 2, "after": first["next"]}).json()

    assert [r["id"] for r in first["items"]] == ["0", "1"]
    assert first["next"] == "1"
    assert [r["id"] for r in second["items"]] == ["2"]
    assert second["next"] is None
    assert api.client.get("/v1/records/deal", params={"stage": "won"}).json() == {"items": [], "next": None}


# ------------------------------------------------------------------------------- refused writes


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"fields": {"title": "Sofa"}, "stage": "documents-x"}, "unknown stage 'documents-x' for deal"),
        ({"fields": {"amount": 10}}, "field 'title' is required on deal"),
        ({"fields": {"title": "Sofa", "amount": "a lot"}}, "field 'amount' (money) must be a number, not str"),
        ({"fields": {"title": "Sofa", "colour": "red"}}, "field 'colour' is not defined on deal"),
        ({"fields": {"title": "Sofa", "quantity": 1.5}}, "field 'quantity' (integer) must be an integer"),
        ({"fields": ["title"]}, "'fields' must be an object, not array"),
        ({"fields": {"title": "Sofa"}, "stage": 3}, "'stage' must be a string, not integer"),
        ({"fields": {"title": "Sofa"}, "extra": 1}, "unknown member 'extra'"),
        ({}, "'fields' is required"),
    ],
)
def test_invalid_put_is_422_naming_the_problem_and_stores_nothing(api: Api, body: Any, named: str) -> None:
    response = api.client.put("/v1/records/deal/7", json=body)

    assert response.status_code == 422
    error = error_of(response)
    assert error["code"] == "invalid"
    assert any(named in detail for detail in error["details"]), error
    assert named in error["message"]
    assert api.changes() == []


def test_every_problem_is_listed(api: Api) -> None:
    response = api.client.put("/v1/records/deal/7", json={"fields": {"amount": "x", "colour": 1}, "stage": "zz"})

    assert len(error_of(response)["details"]) == 4


def test_patch_may_not_empty_a_required_field(api: Api) -> None:
    response = api.client.patch("/v1/records/deal/7", json={"fields": {"title": None}})

    assert response.status_code == 422
    assert "field 'title' is required on deal" in error_of(response)["message"]


def test_move_refused_by_the_stage_rules_is_422_with_the_reason(api: Api) -> None:
    api.client.put("/v1/records/deal/7", json=DEAL)
    api.process()

    response = api.client.post("/v1/records/deal/7/stage", json={"stage": "documents"})

    assert response.status_code == 422
    assert error_of(response)["message"] == (
        "cannot move deal 7 into stage 'documents': required fields contract_no, delivery_address are empty"
    )
    assert len(api.changes()) == 1


AFTERSALES = """
apiVersion: flowctl/v1
kind: Pipeline
metadata: {name: aftersales}
spec:
  object: deal
  stages:
    - id: follow_up
      rules:
        - {name: call back, action: send_sms, to: "0900000001", text: "call back about {{ record.title }}"}
    - id: warranty
      fields: [contract_no]
"""

TICKETS = """
apiVersion: flowctl/v1
kind: ObjectType
metadata: {name: ticket}
spec: {fields: {subject: {type: string}}}
---
apiVersion: flowctl/v1
kind: Pipeline
metadata: {name: support}
spec: {object: ticket, stages: [{id: open}, {id: follow_up}]}
"""
IN_SALES = {**DEAL, "stage": "new"}  # deal has two pipelines now: say which one


def test_a_move_into_another_pipeline_of_the_object_is_done(make_api: MakeApi) -> None:
    api = make_api(**{"pipelines/aftersales.yaml": AFTERSALES})
    api.client.put("/v1/records/deal/7", json=IN_SALES)
    api.process()

    response = api.client.post("/v1/records/deal/7/stage", json={"stage": "follow_up", "pipeline": "aftersales"})

    assert response.status_code == 202, response.json()
    api.process()
    record = api.client.get("/v1/records/deal/7").json()
    assert (record["pipeline"], record["stage"]) == ("aftersales", "follow_up")
    [sms] = api.svc.store.list_outbox()
    assert (sms.action, sms.payload["text"]) == ("send_sms", "call back about Sofa")


def test_a_move_queued_behind_the_creation_is_checked_by_the_worker(make_api: MakeApi) -> None:
    api = make_api(**{"pipelines/aftersales.yaml": AFTERSALES})
    api.client.put("/v1/records/deal/7", json=IN_SALES)  # not processed yet: the API cannot check the move
    api.client.put("/v1/records/deal/8", json=IN_SALES)
    assert (
        api.client.post("/v1/records/deal/7/stage", json={"stage": "follow_up", "pipeline": "aftersales"}).status_code
        == 202
    )
    assert (
        api.client.post("/v1/records/deal/8/stage", json={"stage": "warranty", "pipeline": "aftersales"}).status_code
        == 202
    )

    api.process()

    moved, refused = api.changes()[2:]
    assert (moved.status, moved.error) == ("done", "")
    assert (refused.status, refused.error) == (
        "failed",
        "cannot move deal 8 into stage 'warranty' of pipeline aftersales: required field contract_no is empty",
    )
    assert api.client.get("/v1/records/deal/7").json()["pipeline"] == "aftersales"
    assert api.client.get("/v1/records/deal/8").json()["pipeline"] == "sales"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            {"stage": "warranty", "pipeline": "aftersales"},
            "cannot move deal 7 into stage 'warranty' of pipeline aftersales: required field contract_no is empty",
        ),
        (
            {"stage": "won", "pipeline": "aftersales"},
            "pipeline aftersales has no stage 'won' (stages: follow_up, warranty)",
        ),
        (
            {"stage": "follow_up", "pipeline": "support"},
            "pipeline support is for ticket records, not deal (pipelines of deal: aftersales, sales)",
        ),
        ({"stage": "follow_up", "pipeline": "nope"}, "unknown pipeline 'nope' (pipelines of deal: aftersales, sales)"),
    ],
)
def test_a_move_into_another_pipeline_is_refused_with_the_reason(
    make_api: MakeApi, body: dict[str, str], reason: str
) -> None:
    api = make_api(**{"pipelines/aftersales.yaml": AFTERSALES, "objects/ticket.yaml": TICKETS})
    api.client.put("/v1/records/deal/7", json=IN_SALES)
    api.process()

    response = api.client.post("/v1/records/deal/7/stage", json=body)

    assert response.status_code == 422
    assert error_of(response)["message"] == reason
    assert len(api.changes()) == 1


def test_unknown_object_type_is_404(api: Api) -> None:
    for response in (api.client.put("/v1/records/car/1", json=DEAL), api.client.get("/v1/records/car")):
        assert response.status_code == 404
        assert error_of(response)["message"] == "unknown object type 'car' (known: deal)"
    response = api.client.post("/v1/events", json={"event": "x", "object": "car", "id": "1"})
    assert response.status_code == 422
    assert api.changes() == []


def test_bad_json_is_400(api: Api) -> None:
    headers = {"Content-Type": "application/json"}
    for body, problem in [
        (b"{nope", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object, not array"),
        (b"", "empty"),
        (b'{"fields": {"amount": NaN}}', "NaN"),
        (b"\xff\xfe{", "not"),
    ]:
        response = api.client.put("/v1/records/deal/7", content=body, headers=headers)
        assert response.status_code == 400, body
        assert problem in error_of(response)["message"]
    assert api.changes() == []


def test_deeply_nested_json_is_400(api: Api) -> None:
    body = '{"fields": {"title": "x", "details": ' + "[" * 40 + "]" * 40 + "}}"

    response = api.client.put("/v1/records/deal/7", content=body, headers={"Content-Type": "application/json"})

    assert response.status_code == 400
    assert "nested deeper than 32 levels" in error_of(response)["message"]


def test_wrong_content_type_is_415(api: Api) -> None:
    response = api.client.put(
        "/v1/records/deal/7", content=b"title=Sofa", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )

    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"


def test_body_over_the_limit_is_413_by_content_length(api: Api) -> None:
    big = {"fields": {"title": "x" * 5000}}  # limits.request_bytes is 4096 in the test config

    response = api.client.put("/v1/records/deal/7", json=big)

    assert response.status_code == 413
    assert "more than the limit of 4096" in error_of(response)["message"]
    assert api.changes() == []


def test_body_over_the_limit_is_413_while_streaming(api: Api) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked, counted while read
        yield b'{"fields": {"title": "'
        for _ in range(100):
            yield b"x" * 100
        yield b'"}}'

    response = api.client.put("/v1/records/deal/7", content=chunks(), headers={"Content-Type": "application/json"})

    assert response.status_code == 413
    assert api.changes() == []


def test_405_and_unknown_paths_answer_in_the_error_shape(api: Api) -> None:
    response = api.client.post("/v1/records/deal/7")
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"
    assert "GET" in response.headers["allow"]
    assert error_of(api.client.get("/v2/nothing"))["code"] == "not_found"


# ------------------------------------------------------------------------------- idempotency


def test_repeated_idempotency_key_gets_the_first_answer_and_stores_once(api: Api) -> None:
    headers = {"Idempotency-Key": "order-7-create"}
    first = api.client.put("/v1/records/deal/7", json=DEAL, headers=headers)
    again = api.client.put("/v1/records/deal/7", json=DEAL, headers=headers)

    assert first.status_code == again.status_code == 202
    assert first.json() == {"accepted": True, "seq": 1, "duplicate": False}
    assert again.json() == {"accepted": True, "seq": 1, "duplicate": True}
    (change,) = api.changes()
    assert change.idempotency_key == "api/order-7-create"  # API keys stored apart from webhook keys
    metrics = api.client.get("/metrics").text
    assert 'flowctl_changes_accepted_total{source="api"} 1' in metrics
    assert 'flowctl_changes_duplicate_total{source="api"} 1' in metrics


def test_without_a_key_every_request_is_a_new_write(api: Api) -> None:
    seqs = [api.client.put("/v1/records/deal/7", json=DEAL).json()["seq"] for _ in range(2)]

    assert seqs == [1, 2]


def test_a_key_reused_for_a_different_write_is_409(api: Api) -> None:
    headers = {"Idempotency-Key": "k1"}
    api.client.put("/v1/records/deal/7", json=DEAL, headers=headers)

    response = api.client.put("/v1/records/deal/8", json=DEAL, headers=headers)

    assert response.status_code == 409
    assert "already used for a different request" in error_of(response)["message"]
    assert len(api.changes()) == 1
    metrics = api.client.get("/metrics").text
    assert 'flowctl_changes_duplicate_total{source="api"}' not in metrics  # refused, not a repeat


def test_an_overlong_key_is_400(api: Api) -> None:
    response = api.client.put("/v1/records/deal/7", json=DEAL, headers={"Idempotency-Key": "k" * 300})

    assert response.status_code == 400


# ------------------------------------------------------------------------------- store down


def test_store_failure_is_503_with_retry_after(make_api: MakeApi) -> None:
    api = make_api(store=FailingStore())

    response = api.client.put("/v1/records/deal/7", json=DEAL)

    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    error = error_of(response)
    assert error["code"] == "unavailable"
    assert "database is down" not in error["message"]  # internals stay in the log


class HangingStore(MemoryStore):
    """A database that takes a write and does not answer until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.entered = threading.Event()

    def append_changes(self, changes: Any, inline: Any = None) -> Any:
        self.entered.set()
        self.release.wait(10)
        return super().append_changes(changes, inline)


def test_a_write_not_taken_in_time_is_503_and_not_stored_one_in_a_commit_gets_its_outcome(tmp_path: Path) -> None:
    """503 means "not stored": a client retrying without a key must not store the write twice."""
    store = HangingStore()
    svc = FakeService(
        bundle=write_config(
            tmp_path, {"flowctl.yaml": CONFIG, "objects/deal.yaml": OBJECTS, "pipelines/sales.yaml": PIPELINE}
        ),
        store=store,
        env={},
    )
    svc.ingest.start()
    try:
        with TestClient(create_app(svc, commit_timeout=0.3)) as client, ThreadPoolExecutor(1) as pool:
            first = pool.submit(client.put, "/v1/records/deal/7", json=DEAL, headers={"Idempotency-Key": "k-7"})
            assert store.entered.wait(10)  # the first write is in a commit that hangs
            started = time.monotonic()
            second = client.put("/v1/records/deal/8", json=DEAL, headers={"Idempotency-Key": "k-8"})
            waited = time.monotonic() - started
            assert second.status_code == 503
            assert "not stored: the store did not take it within 0.3 s" in error_of(second)["message"]
            assert second.headers["retry-after"] == "5"
            assert waited < 5  # the timeout answered, not the store
            time.sleep(0.5)
            assert not first.done()  # past its deadline too, but a commit has it: no 503 for a stored write
            store.release.set()
            assert first.result(10).status_code == 202
    finally:
        store.release.set()
        svc.ingest.stop()
    assert [c.record_id for c in store.changes_after(0)] == ["7"]


def test_readiness_follows_the_service(api: Api) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    assert api.client.get("/readyz").status_code == 200
    api.svc.is_ready = False
    response = api.client.get("/readyz")
    assert response.status_code == 503
    assert "retry-after" in response.headers


# ------------------------------------------------------------------------------- auth

TOKEN_CONFIG = CONFIG + '  api_token: "${API_TOKEN}"\n'


@pytest.fixture
def secured(make_api: MakeApi) -> Api:
    return make_api(config=TOKEN_CONFIG, env={"API_TOKEN": "t0ken", "HOOK_SECRET": "s"})


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic dDBrZW4=", "Bearer", "t0ken"])
def test_v1_needs_the_bearer_token(secured: Api, header: str | None) -> None:
    headers = {"Authorization": header} if header is not None else {}

    for response in (
        secured.client.put("/v1/records/deal/7", json=DEAL, headers=headers),
        secured.client.get("/v1/records/deal/7", headers=headers),
    ):
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert error_of(response)["code"] == "unauthorized"
    assert secured.changes() == []


def test_the_right_token_is_accepted(secured: Api) -> None:
    response = secured.client.put("/v1/records/deal/7", json=DEAL, headers={"Authorization": "Bearer t0ken"})

    assert response.status_code == 202
    assert secured.client.get("/healthz").status_code == 200  # operations need no token


def test_a_token_whose_env_variable_is_unset_refuses_everything(make_api: MakeApi) -> None:
    api = make_api(config=TOKEN_CONFIG, env={"HOOK_SECRET": "s"})

    response = api.client.put("/v1/records/deal/7", json=DEAL, headers={"Authorization": "Bearer "})

    assert response.status_code == 500
    assert error_of(response)["code"] == "misconfigured"
    assert api.changes() == []


def test_a_token_whose_env_variable_is_only_spaces_counts_as_unset(make_api: MakeApi) -> None:
    api = make_api(config=TOKEN_CONFIG, env={"API_TOKEN": "  \t ", "HOOK_SECRET": "s"})

    response = api.client.put("/v1/records/deal/7", json=DEAL, headers={"Authorization": "Bearer   "})

    assert response.status_code == 500
    assert "only spaces" in error_of(response)["message"]
    assert api.changes() == []


def test_metrics_need_the_token_when_one_is_set(secured: Api, api: Api) -> None:
    """Prometheus scrapes with ``authorization: {credentials: <api_token>}``; health checks stay open."""
    assert secured.client.get("/metrics").status_code == 401
    assert secured.client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    scraped = secured.client.get("/metrics", headers={"Authorization": "Bearer t0ken"})
    assert scraped.status_code == 200 and "flowctl_http_requests_total" in scraped.text
    assert secured.client.get("/readyz").status_code == 200
    assert api.client.get("/metrics").status_code == 200  # no api_token: no token needed


@pytest.mark.parametrize(
    ("listen", "token", "allowed"),
    [
        ("127.0.0.1:8080", "", True),
        ("localhost:8080", "", True),
        ("[::1]:8080", "", True),
        ("127.0.0.5:80", "", True),
        ("0.0.0.0:8080", "", False),
        (":8080", "", False),
        ("10.1.2.3:8080", "", False),
        ("example.com:80", "", False),
        ("0.0.0.0:8080", "t", True),
        ("0.0.0.0:8080", " \t", False),
    ],
)
def test_listen_beyond_loopback_needs_a_token(listen: str, token: str, allowed: bool) -> None:
    message = listen_allowed(listen, token)

    assert (message == "") is allowed
    if not allowed:
        assert message.startswith(f"refusing to listen on {listen} without api_token")
