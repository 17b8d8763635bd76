"""Every limit as a user meets it: through the HTTP API, the daemon, ``flowctl runs``, ``flowctl
dry-run``, ``flowctl test`` and ``flowctl validate``, and the deliverer under a fake clock.

Each refusal must say where (which field, record, automation, file:line), why, and which setting
to raise; a limit set in flowctl.yaml must change what happens; a limit hit while processing must
stop only what it guards (the change stays stored, other records go on); a rate never drops a
message. The measured values go to RELIABILITY.md through the ``figures`` fixture.
"""

from __future__ import annotations

import io
import json
import random
import textwrap
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from flowctl.channels.base import Receipt
from flowctl.cli.common import config_zone
from flowctl.cli.main import cli
from flowctl.engine.render import render_run
from flowctl.engine.state import Effect, Run, Step
from flowctl.ports import OutboxRow, Processed
from flowctl.runtime.api.idempotency import MAX_KEY
from flowctl.runtime.api.requests import MAX_ID
from flowctl.runtime.delivery import policies
from flowctl.runtime.delivery.deliverer import Deliverer
from flowctl.sources.webhooks import MAX_ITEMS
from flowctl.spec.model import Limits, SendPolicy
from flowctl.store import open_store
from flowctl.testing import FrozenClock
from tests.reliability.conftest import Daemon, MakeDaemon

SECRET = "hook-secret"
AUTH = {"Authorization": f"Bearer {SECRET}"}

OBJECTS = """
apiVersion: flowctl/v1
kind: ObjectType
metadata: {name: deal}
spec:
  fields:
    title: {type: string}
    phone: {type: phone}
    note: {type: text}
    a: integer
    b: integer
    c: integer
    d: integer
    e: integer
    s2: integer
    s3: integer
    s4: integer
    s5: integer
"""

# Five distinct flows, each started by the previous one's write: a chain five levels deep that
# validate accepts (no loop), so only limits.chain_depth decides how far it goes.
CHAIN = """
apiVersion: flowctl/v1
kind: Flow
metadata: {name: step1}
spec:
  object: deal
  trigger: {on: event, event: chain.start}
  start: s
  nodes: {s: {type: update_fields, set: {s2: 1}}}
---
apiVersion: flowctl/v1
kind: Flow
metadata: {name: step2}
spec:
  object: deal
  trigger: {on: updated, changed: [s2]}
  start: s
  nodes: {s: {type: update_fields, set: {s3: 1}}}
---
apiVersion: flowctl/v1
kind: Flow
metadata: {name: step3}
spec:
  object: deal
  trigger: {on: updated, changed: [s3]}
  start: s
  nodes: {s: {type: update_fields, set: {s4: 1}}}
---
apiVersion: flowctl/v1
kind: Flow
metadata: {name: step4}
spec:
  object: deal
  trigger: {on: updated, changed: [s4]}
  start: s
  nodes: {s: {type: update_fields, set: {s5: 1}}}
---
apiVersion: flowctl/v1
kind: Flow
metadata: {name: step5}
spec:
  object: deal
  trigger: {on: updated, changed: [s5]}
  start: s
  nodes: {s: {type: send_sms, text: "chain done", to: "{{ record.phone }}"}}
"""

# One event, four messages; another, one.
PROMO = """
apiVersion: flowctl/v1
kind: Flow
metadata: {name: promo}
spec:
  object: deal
  trigger: {on: event, event: promo}
  start: one
  nodes:
    one: {type: send_sms, text: "promo 1", to: "{{ record.phone }}", next: two}
    two: {type: send_sms, text: "promo 2", to: "{{ record.phone }}", next: three}
    three: {type: send_sms, text: "promo 3", to: "{{ record.phone }}", next: four}
    four: {type: send_sms, text: "promo 4", to: "{{ record.phone }}"}
---
apiVersion: flowctl/v1
kind: Flow
metadata: {name: hello}
spec:
  object: deal
  trigger: {on: event, event: hello}
  start: s
  nodes: {s: {type: send_sms, text: "hello", to: "{{ record.phone }}"}}
"""

