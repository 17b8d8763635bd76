"""Malformed webhook deliveries against the real daemon: each is refused with a 4xx and an error
body that says what is wrong, and the store holds no change afterwards.

tests/http/test_http_hooks.py covers the basic cases (a missing or wrong signature, ±5 minute
timestamps, 50-deep nesting, one oversized body); this table goes after the edges: bodies that
are JSON only almost, values of the wrong JSON type in every mapped place, nesting just over the
limit and far over it, bodies streamed without a Content-Length or lying about it, signatures that
are nearly right, timestamps that are not numbers, and media types that are not JSON.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flowctl.sources.payloads import MAX_DEPTH
from flowctl.sources.webhooks import MAX_ITEMS
from flowctl.testing import FrozenClock
from tests.reliability.conftest import Daemon, Daemons, MakeDaemon

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
SECRET = "webhook-secret-7f3a"
LIMIT = 4096  # the crm source's max_bytes
FILES = {
    "flowctl.yaml": """
        apiVersion: flowctl/v1
        kind: Config
        metadata: {name: hooks}
        spec: {timezone: UTC, limits: {request_bytes: 262144}}
    """,
    "deal.yaml": """
        apiVersion: flowctl/v1
        kind: ObjectType
        metadata: {name: deal}
        spec:
          fields:
            title: {type: string, required: true}
            amount: {type: money}
            quantity: {type: integer}
            vip: {type: boolean}
            details: {type: json}
    """,
    "sources.yaml": """
        apiVersion: flowctl/v1
        kind: Source
        metadata: {name: crm}
        spec:
          type: webhook
          path: /hooks/crm
          secret: "${HOOK_SECRET}"
          max_bytes: 4096
          map: {object: "{{ payload.entity }}", id: "{{ payload.id }}", fields: "{{ payload.data }}",
                event_id: "{{ payload.delivery }}"}
        ---
        apiVersion: flowctl/v1
        kind: Source
        metadata: {name: bulk}
        spec:
          type: webhook
          path: /hooks/bulk
          secret: "${HOOK_SECRET}"
          map: {object: deal, id: "{{ payload.id }}", fields: "{{ payload.data }}"}
        ---
        apiVersion: flowctl/v1
        kind: Source
        metadata: {name: form}
        spec:
          type: webhook
          path: /hooks/form
          auth: bearer
          secret: "${HOOK_SECRET}"
          map: {object: deal, id: "{{ payload.id }}", op: put, fields: {title: "{{ payload.title }}"}}
    """,
}
GOOD = {"entity": "deal", "id": 7, "delivery": "d-1", "data": {"title": "Sofa", "amount": 1500000}}


def sign(body: bytes, secret: str = SECRET, stamp: str | None = None) -> str:
    signed = body if stamp is None else stamp.encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def nested(levels: int, opener: bytes = b"[", closer: bytes = b"]") -> bytes:
    """A delivery whose data.details holds ``levels`` nested lists (or objects): with the delivery
    and its data that makes ``levels + 2`` levels."""
    inner = opener * levels + (b"1" if opener != b"[" else b"") + closer * levels
    return b'{"entity": "deal", "id": 1, "data": {"title": "x", "details": ' + inner + b"}}"


@dataclass
class Delivery:
    """One hostile request: what is sent and what the answer must be."""

    name: str
    body: bytes | None = None  # None: GOOD as JSON
    status: int = 400
    code: str = "bad_request"
    says: str = ""  # part of the error message
    path: str = "/hooks/crm"
    headers: dict[str, str] = field(default_factory=dict)
    signature: str | None = "sign"  # "sign": a correct signature of the body (and stamp)
    stamp: str | None = None  # X-Timestamp, signed along when signature == "sign"
    content_type: str | None = "application/json"
    stream: bool = False  # sent in chunks without a Content-Length

    def request(self) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(GOOD).encode() if self.body is None else self.body
        headers = dict(self.headers)
        if self.content_type is not None:
            headers["Content-Type"] = self.content_type
        if self.stamp is not None:
            headers["X-Timestamp"] = self.stamp
        if self.signature == "sign":
            headers["X-Signature"] = sign(body, stamp=self.stamp)
        elif self.signature is not None:
            headers["X-Signature"] = self.signature
        return body, headers


def js(value: Any) -> bytes:
    return json.dumps(value).encode()


STAMP = str(int(T0.timestamp()))
CASES = [
    # --- not JSON, or JSON only almost
    Delivery("empty body", b"", code="invalid_json", says="empty"),
    Delivery("whitespace only", b" \n\t ", code="invalid_json", says="empty"),
    Delivery("truncated object", b'{"entity": "deal", "id":', code="invalid_json", says="line 1 column"),
    Delivery("trailing garbage", js(GOOD) + b" {}", code="invalid_json", says="Extra data"),
    Delivery("single quotes", b"{'entity': 'deal'}", code="invalid_json", says="not valid JSON"),
    Delivery("NaN", b'{"entity": "deal", "id": 1, "data": {"amount": NaN}}', code="invalid_json", says="NaN"),
    Delivery("Infinity", b'{"entity": "deal", "id": 1, "data": {"amount": -Infinity}}', code="invalid_json"),
    Delivery(
        "a float overflowing",
        b'{"entity": "deal", "id": 1, "data": {"amount": 1e999}}',
        code="invalid_json",
        says="too large",
    ),
    Delivery(
        "not UTF-8", b'{"entity": "deal", "id": 1, "data": {"title": "\xff\xfe"}}', code="invalid_json", says="UTF-8"
    ),
    Delivery(
        "a lone surrogate",
        b'{"entity": "deal", "id": 1, "data": {"title": "\\ud800"}}',
        code="invalid_json",
        says="surrogate",
    ),
    Delivery(
        "a lone surrogate in a key",
        b'{"entity": "deal", "id": 1, "data": {"\\udfff": 1}}',
        code="invalid_json",
        says="surrogate",
    ),
    # --- JSON of the wrong shape or type
    Delivery("a bare string", js("deal 7"), status=422, code="invalid", says="map.object"),
    Delivery("null", b"null", status=422, code="invalid", says="map.object"),
    Delivery("a list of numbers", js([1, 2]), status=422, code="invalid", says="item 0"),
    Delivery(
        "id is an object",
        js({**GOOD, "id": {"$gt": ""}}),
        status=422,
        code="invalid",
        says="map.id must give text, not object",
    ),
    Delivery(
        "id is a boolean",
        js({**GOOD, "id": True}),
        status=422,
        code="invalid",
        says="map.id must give text, not boolean",
    ),
    Delivery("id is null", js({**GOOD, "id": None}), status=422, code="invalid", says="map.id"),
    Delivery(
        "entity is a list",
        js({**GOOD, "entity": ["deal"]}),
        status=422,
        code="invalid",
        says="map.object must give text, not array",
    ),
    Delivery(
        "data is a list",
        js({**GOOD, "data": [["title", "x"]]}),
        status=422,
        code="invalid",
        says="map.fields must give an object of fields, not array",
    ),
    Delivery(
        "quantity is a fraction",
        js({**GOOD, "data": {"title": "x", "quantity": 1.5}}),
        status=422,
        code="invalid",
        says="quantity",
    ),
    Delivery(
        "vip is a string", js({**GOOD, "data": {"title": "x", "vip": "maybe"}}), status=422, code="invalid", says="vip"
    ),
    Delivery(
        "title is an object", js({**GOOD, "data": {"title": {"$ne": 1}}}), status=422, code="invalid", says="title"
    ),
    Delivery("a NUL character", js({**GOOD, "data": {"title": "a\x00b"}}), status=422, code="invalid", says="NUL"),
    Delivery("a NUL in the id", js({**GOOD, "id": "7\x00"}), status=422, code="invalid", says="NUL"),
    Delivery(
        "a delivery id of an object",
        js({**GOOD, "delivery": {"a": 1}}),
        status=422,
        code="invalid",
        says="map.event_id",
    ),
    Delivery(
        "one bad item of a list",
        js([GOOD, {**GOOD, "delivery": "d-2", "id": []}]),
        status=422,
        code="invalid",
        says="item 1",
    ),
    Delivery(
        "too many items",
        js([{"id": n, "data": {"title": "x"}} for n in range(MAX_ITEMS + 1)]),
        path="/hooks/bulk",
        status=413,
        code="payload_too_large",
        says=f"at most {MAX_ITEMS} items",
    ),
    # --- nesting
    Delivery("one level too deep", nested(MAX_DEPTH - 1), code="invalid_json", says="nested deeper"),
    Delivery(
        "objects one level too deep", nested(MAX_DEPTH - 1, b'{"a":', b"}"), code="invalid_json", says="nested deeper"
    ),
    Delivery("100,000 levels", nested(100_000), path="/hooks/bulk", code="invalid_json", says="nested deeper"),
    Delivery(
        "deep inside a list delivery",
        b"[" + nested(MAX_DEPTH) + b"]",
        path="/hooks/bulk",
        code="invalid_json",
        says="nested deeper",
    ),
    # --- size: declared, streamed, lying
    Delivery(
        "declared over the limit",
        js({**GOOD, "data": {"title": "x" * LIMIT}}),
        status=413,
        code="payload_too_large",
        says=f"limit of {LIMIT}",
    ),
    Delivery(
        "streamed over the limit without Content-Length",
        js({**GOOD, "data": {"title": "x" * LIMIT}}),
        stream=True,
        status=413,
        code="payload_too_large",
        says=f"limit of {LIMIT}",
    ),
    Delivery(
        "streamed 1 MB to a 256 kB daemon",
        js({"id": 1, "data": {"title": "x" * 1_000_000}}),
        path="/hooks/bulk",
        stream=True,
        status=413,
        code="payload_too_large",
        says="262144",
    ),
    Delivery(
        "Content-Length not a number",
        headers={"Content-Length": "lots"},
        stream=True,
        says="Content-Length must be a number",
    ),
    Delivery(
        "Content-Length over the limit, small body",
        headers={"Content-Length": str(10**12)},
        stream=True,
        status=413,
        code="payload_too_large",
        says=f"limit of {LIMIT}",
    ),
    # --- signatures and tokens that are nearly right
    Delivery(
        "signature of the body with a newline added",
        signature=sign(js(GOOD) + b"\n"),
        status=401,
        code="unauthorized",
        says="does not match the body",
    ),
    Delivery(
        "signature with the secret's case changed",
        signature=sign(js(GOOD), SECRET.upper()),
        status=401,
        code="unauthorized",
    ),
    Delivery("signature truncated", signature=sign(js(GOOD))[:63], status=401, code="unauthorized"),
    Delivery("signature as base64", signature="c2lnbmF0dXJl", status=401, code="unauthorized"),
    Delivery(
        "signature in another header",
        signature=None,
        headers={"X-Hub-Signature-256": sign(js(GOOD))},
        status=401,
        code="unauthorized",
        says="needs a X-Signature header",
    ),
    Delivery(
        "signature of md5",
        signature=hmac.new(SECRET.encode(), js(GOOD), hashlib.md5).hexdigest(),
        status=401,
        code="unauthorized",
    ),
    Delivery(
        "bearer source without a token",
        path="/hooks/form",
        signature=None,
        status=401,
        code="unauthorized",
        says="Bearer",
    ),
    Delivery(
        "bearer source, Basic scheme",
        path="/hooks/form",
        signature=None,
        headers={"Authorization": f"Basic {SECRET}"},
        status=401,
        code="unauthorized",
    ),
    Delivery(
        "bearer source, a prefix of the token",
        path="/hooks/form",
        signature=None,
        headers={"Authorization": f"Bearer {SECRET[:-1]}"},
        status=401,
        code="unauthorized",
    ),
    Delivery(
        "bearer source, the token with a suffix",
        path="/hooks/form",
        signature=None,
        headers={"Authorization": f"Bearer {SECRET}x"},
        status=401,
        code="unauthorized",
    ),
    # --- timestamps
    Delivery(
        "a timestamp of words, signed", stamp="yesterday", status=401, code="unauthorized", says="must be unix seconds"
    ),
    Delivery("a timestamp of nan, signed", stamp="nan", status=401, code="unauthorized", says="replayed"),
    Delivery("a timestamp of inf, signed", stamp="inf", status=401, code="unauthorized", says="replayed"),
    Delivery("a timestamp of 1e400, signed", stamp="1e400", status=401, code="unauthorized", says="replayed"),
    Delivery(
        "a timestamp a week old, signed",
        stamp=str(int(T0.timestamp()) - 7 * 86400),
        status=401,
        code="unauthorized",
        says="replayed or delayed",
    ),
    Delivery(
        "a timestamp in milliseconds, signed",
        stamp=str(int(T0.timestamp()) * 1000),
        status=401,
        code="unauthorized",
        says="replayed or delayed",
    ),
    Delivery(
        "a timestamp added after signing",
        signature=sign(js(GOOD)),
        stamp=STAMP,
        status=401,
        code="unauthorized",
        says="'<X-Timestamp>.<body>'",
    ),
    # --- media types
    Delivery(
        "a form without the mapped fields",
        b"entity=deal&id=7",
        content_type="application/x-www-form-urlencoded",
        status=422,
        code="invalid",
        says="map.fields",
    ),
    Delivery(
        "a form key with unbalanced brackets",
        b"entity=deal&id=7&data[title=Sofa",
        content_type="application/x-www-form-urlencoded",
        says="unbalanced brackets",
    ),
    Delivery(
        "a form key both a value and an object",
        b"entity=deal&id=7&data=x&data[title]=Sofa",
        content_type="application/x-www-form-urlencoded",
        says="both a value and nested keys",
    ),
    Delivery(
        "a form percent-encoding bytes that are not UTF-8",
        b"entity=deal&id=7&data[title]=%FF",
        content_type="application/x-www-form-urlencoded",
        says="UTF-8",
    ),
    Delivery(
        "a form in another charset",
        b"entity=deal",
        content_type="application/x-www-form-urlencoded; charset=iso-8859-1",
        status=415,
        code="unsupported_media_type",
        says="UTF-8",
    ),
    Delivery(
        "multipart part without a name",
        b"--x\r\n\r\n{}\r\n--x--",
        content_type="multipart/form-data; boundary=x",
        says="Content-Disposition",
    ),
    Delivery(
        "multipart without a boundary",
        b"--x\r\n\r\n{}\r\n--x--",
        content_type="multipart/form-data",
        says="boundary",
    ),
    Delivery("XML", b"<deal id='7'/>", content_type="application/xml", status=415, code="unsupported_media_type"),
    Delivery(
        "a YAML body",
        b"entity: deal\nid: 7\n",
        content_type="application/yaml",
        status=415,
        code="unsupported_media_type",
    ),
    Delivery("text/plain that is not JSON", b"entity=deal", content_type="text/plain", code="invalid_json"),
]
_tried: list[str] = []


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    daemons = Daemons(tmp_path_factory.mktemp("hooks"))
    yield daemons(FILES, env={"HOOK_SECRET": SECRET}, clock=FrozenClock(T0))
    daemons.close()


def chunks(body: bytes, size: int = 1000) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_malformed_delivery_is_refused_with_a_clear_error_and_stores_nothing(daemon: Daemon, case: Delivery) -> None:
    body, headers = case.request()
    before = daemon.changes()

    response = daemon.client.post(case.path, content=chunks(body) if case.stream else body, headers=headers)

    _tried.append(case.name)
    assert response.status_code == case.status, response.text
    error = response.json()["error"]
    assert error["code"] == case.code
    assert case.says in error["message"]
    assert SECRET not in response.text
    assert daemon.changes() == before == 0


def test_the_good_delivery_of_the_table_is_accepted(make_daemon: MakeDaemon) -> None:
    """The table's requests differ from an accepted one only by what each case breaks."""
    daemon = make_daemon(FILES, env={"HOOK_SECRET": SECRET}, clock=FrozenClock(T0))
    for case in (Delivery("plain"), Delivery("timestamped", stamp=STAMP), Delivery("streamed", stream=True)):
        body, headers = case.request()
        response = daemon.client.post(case.path, content=chunks(body) if case.stream else body, headers=headers)
        assert response.status_code == 202, (case.name, response.text)
    assert daemon.changes() == 1  # one delivery id: the repeats are duplicates


