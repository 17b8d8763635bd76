"""The read API (``/v1/runs``, ``/v1/outbox``, boards, timelines, care, deployments, health,
graphs) over the in-memory app: what a console or a script reads back after writes through the
API, processed by the real worker. Pagination is keyset: walking ``next`` gives every item once,
in order, while new rows arrive between pages."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from http_support import OBJECTS, Api, MakeApi

from flowctl.engine.render import render_run
from flowctl.engine.state import Effect, Record, Step
from flowctl.ports import ConfigVersion, OutboxRow, Processed
from flowctl.runtime.reads.outbox import summary
from flowctl.testing import Daemon, wait_for, write_config

PIPELINE = """
apiVersion: flowctl/v1
kind: Pipeline
metadata: {name: sales}
spec:
  object: deal
  stages:
    - id: new
    - id: documents
      rules:
        - {name: nudge, delay: 1d, action: send_sms, to: "{{ record.phone }}", text: "Documents, {{ record.title }}?"}
    - {id: won, final: success}
"""

FLOW = """
apiVersion: flowctl/v1
kind: Flow
metadata: {name: welcome}
spec:
  object: deal
  trigger: {on: created}
  start: hello
  nodes:
    hello: {type: send_sms, to: "{{ record.phone }}", text: "Welcome {{ record.title }}", next: pause}
    pause: {type: delay, for: 2d, next: done}
    done: {type: stop}
"""

CARE = """
apiVersion: flowctl/v1
kind: CareProcess
metadata: {name: closing-day}
spec:
  object: deal
  when: {anniversary_of: closes, at: "09:00"}
  actions:
    - {action: send_sms, to: "{{ record.phone }}", text: "Happy anniversary"}