SOURCES = """
apiVersion: flowctl/v1
kind: Source
metadata: {name: crm}
spec:
  type: webhook
  path: /hooks/crm
  auth: bearer
  secret: "${HOOK_SECRET}"
  map:
    object: deal
    id: "{{ payload.id }}"
    fields: "{{ payload.data }}"
    event_id: "{{ payload.delivery }}"
---
apiVersion: flowctl/v1
kind: Source
metadata: {name: small}
spec:
  type: webhook
  path: /hooks/small
  auth: bearer
  secret: "${HOOK_SECRET}"
  max_bytes: 512
  map: {object: deal, id: "{{ payload.id }}", fields: "{{ payload.data }}"}
"""


def config(**limits: object) -> str:
    """flowctl.yaml with these ``limits``."""
    given = ", ".join(f"{name}: {value}" for name, value in limits.items())
    return (
        f"apiVersion: flowctl/v1\nkind: Config\nmetadata: {{name: limits}}\nspec:\n  timezone: UTC\n"
        f"  limits: {{{given}}}\n"
    )


def files(**limits: object) -> dict[str, str]:
    return {
        "flowctl.yaml": config(**limits),
        "objects.yaml": OBJECTS,
        "flows/chain.yaml": CHAIN,
        "flows/promo.yaml": PROMO,
        "sources.yaml": SOURCES,
    }


@pytest.fixture
def start(make_daemon: MakeDaemon, tmp_path: Path) -> Callable[..., Daemon]:
    """``start(**limits)``: a daemon on the config above over its own SQLite file, the log
    channel writing into a buffer instead of the test's output."""
    count = 0

    def run(**limits: int) -> Daemon:
        nonlocal count
        count += 1
        url = f"sqlite:///{tmp_path / f'limits-{count}.db'}"
        return make_daemon(files(**limits), env={"HOOK_SECRET": SECRET}, database=url, log_stream=io.StringIO())

    return run


def db_url(daemon: Daemon) -> str:
    """The daemon's database, for the ``flowctl runs`` commands an operator would type."""
    return str(daemon.store.engine.url)  # type: ignore[attr-defined]


def error(response: Any) -> dict[str, Any]:
    body = response.json()
    return dict(body["error"]) if "error" in body else dict(body)


def put(daemon: Daemon, id: str, fields: Mapping[str, Any], **headers: str) -> Any:
    return daemon.client.put(f"/v1/records/deal/{id}", json={"fields": dict(fields)}, headers=headers)


def event(daemon: Daemon, name: str, id: str) -> Any:
    return daemon.client.post("/v1/events", json={"event": name, "object": "deal", "id": id})


def runs(daemon: Daemon, id: str) -> dict[str, Run]:
    return {run.automation: run for run in daemon.store.list_runs(limit=100, object="deal", record_id=id)}


def sms_texts(daemon: Daemon, id: str) -> list[str]:
    rows = [r for r in daemon.store.list_outbox(limit=1000) if r.record_id == id and r.action == "send_sms"]
    return [str(r.payload["text"]) for r in sorted(rows, key=lambda r: r.id)]


def invoke(*args: Any) -> Any:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def write_dir(root: Path, content: Mapping[str, str]) -> Path:
    for name, text in content.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


# ------------------------------------------------------------------------------------ HTTP: request size