def test_a_captured_delivery_replayed_after_the_window_is_refused(make_daemon: MakeDaemon) -> None:
    clock = FrozenClock(T0)
    daemon = make_daemon(FILES, env={"HOOK_SECRET": SECRET}, clock=clock)
    body = js({**GOOD, "delivery": "d-captured"})
    headers = {"Content-Type": "application/json", "X-Timestamp": STAMP, "X-Signature": sign(body, stamp=STAMP)}
    assert daemon.client.post("/hooks/crm", content=body, headers=headers).status_code == 202
    daemon.settle()

    clock.set(T0 + timedelta(minutes=5, seconds=1))
    replay = daemon.client.post("/hooks/crm", content=body, headers=headers)
    # the same delivery with its id changed, still under the captured signature
    tampered = daemon.client.post("/hooks/crm", content=body.replace(b"d-captured", b"d-other"), headers=headers)

    assert replay.status_code == 401
    assert "replayed or delayed" in replay.json()["error"]["message"]
    assert tampered.status_code == 401
    assert daemon.changes() == 1
    _tried.extend(["replay after the window", "tampered replay"])


def test_figures(figures: Any) -> None:
    figures(malformed_webhooks=len(_tried), table=len(CASES))
    assert _tried or pytest.skip("run with the table above")