"""

OBJECTS_WITH_DATE = OBJECTS + "    closes: {type: date}\n"


@pytest.fixture
def reads_api(make_api: MakeApi) -> Api:
    return make_api(
        **{
            "pipelines/sales.yaml": PIPELINE,
            "flows/welcome.yaml": FLOW,
            "care/closing.yaml": CARE,
            "objects/deal.yaml": OBJECTS_WITH_DATE,
        }
    )


def put(api: Api, id: str, stage: str = "new", **fields: Any) -> None:
    body = {"fields": {"title": f"Deal {id}", "phone": "0901234567", **fields}, "stage": stage}
    response = api.client.put(f"/v1/records/deal/{id}", json=body)
    assert response.status_code == 202, response.text


def walk(api: Api, url: str, between: Any = None) -> list[dict[str, Any]]:
    """Every item of a list, page by page through ``next``; ``between(n)`` runs after page n."""
    items: list[dict[str, Any]] = []
    cursor = ""
    for n in range(1000):
        sep = "&" if "?" in url else "?"
        response = api.client.get(f"{url}{sep}cursor={cursor}" if cursor else url)
        assert response.status_code == 200, response.text
        answer = response.json()
        items.extend(answer["items"])
        if answer["next"] is None:
            return items
        cursor = answer["next"]
        if between is not None:
            between(n)
    raise AssertionError("pagination did not end")


def error(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    message: str = response.json()["error"]["message"]
    return message


# ---------------------------------------------------------------- runs


def test_a_records_runs_are_listed_and_a_run_shows_its_trace_as_runs_show_prints_it(reads_api: Api) -> None:
    api = reads_api
    put(api, "7")
    put(api, "8")
    api.process()
    runs = api.client.get("/v1/runs?object=deal&record=7").json()
    assert [(r["automation"], r["kind"], r["name"], r["status"], r["node"]) for r in runs["items"]] == [
        ("flow:welcome", "flow", "welcome", "waiting", "pause")
    ]
    assert runs["next"] is None
    run = runs["items"][0]
    assert run["record_id"] == "7" and run["started_at"].endswith("+07:00")  # the Config's zone
    detail = api.client.get(f"/v1/runs/{run['id']}").json()  # the id holds a slash
    stored = api.svc.store.run(run["id"])
    assert stored is not None
    printed = render_run(stored, ZoneInfo("Asia/Ho_Chi_Minh")).split("\n")  # as `flowctl runs show` prints it
    assert [e["text"] for e in detail["trace"]] == printed[1:]
    assert "effect" in [e["kind"] for e in detail["trace"]] and "✉" in printed[2]
    assert {k: detail[k] for k in run} == run
    assert len(api.client.get("/v1/runs?status=waiting").json()["items"]) == 2
    assert api.client.get("/v1/runs?automation=flow:nothing").json() == {"items": [], "next": None}


def test_walking_the_runs_pages_gives_each_once_in_order_while_runs_are_added(reads_api: Api) -> None:
    api = reads_api
    for i in range(7):
        put(api, f"a{i}")
        api.svc.clock.advance(timedelta(seconds=1))
    api.process()
    before = [r["id"] for r in api.client.get("/v1/runs?limit=1000").json()["items"]]

    def more(n: int) -> None:  # a new run arrives between pages: newer, so before the cursor
        put(api, f"b{n}")
        api.process()
        api.svc.clock.advance(timedelta(seconds=1))

    walked = [r["id"] for r in walk(api, "/v1/runs?limit=2", more)]
    assert walked[: len(before)] == before  # the first page was read before any was added
    assert len(walked) == len(set(walked)) == len(before)


def test_bad_run_queries_are_400_naming_the_parameter_and_unknown_runs_404(reads_api: Api) -> None:
    client = reads_api.client
    assert "status" in error(client.get("/v1/runs?status=sleeping"), 400)
    assert "cursor" in error(client.get("/v1/runs?cursor=not-ours"), 400)
    assert "cursor" in error(client.get("/v1/runs?cursor=WyJ4Il0"), 400)  # valid base64, wrong shape
    assert "since" in error(client.get("/v1/runs?since=2026-03-01T09:00:00"), 400)  # no offset
    assert "until" in error(client.get("/v1/runs?until=yesterday"), 400)
    assert "limit" in error(client.get("/v1/runs?limit=0"), 400)
    assert "object" in error(client.get("/v1/runs?record=7"), 400)
    assert "object" in error(client.get("/v1/runs?object=planet"), 400)
    assert "no run" in error(client.get("/v1/runs/c1/nothing"), 404)
    assert client.get("/v1/runs?since=2026-03-01T09:00:00%2B07:00&until=2026-03-02T09:00:00Z").status_code == 200


# ---------------------------------------------------------------- outbox


def test_outbox_rows_are_listed_filtered_and_an_operator_retries_or_cancels_them(reads_api: Api) -> None:
    api = reads_api
    put(api, "7")
    put(api, "8")
    api.process()
    rows = api.client.get("/v1/outbox?object=deal&record=7").json()["items"]
    assert [(r["channel"], r["action"], r["status"], r["summary"]) for r in rows] == [
        ("log", "send_sms", "pending", "Welcome Deal 7")  # no sms channel configured: the log one
    ]
    assert [r["record_id"] for r in api.client.get("/v1/outbox?status=pending").json()["items"]] == ["8", "7"]
    store, now = api.svc.store, api.svc.clock.now()
    (claimed,) = store.claim_outbox(now, 1, "sender", 60)
    store.mark_failed(claimed.id, "550 unknown number", None, now)  # dead
    dead = api.client.get("/v1/outbox?status=dead").json()["items"]
    assert [(r["id"], r["last_error"]) for r in dead] == [(claimed.id, "550 unknown number")]
    retried = api.client.post(f"/v1/outbox/{claimed.id}/retry")
    assert retried.status_code == 200 and retried.json()["status"] == "pending"
    assert "pending" in error(api.client.post(f"/v1/outbox/{claimed.id}/retry"), 409)
    other = next(r["id"] for r in api.client.get("/v1/outbox").json()["items"] if r["id"] != claimed.id)
    assert api.client.post(f"/v1/outbox/{other}/cancel").json()["status"] == "cancelled"
    assert "cancelled" in error(api.client.post(f"/v1/outbox/{other}/cancel"), 409)
    assert "no outbox row" in error(api.client.post("/v1/outbox/999999/retry"), 404)
    assert "id" in error(api.client.post("/v1/outbox/x1/cancel"), 400)
    assert "status" in error(api.client.get("/v1/outbox?status=lost"), 400)


def test_walking_the_outbox_gives_each_row_once_while_rows_are_added(reads_api: Api) -> None:
    api = reads_api
    store = api.svc.store

    def add(n: int, count: int = 1) -> None:
        effects = [
            Effect(
                key=f"e{n}-{i}", action="send_sms", run_id="r", object="deal", record_id="1", channel="sms", params={}
            )
            for i in range(count)
        ]
        store.commit_batch([Processed(step=Step(effects=effects))], api.svc.clock.now())

    add(0, 9)
    before = [r["id"] for r in api.client.get("/v1/outbox?limit=100").json()["items"]]
    walked = [r["id"] for r in walk(api, "/v1/outbox?limit=4", lambda n: add(n + 1))]
    assert walked == before  # newest first; rows added meanwhile are newer than every cursor


# ---------------------------------------------------------------- boards and timelines


def test_the_board_counts_sums_and_shows_the_first_cards_of_each_column(reads_api: Api) -> None:
    api = reads_api
    for i in range(5):
        put(api, f"{i}", amount=1000 * i)
    put(api, "9", stage="documents", amount=50)
    put(api, "x", stage="documents", amount=None)
    api.process()
    board = api.client.get("/v1/pipelines/sales/board?cards=2").json()
    assert (board["pipeline"], board["object"], board["sum_field"]) == ("sales", "deal", "amount")
    columns = {s["id"]: s for s in board["stages"]}
    assert [(s["id"], s["count"], s["sum"]) for s in board["stages"]] == [
        ("new", 5, 10000.0),
        ("documents", 2, 50.0),
        ("won", 0, 0.0),
    ]
    assert [(c["id"], c["title"], c["amount"]) for c in columns["new"]["cards"]] == [
        ("0", "Deal 0", 0),
        ("1", "Deal 1", 1000),
    ]
    assert columns["documents"]["cards"][0]["pending_rules"] == ["documents/nudge"]  # its rule waits a day
    assert columns["won"]["final"] == "success" and columns["won"]["next"] is None
    rest = api.client.get(f"/v1/pipelines/sales/stages/new/cards?limit=2&cursor={columns['new']['next']}").json()
    assert [c["id"] for c in rest["items"]] == ["2", "3"]
    assert [c["id"] for c in walk(api, "/v1/pipelines/sales/stages/new/cards?limit=2")] == ["0", "1", "2", "3", "4"]
    assert [s["count"] for s in api.client.get("/v1/pipelines/sales/board?q=DEAL%203").json()["stages"]] == [1, 0, 0]
    assert "no pipeline" in error(api.client.get("/v1/pipelines/nope/board"), 404)
    assert "no stage" in error(api.client.get("/v1/pipelines/sales/stages/lost/cards"), 404)
    assert "cards" in error(api.client.get("/v1/pipelines/sales/board?cards=5000"), 400)


def test_a_records_timeline_has_its_stages_runs_messages_and_timers(reads_api: Api) -> None:
    api = reads_api
    put(api, "7")
    api.process()
    api.svc.clock.advance(timedelta(minutes=5))
    assert api.client.post("/v1/records/deal/7/stage", json={"stage": "documents"}).status_code == 202
    api.process()
    timeline = api.client.get("/v1/records/deal/7/timeline").json()
    assert timeline["record"]["stage"] == "documents" and timeline["record"]["pending"] is False
    assert [(s["stage"], s["at"]) for s in timeline["stages"]] == [
        ("new", "2026-03-02T09:00:00+07:00"),
        ("documents", "2026-03-02T09:05:00+07:00"),
    ]
    assert {r["automation"] for r in timeline["runs"]} == {"flow:welcome", "rule:sales/documents/nudge"}
    assert [m["summary"] for m in timeline["messages"]] == ["Welcome Deal 7"]
    assert sorted((t["kind"], t["node"]) for t in timeline["timers"]) == [("delay", "pause"), ("rule", "nudge")]
    assert timeline["notes"] == []
    assert "does not exist" in error(api.client.get("/v1/records/deal/nobody/timeline"), 404)
    assert "unknown object type" in error(api.client.get("/v1/records/planet/1/timeline"), 404)


def test_a_record_written_before_stage_entries_were_kept_shows_its_stage_without_a_time(reads_api: Api) -> None:
    """A database upgraded to schema 0009 has records with no stage history: the timeline gives
    their current stage, with no time and no cause, rather than nothing."""
    old = Record(object="deal", id="3", fields={"title": "Deal 3"}, stage="documents", pipeline="sales", version=4)
    reads_api.svc.store.commit_batch([Processed(record=old)], reads_api.svc.clock.now())
    timeline = reads_api.client.get("/v1/records/deal/3/timeline").json()
    assert timeline["stages"] == [{"stage": "documents", "pipeline": "sales", "at": None, "key": None, "seq": None}]


# ---------------------------------------------------------------- operations


def test_care_deployments_health_and_graph(reads_api: Api) -> None:
    api = reads_api
    put(api, "7", closes="2020-03-04")  # T0 is 2026-03-02 09:00 in Ho Chi Minh City
    put(api, "8", closes="2021-03-10")  # beyond the next 7 days
    api.process()
    (care,) = api.client.get("/v1/care").json()["items"]
    assert care["name"] == "closing-day" and care["next_firing"] == "2026-03-03T09:00:00+07:00"
    assert [d["count"] for d in care["next_7_days"]] == [0, 0, 1, 0, 0, 0, 0]
    assert care["next_7_days"][2]["day"] == "2026-03-04"

    store = api.svc.store
    t0 = api.svc.clock.now()
    old = {"Pipeline/sales": {"spec": {"stages": [{"id": "new"}, {"id": "won"}]}}}
    new = {"Pipeline/sales": {"spec": {"stages": [{"id": "new"}, {"id": "lost"}]}}, "Flow/x": {"spec": {}}}
    store.save_version(ConfigVersion(id="v1", applied_at=t0, documents=old, commit="abc"))
    store.save_version(ConfigVersion(id="v2", applied_at=t0 + timedelta(hours=1), documents=new))
    listed = api.client.get("/v1/deployments?limit=1").json()
    assert [(v["id"], v["current"]) for v in listed["items"]] == [("v2", True)]
    assert [v["id"] for v in walk(api, "/v1/deployments?limit=1")] == ["v2", "v1"]
    diff = api.client.get("/v1/deployments/v1/diff/v2").json()
    assert [(d["kind"], d["name"], d["change"]) for d in diff["documents"]] == [
        ("Flow", "x", "added"),
        ("Pipeline", "sales", "changed"),
    ]
    assert diff["documents"][1]["diff"] == ['- spec.stages[won]: {"id": "won"}', '+ spec.stages[lost]: {"id": "lost"}']
    assert "no deployed version" in error(api.client.get("/v1/deployments/v1/diff/v9"), 404)

    put(api, "9")  # not processed: one open change
    api.svc.clock.advance(timedelta(seconds=30))
    health = api.client.get("/v1/health").json()
    assert (health["status"], health["open_changes"], health["lag_seconds"]) == ("ok", 1, 30.0)
    assert health["engine"]["running"] is True

    api.process()
    graph = api.client.get("/v1/graph/welcome").json()
    assert {n["id"]: n["waiting"] for n in graph["nodes"]} == {"start": 0, "hello": 0, "pause": 3, "done": 0}
    assert {"from": "hello", "to": "pause", "label": ""} in graph["edges"]
    pipeline = api.client.get("/v1/graph/sales").json()
    assert pipeline["kind"] == "pipeline" and {"from": "new", "to": "documents", "label": ""} in pipeline["edges"]
    assert "no flow or pipeline" in error(api.client.get("/v1/graph/nothing"), 404)


def test_every_read_needs_the_token_when_one_is_set(make_api: MakeApi) -> None:
    config = textwrap.dedent(
        """
        apiVersion: flowctl/v1
        kind: Config
        metadata: {name: test}
        spec:
          timezone: Asia/Ho_Chi_Minh
          api_token: "${API_TOKEN}"
        """
    )
    api = make_api(config=config, env={"API_TOKEN": "s3cret", "HOOK_SECRET": "x"})
    for path in ("/v1/runs", "/v1/outbox", "/v1/care", "/v1/health", "/v1/pipelines/sales/board", "/v1/graph/sales"):
        assert api.client.get(path).status_code == 401
        assert api.client.get(path, headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert api.client.post("/v1/outbox/1/retry").status_code == 401


def test_the_document_lists_every_read_operation_with_its_role_and_tags(api: Api) -> None:
    document = api.client.get("/openapi.json").json()
    found = {
        op["operationId"]: (op["x-required-role"], op["tags"])
        for item in document["paths"].values()
        for op in item.values()
        if isinstance(op, dict) and "operationId" in op and op.get("x-required-role")
    }
    assert found["listRuns"] == ("viewer", ["runs"])
    assert found["retryOutboxRow"] == ("operator", ["outbox"])
    assert found["cancelOutboxRow"] == ("operator", ["outbox"])
    assert found["getBoard"] == ("viewer", ["pipelines"])
    assert found["getRecordTimeline"] == ("viewer", ["records"])
    assert next(iter(document["paths"])) == "/v1/records/{object}/{id}"  # still the first: the fast path's
    limit = next(p for p in document["paths"]["/v1/runs"]["get"]["parameters"] if p["name"] == "limit")
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 1000)


# ---------------------------------------------------------------- through a real daemon


def test_a_real_daemon_serves_the_board_runs_trace_and_timeline_of_records_put_to_it(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "config",
        {
            "flowctl.yaml": "apiVersion: flowctl/v1\nkind: Config\nmetadata: {name: d}\nspec: {timezone: UTC}\n",
            "objects/deal.yaml": OBJECTS_WITH_DATE,
            "pipelines/sales.yaml": PIPELINE,
            "flows/welcome.yaml": FLOW,
        },
    )
    with Daemon(config, f"sqlite:///{tmp_path / 'flowctl.db'}") as daemon:
        for i, stage in enumerate(["new", "new", "documents"]):
            body = {"title": f"Deal {i}", "phone": "0901234567", "amount": 100 * (i + 1)}
            assert daemon.put("deal", str(i), body, stage=stage).status_code == 202
        wait_for(lambda: len(daemon.get("/v1/runs?status=waiting").json()["items"]) == 4, what="4 waiting runs")
        board = daemon.get("/v1/pipelines/sales/board").json()
        assert [(s["id"], s["count"], s["sum"]) for s in board["stages"]] == [
            ("new", 2, 300.0),
            ("documents", 1, 300.0),
            ("won", 0, 0.0),
        ]
        assert [c["title"] for c in board["stages"][0]["cards"]] == ["Deal 0", "Deal 1"]
        runs = daemon.get("/v1/runs?object=deal&record=2").json()["items"]
        assert sorted(r["automation"] for r in runs) == ["flow:welcome", "rule:sales/documents/nudge"]
        welcome = next(r for r in runs if r["automation"] == "flow:welcome")
        trace = daemon.get(f"/v1/runs/{welcome['id']}").json()["trace"]
        shown = subprocess.run(
            [sys.executable, "-m", "flowctl", "runs", "show", welcome["id"], str(config), "--db", daemon.database],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert [e["text"] for e in trace] == shown.rstrip("\n").split("\n")[1:]  # what the terminal shows
        timeline = daemon.get("/v1/records/deal/2/timeline").json()
        assert timeline["record"]["fields"]["title"] == "Deal 2"
        assert [s["stage"] for s in timeline["stages"]] == ["documents"]
        assert {r["id"] for r in timeline["runs"]} == {r["id"] for r in runs}
        assert sorted(t["node"] for t in timeline["timers"]) == ["nudge", "pause"]
        assert daemon.get("/v1/health").json()["engine"]["running"] is True


def test_a_message_without_text_is_summarised_by_its_title_or_else_its_action() -> None:
    def row(action: str, payload: dict[str, str]) -> OutboxRow:
        return OutboxRow(
            id=1, key="k", channel="log", action=action, object="deal", record_id="7", run_id="r", payload=payload
        )

    assert summary(row("create_task", {"title": "Bàn giao  hợp đồng", "assignee": ""})) == "Bàn giao hợp đồng"
    assert summary(row("webhook", {"url": "https://crm.example/x"})) == "webhook"  # never a blank cell
    assert summary(row("send_email", {"subject": "Báo giá", "body": "…"})) == "Báo giá"


def test_the_readmes_deal_7_has_a_timeline_of_new_proposal_won_each_with_its_time(tmp_path: Path) -> None:
    """The README's "Try it" on the repository's demo configuration: the deal is created without a
    stage (it enters the pipeline's first), moved by the API, then moved to ``won`` by the
    ``deal.signed`` event's trigger; each stage is listed with when and the write that caused it."""
    root = Path(__file__).resolve().parents[2]
    config = tmp_path / "demo"
    config.mkdir()
    shutil.copy(root / "flowctl.yaml", config / "flowctl.yaml")
    for folder in ("flows", "templates"):
        shutil.copytree(root / folder, config / folder)
    with Daemon(config, f"sqlite:///{tmp_path / 'flowctl.db'}") as daemon:
        fields = {"title": "Bộ sofa", "phone": "0901234567", "email": "lan@example.com", "amount": 15000000}
        created = daemon.put("deal", "7", fields)
        assert created.status_code == 202
        moved = httpx.post(f"{daemon.url}/v1/records/deal/7/stage", json={"stage": "proposal"}, timeout=10)
        assert moved.status_code == 202, moved.text
        signed = httpx.post(
            f"{daemon.url}/v1/events", json={"event": "deal.signed", "object": "deal", "id": "7"}, timeout=10
        )
        assert signed.status_code == 202, signed.text
        wait_for(lambda: daemon.get("/v1/records/deal/7").json()["stage"] == "won", what="deal 7 won")
        stages = daemon.get("/v1/records/deal/7/timeline").json()["stages"]
        assert [(s["stage"], s["pipeline"]) for s in stages] == [
            ("new", "demo-deals"),
            ("proposal", "demo-deals"),
            ("won", "demo-deals"),
        ]
        causes = [created.json()["seq"], moved.json()["seq"], signed.json()["seq"]]
        assert [(s["seq"], s["key"]) for s in stages] == [(seq, f"c{seq}") for seq in causes]
        times = [datetime.fromisoformat(s["at"]) for s in stages]
        assert times == sorted(times) and all(t.utcoffset() == timedelta(hours=7) for t in times)  # the config's zone
        html = httpx.get(f"{daemon.url}/ui/records/deal/7", timeout=10).text  # the console's record page
        history = re.search(r"<h2>Stage history</h2>(.*?)</section>", html, re.S)
        assert history and re.findall(r"<tr><td>([^<]+)</td>", history.group(1)) == ["new", "proposal", "won"]