def chunked(size: int) -> Iterator[bytes]:
    """A JSON body of about ``size`` bytes sent without Content-Length (chunked)."""
    yield b'{"fields": {"note": "'
    for _ in range(size // 100):
        yield b"x" * 100
    yield b'"}}'


def test_request_size_is_refused_with_413_by_content_length_and_while_streaming(
    start: Callable[..., Daemon], figures: Any
) -> None:
    daemon = start(request_bytes=4096)
    big = json.dumps({"fields": {"note": "x" * 5000}}).encode()

    declared = daemon.client.put("/v1/records/deal/1", content=big, headers={"Content-Type": "application/json"})
    streamed = daemon.client.put(
        "/v1/records/deal/1", content=chunked(5000), headers={"Content-Type": "application/json"}
    )

    for response in (declared, streamed):
        assert response.status_code == 413
        assert error(response)["code"] == "payload_too_large"
        assert "more than the limit of 4096" in error(response)["message"]
        assert "raise limits.request_bytes in flowctl.yaml" in error(response)["message"]
    assert error(declared)["message"].startswith(f"the body is {len(big)} bytes")
    assert put(daemon, "1", {"note": "x" * 3000}).status_code == 202  # under the limit: accepted
    assert daemon.changes() == 1  # the refused bodies stored nothing
    figures(request_bytes_limit=4096, refused_body_bytes=len(big), refused_chunked=True)


def test_raising_request_bytes_in_flowctl_yaml_accepts_the_same_body(start: Callable[..., Daemon]) -> None:
    daemon = start(request_bytes=65536)

    assert put(daemon, "1", {"note": "x" * 5000}).status_code == 202
    streamed = daemon.client.put(
        "/v1/records/deal/2", content=chunked(60000), headers={"Content-Type": "application/json"}
    )
    assert streamed.status_code == 202
    assert (
        daemon.client.put(
            "/v1/records/deal/3", content=chunked(70000), headers={"Content-Type": "application/json"}
        ).status_code
        == 413
    )


def test_a_webhook_body_names_the_limit_it_hit(start: Callable[..., Daemon]) -> None:
    """A source's own max_bytes below limits.request_bytes is the one to raise, and the 413 says so."""
    daemon = start(request_bytes=4096)
    body = json.dumps({"id": "1", "data": {"note": "x" * 1000}})

    small = daemon.client.post("/hooks/small", content=body, headers={**AUTH, "Content-Type": "application/json"})
    assert small.status_code == 413
    assert "limit of 512" in error(small)["message"] and "raise max_bytes of Source small" in error(small)["message"]

    huge = json.dumps({"id": "1", "delivery": "d1", "data": {"note": "x" * 5000}})
    crm = daemon.client.post("/hooks/crm", content=huge, headers={**AUTH, "Content-Type": "application/json"})
    assert crm.status_code == 413
    assert "raise limits.request_bytes in flowctl.yaml" in error(crm)["message"]
    assert daemon.changes() == 0


# ------------------------------------------------------------------------------------ HTTP: fields per record


def test_fields_per_record_is_one_clear_422_and_raising_it_accepts(start: Callable[..., Daemon], figures: Any) -> None:
    eight = {"title": "Sofa", "note": "n", "a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "s2": 0}
    strict = start(fields_per_record=5)

    response = put(strict, "1", eight)
    assert response.status_code == 422
    assert error(response)["message"] == (
        "8 fields for one deal record, more than the limit of 5; send fewer "
        "fields or raise limits.fields_per_record in flowctl.yaml"
    )
    flood = strict.client.patch("/v1/records/deal/1", json={"fields": {f"x{i}": i for i in range(2000)}})
    assert flood.status_code == 422
    assert error(flood)["details"] == [  # one line, not 2000 "not defined" lines echoed back
        "2000 fields for one deal record, more than the limit of 5; send fewer fields or raise "
        "limits.fields_per_record in flowctl.yaml"
    ]
    assert put(strict, "1", dict(list(eight.items())[:5])).status_code == 202
    assert strict.changes() == 1

    relaxed = start(fields_per_record=10)
    assert put(relaxed, "1", eight).status_code == 202
    figures(fields_per_record_limit=5, refused_fields=8, flood_fields=2000, flood_problem_lines=1)


def test_a_webhook_delivery_obeys_fields_per_record_per_item(start: Callable[..., Daemon]) -> None:
    daemon = start(fields_per_record=2)
    items = [
        {"id": "1", "delivery": "a", "data": {"title": "ok"}},
        {"id": "2", "delivery": "b", "data": {"title": "t", "note": "n", "a": 1}},
    ]

    response = daemon.client.post("/hooks/crm", json=items, headers=AUTH)

    assert response.status_code == 422
    assert error(response)["details"] == [
        "item 1: 3 fields for one deal record, more than the limit of 2; send fewer fields or raise "
        "limits.fields_per_record in flowctl.yaml"
    ]
    assert daemon.changes() == 0  # a delivery is stored whole or not at all


# ------------------------------------------------------------------------------------ HTTP: ids, keys, items


def test_too_long_ids_and_keys_are_refused_before_anything_is_stored(
    start: Callable[..., Daemon], figures: Any
) -> None:
    daemon = start()
    longest, too_long = "7" * MAX_ID, "7" * (MAX_ID + 1)

    path = put(daemon, too_long, {"title": "Sofa"})
    assert path.status_code == 400 and error(path)["message"] == f"a record id is at most {MAX_ID} characters"
    key = put(daemon, "1", {"title": "Sofa"}, **{"Idempotency-Key": "k" * (MAX_KEY + 1)})
    assert key.status_code == 400 and error(key)["message"] == f"Idempotency-Key is at most {MAX_KEY} characters"
    body_id = daemon.client.post("/v1/events", json={"event": "promo", "object": "deal", "id": too_long})
    assert body_id.status_code == 422 and error(body_id)["message"] == f"'id' must be 1 to {MAX_ID} characters"
    hook_id = daemon.client.post("/hooks/crm", json={"id": too_long, "delivery": "d", "data": {}}, headers=AUTH)
    assert hook_id.status_code == 422
    assert error(hook_id)["message"] == (
        f"map.id gave an id of {MAX_ID + 1} characters; a record id is at most {MAX_ID}"
    )
    hook_key = daemon.client.post(
        "/hooks/crm", json={"id": "1", "delivery": "d" * (MAX_KEY + 1), "data": {}}, headers=AUTH
    )
    assert hook_key.status_code == 422
    assert error(hook_key)["message"] == f"map.event_id gave an event id of {MAX_KEY + 1} characters; at most {MAX_KEY}"
    assert daemon.changes() == 0

    assert put(daemon, longest, {"title": "Sofa"}, **{"Idempotency-Key": "k" * MAX_KEY}).status_code == 202
    assert (
        daemon.client.post(
            "/hooks/crm", json={"id": longest, "delivery": "d" * MAX_KEY, "data": {}}, headers=AUTH
        ).status_code
        == 202
    )
    assert daemon.changes() == 2
    figures(max_id_chars=MAX_ID, max_key_chars=MAX_KEY)


def test_too_many_items_in_one_webhook_delivery_is_413(start: Callable[..., Daemon], figures: Any) -> None:
    daemon = start()
    items = [{"id": str(i), "delivery": f"d{i}", "data": {"a": i}} for i in range(MAX_ITEMS + 1)]

    response = daemon.client.post("/hooks/crm", json=items, headers=AUTH)

    assert response.status_code == 413
    assert error(response)["message"] == f"a delivery may hold at most {MAX_ITEMS} items, this one has {MAX_ITEMS + 1}"
    assert daemon.changes() == 0
    accepted = daemon.client.post("/hooks/crm", json=items[:MAX_ITEMS], headers=AUTH)
    assert accepted.status_code == 202 and len(accepted.json()["changes"]) == MAX_ITEMS
    figures(max_items_per_delivery=MAX_ITEMS)


# ------------------------------------------------------------------------------------ daemon: chain depth


def test_chain_depth_stops_the_chain_keeps_the_write_and_tells_the_operator(
    start: Callable[..., Daemon], figures: Any
) -> None:
    daemon = start(chain_depth=3)
    for id in ("1", "2"):
        assert put(daemon, id, {"title": "Sofa", "phone": "0901234567"}).status_code == 202
    assert event(daemon, "chain.start", "1").status_code == 202
    assert event(daemon, "promo", "2").status_code == 202  # another record, after the stopped chain
    daemon.settle()

    record = daemon.store.record("deal", "1")
    assert record is not None and record.fields["s5"] == 1  # step4's write is kept: it is not undone
    assert "step5" not in {a.removeprefix("flow:") for a in runs(daemon, "1")}  # what it would start is not
    assert sms_texts(daemon, "1") == []
    assert sms_texts(daemon, "2") == ["promo 1", "promo 2", "promo 3", "promo 4"]  # other records go on
    assert all(change.status == "done" for change in daemon.store.changes_after(0, limit=100))

    message = (
        "automations triggered each other more than 3 levels deep on deal 1; stopped here "
        "(raise limits.chain_depth or break the loop)"
    )
    last = runs(daemon, "1")["flow:step4"]
    assert [(e.kind, e.detail) for e in last.trace if e.kind == "error"] == [("error", message)]
    listed = invoke("runs", "list", "--record", "deal/1", "--db", db_url(daemon))
    assert listed.exit_code == 0 and "flow:step4" in listed.output
    shown = invoke("runs", "show", last.id, daemon.svc.root, "--db", db_url(daemon))
    assert shown.exit_code == 0  # times in the Config's zone, with the offset
    assert render_run(last, config_zone(daemon.svc.root)) in shown.output and f"✗ s: error {message}" in shown.output
    figures(chain_depth_limit=3, chain_levels_run=4, chain_write_kept=True)


def test_raising_chain_depth_lets_the_same_chain_finish(start: Callable[..., Daemon]) -> None:
    daemon = start(chain_depth=4)
    put(daemon, "1", {"title": "Sofa", "phone": "0901234567"})
    event(daemon, "chain.start", "1")
    daemon.settle()

    assert sms_texts(daemon, "1") == ["chain done"]
    assert not any(e.kind == "error" for run in runs(daemon, "1").values() for e in run.trace)


# ------------------------------------------------------------------------------------ daemon: effects per change


def test_effects_per_change_stops_the_run_keeps_what_was_made_and_names_the_setting(
    start: Callable[..., Daemon], figures: Any
) -> None:
    daemon = start(effects_per_change=2)
    for id in ("1", "2"):
        put(daemon, id, {"title": "Sofa", "phone": "0901234567"})
    event(daemon, "promo", "1")
    event(daemon, "hello", "2")  # another record, after: one effect, under the limit
    daemon.settle()

    assert sms_texts(daemon, "1") == ["promo 1", "promo 2"]  # the effects made before the limit are sent
    assert sms_texts(daemon, "2") == ["hello"]
    assert all(change.status == "done" for change in daemon.store.changes_after(0, limit=100))
    promo = runs(daemon, "1")["flow:promo"]
    message = (
        "flow:promo node three on deal 1: more than 2 effects from one change, event or timer; "
        "stopped here (raise limits.effects_per_change)"
    )
    assert promo.status == "failed"
    assert [(e.node, e.detail) for e in promo.trace if e.kind == "error"] == [("three", message)]
    shown = invoke("runs", "show", promo.id, "--db", db_url(daemon))
    assert message in shown.output and "[failed]" in shown.output

    relaxed = start(effects_per_change=4)
    put(relaxed, "1", {"title": "Sofa", "phone": "0901234567"})
    event(relaxed, "promo", "1")
    relaxed.settle()
    assert sms_texts(relaxed, "1") == ["promo 1", "promo 2", "promo 3", "promo 4"]
    figures(effects_per_change_limit=2, effects_kept=2, effects_with_limit_4=4)


# ------------------------------------------------------------------------------------ CI: dry-run and test


DRY_EVENT = """
now: "2026-03-02T09:00:00+00:00"
records: [{object: deal, id: "1", fields: {title: Sofa, phone: "0901234567"}}]
steps:
  - event: {event: chain.start, object: deal, id: "1"}
  - event: {event: promo, object: deal, id: "1"}
"""

SCENARIO = """
apiVersion: flowctl/v1
kind: Test
metadata: {name: the chain sends its message}
spec:
  now: "2026-03-02T09:00:00+00:00"
  steps:
    - create: {object: deal, id: "1", fields: {title: Sofa, phone: "0901234567"}}
    - event: {event: chain.start, object: deal, id: "1"}
    - expect: {effects: [{action: send_sms, text: chain done}]}
"""


def test_dry_run_and_flowctl_test_show_the_limit_that_stopped_the_run(tmp_path: Path) -> None:
    strict = write_dir(
        tmp_path / "strict", {**files(chain_depth=2, effects_per_change=3), "tests/chain.yaml": SCENARIO}
    )
    (tmp_path / "event.yaml").write_text(DRY_EVENT, encoding="utf-8")

    dry = invoke("dry-run", strict, "--event", tmp_path / "event.yaml")
    assert dry.exit_code == 0, dry.output
    assert (
        "problem chain_depth: automations triggered each other more than 2 levels deep on deal 1; "
        "stopped here (raise limits.chain_depth or break the loop)"
    ) in dry.output
    assert (
        "problem effects_limit: flow:promo node four on deal 1: more than 3 effects from one change, "
        "event or timer; stopped here (raise limits.effects_per_change)"
    ) in dry.output
    data = json.loads(invoke("dry-run", strict, "--event", tmp_path / "event.yaml", "--format", "json").output)
    assert [p["code"] for p in data["problems"]] == ["chain_depth", "effects_limit"]

    failed = invoke("test", strict)
    assert failed.exit_code == 1
    assert "chain_depth: automations triggered each other more than 2 levels deep" in failed.output
    assert "0 passed, 1 failed" in failed.output

    relaxed = write_dir(tmp_path / "relaxed", {**files(), "tests/chain.yaml": SCENARIO})
    passed = invoke("test", relaxed)
    assert passed.exit_code == 0 and "1 passed, 0 failed" in passed.output, passed.output


# ------------------------------------------------------------------------------------ config: validation


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("0", "0 is less than the minimum of 1"),
        ("-5", "-5 is less than the minimum of 1"),
        ("2.5", "2.5 is not of type 'integer'"),
        ('"100"', "'100' is not of type 'integer'"),
        ("true", "True is not of type 'integer'"),
        ('"${CHAIN_DEPTH}"', "'${CHAIN_DEPTH}' is not of type 'integer'"),
    ],
)
def test_a_bad_limit_is_a_positioned_error(tmp_path: Path, value: str, why: str) -> None:
    text = config(request_bytes=4096, chain_depth=value)
    root = write_dir(tmp_path, {"flowctl.yaml": text, "objects.yaml": OBJECTS})
    column = text.splitlines()[5].index("chain_depth:") + len("chain_depth: ") + 1

    result = invoke("validate", root)

    assert result.exit_code == 1
    assert f"flowctl.yaml:6:{column}: error[E010]: spec/limits/chain_depth: {why}" in result.output


def test_an_unknown_limit_is_refused_at_its_line(tmp_path: Path) -> None:
    root = write_dir(tmp_path, {"flowctl.yaml": config(chain_dept=3), "objects.yaml": OBJECTS})
    result = invoke("validate", root)
    assert result.exit_code == 1
    assert "flowctl.yaml:6:" in result.output and "chain_dept" in result.output


def test_every_limit_in_flowctl_yaml_reaches_the_model(tmp_path: Path) -> None:
    from flowctl.spec.config import load_bundle

    given = {
        "care_processes_per_object": 3,
        "chain_depth": 4,
        "effects_per_change": 5,
        "fields_per_record": 6,
        "request_bytes": 7000,
        "max_visits": 8,
    }
    loaded = load_bundle(write_dir(tmp_path, {"flowctl.yaml": config(**given), "objects.yaml": OBJECTS}))
    assert loaded.ok and loaded.bundle is not None
    limits = loaded.bundle.config.limits
    assert {name: getattr(limits, name) for name in given} == given
    assert Limits().chain_depth == 8 and Limits().effects_per_change == 100  # the documented defaults


# ------------------------------------------------------------------------------------ delivery: the rate


class Stamps:
    """A sender that notes the (fake) time of every message it is handed."""

    concurrency = 1

    def __init__(self, clock: FrozenClock) -> None:
        self.clock = clock
        self.sent: list[tuple[datetime, str]] = []

    def send(self, row: OutboxRow) -> Receipt:
        self.sent.append((self.clock.now(), row.key))
        return Receipt(detail="ok")


T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def queue_sms(store: Any, count: int, at: datetime, prefix: str) -> None:
    effects = [
        Effect(
            key=f"{prefix}{i}",
            action="send_sms",
            run_id="r",
            object="deal",
            record_id=str(i),
            channel="sms",
            params={"to": f"09{i:08d}", "text": "Khuyen mai"},
        )
        for i in range(count)
    ]
    store.commit_batch([Processed(step=Step(effects=effects))], at)


def most_in_any_window(times: list[datetime], seconds: float) -> int:
    """The most sends in any half-open window [t, t + seconds)."""
    ordered = sorted(times)
    most, first = 0, 0
    for last, at in enumerate(ordered):
        while (at - ordered[first]).total_seconds() >= seconds:
            first += 1
        most = max(most, last - first + 1)
    return most


def drive(step: float, tmp_path: Path, rounds: int = 400) -> tuple[Stamps, Any, int]:
    """60 messages queued at once and 20 more 3 s later on a ``rate: 5/s`` channel, the deliverer
    run every ``step`` seconds of fake time; returns the sender, the store and the rows seen held."""
    store = open_store(f"sqlite:///{tmp_path / f'rate-{step}.db'}")
    clock = FrozenClock(T0)
    sender = Stamps(clock)
    deliverer = Deliverer(
        store,
        {"sms": sender},
        clock,
        owner="t",
        rng=random.Random(1),
        policies={"sms": SendPolicy(rate="5/s")},
        timezone="UTC",
    )
    queue_sms(store, 60, T0, "a")
    held_seen, later = 0, False
    for n in range(rounds):
        clock.set(T0 + timedelta(seconds=round(n * step, 6)))
        if n * step >= 3 and not later:
            queue_sms(store, 20, clock.now(), "b")
            later = True
        deliverer.deliver_once()
        held = store.list_outbox(limit=1000, status="held")
        held_seen = max(held_seen, len(held))
        assert all(r.last_error.startswith(policies.RATE_HOLD) and r.attempts <= 1 for r in held)
    deliverer.close()
    return sender, store, held_seen


@pytest.mark.parametrize("step", [0.1, 0.35, 1.0])
def test_rate_holds_rows_and_never_drops_or_dead_letters_them(step: float, tmp_path: Path, figures: Any) -> None:
    sender, store, held_seen = drive(step, tmp_path)

    keys = [key for _, key in sender.sent]
    assert sorted(keys) == sorted([f"a{i}" for i in range(60)] + [f"b{i}" for i in range(20)])  # each once
    assert store.list_outbox(limit=1000, status="dead") == [] and store.list_outbox(limit=1000, status="held") == []
    assert held_seen >= 5  # the rows over the rate waited in the outbox as held
    times = [at for at, _ in sender.sent]
    span = (max(times) - min(times)).total_seconds()
    # over the whole run the channel averages no more than 5/s (plus the bucket's first burst of 5)
    assert len(times) <= 5 * span + 5 + 1
    for seconds in (5.0, 10.0):
        assert most_in_any_window(times, seconds) <= 5 * seconds + 5
    store.close()
    figures(
        **{
            f"rate_5s_step_{step}_sent": len(times),
            f"rate_5s_step_{step}_span_s": round(span, 2),
            f"rate_5s_step_{step}_most_in_1s": most_in_any_window(times, 1.0),
            f"rate_5s_step_{step}_held_max": held_seen,
        }
    )


def test_rate_never_sends_more_than_5_in_any_second(tmp_path: Path) -> None:
    sender, store, _ = drive(0.1, tmp_path)
    store.close()
    assert most_in_any_window([at for at, _ in sender.sent], 1.0) <= 5


def test_limits_tested(figures: Any) -> None:
    """How many limits this file drives end to end (for RELIABILITY.md)."""
    tested = [
        "request_bytes",
        "source max_bytes",
        "fields_per_record",
        "record id length",
        "Idempotency-Key length",
        "webhook items per delivery",
        "chain_depth",
        "effects_per_change",
        "channel rate",
    ]
    figures(limits_tested=len(tested))
    assert len(set(tested)) == len(tested)
