"""Form bodies for webhook sources: the PHP-style key parser on its own (cases, malformed keys, a
round trip of generated nested data), and urlencoded and multipart deliveries through the app with
the same map, coercion and limits as JSON; the body_token and zalo_oa schemes on a source."""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import urlencode

import pytest
from http_support import SECRET, T0, Api, MakeApi, sign
from hypothesis import given, settings
from hypothesis import strategies as st

from flowctl.sources.errors import BadRequest, Misconfigured, Unauthorized
from flowctl.sources.forms import nest, parse_multipart, parse_payload, parse_urlencoded, split_key
from flowctl.sources.payloads import MAX_DEPTH
from flowctl.sources.webhooks import WebhookSource
from flowctl.spec import model as m

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


# ------------------------------------------------------------------------------- the parser


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            b"event=ONCRMDEALUPDATE&data[FIELDS][ID]=123&auth[application_token]=abc&auth[domain]=x.bitrix24.vn"
            b"&ts=1700000000",
            {
                "event": "ONCRMDEALUPDATE",
                "data": {"FIELDS": {"ID": "123"}},
                "auth": {"application_token": "abc", "domain": "x.bitrix24.vn"},
                "ts": "1700000000",
            },
        ),
        (b"a[]=1&a[]=2", {"a": ["1", "2"]}),
        (b"a[0]=x&a[1]=y", {"a": ["x", "y"]}),
        (b"a[1]=x&a[0]=y", {"a": {"1": "x", "0": "y"}}),  # not in order: a mapping, as sent
        (b"a[0]=x&a[2]=y", {"a": {"0": "x", "2": "y"}}),  # not dense
        (b"a[3]=x", {"a": {"3": "x"}}),
        (b"a[01]=x", {"a": {"01": "x"}}),  # not a PHP integer key
        (b"a[]=x&a[k]=y", {"a": {"0": "x", "k": "y"}}),
        (b"a[0][n]=1&a[0][m]=2&a[1][n]=3", {"a": [{"n": "1", "m": "2"}, {"n": "3"}]}),
        (b"a=1&a=2", {"a": "2"}),  # PHP keeps the last
        (b"empty=&flag", {"empty": "", "flag": ""}),
        (b"q=a+b%26c%3D&t=%C4%90%E1%BA%B7t+h%C3%A0ng", {"q": "a b&c=", "t": "Đặt hàng"}),
        (b"data%5BFIELDS%5D%5BID%5D=9", {"data": {"FIELDS": {"ID": "9"}}}),  # brackets percent-encoded
    ],
)
def test_php_keys_nest_as_php_reads_them(body: bytes, expected: dict[str, Any]) -> None:
    assert parse_urlencoded(body) == expected


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"", "empty"),
        (b"a[b=1", "unbalanced brackets"),
        (b"a]=1", "unbalanced brackets"),
        (b"a[b]c=1", "unbalanced brackets"),
        (b"[a]=1", "no name before its brackets"),
        (b"a=1&a[b]=2", "'a' is given both a value and nested keys"),
        (b"a[b][c]=1&a[b]=2", "'a[b]' is given both a value and nested keys"),
        (b"a=%FF", "not UTF-8"),
        (("a" + "[x]" * MAX_DEPTH + "=1").encode(), "nested deeper"),
        (b"&".join(b"k%d=1" % i for i in range(10_001)), "more than 10000 fields"),
        (b"a%00=1", "NUL"),
    ],
)
def test_a_malformed_form_is_a_400_naming_what_is_wrong(body: bytes, says: str) -> None:
    with pytest.raises(BadRequest) as raised:
        parse_urlencoded(body)
    assert says in raised.value.message


def test_split_key() -> None:
    assert split_key("data[FIELDS][ID]") == ["data", "FIELDS", "ID"]
    assert split_key("a[]") == ["a", ""]
    assert split_key("plain") == ["plain"]


KEYS = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_-.", min_size=1, max_size=8)
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
DATA = st.recursive(
    TEXT,
    lambda inner: st.lists(inner, min_size=1, max_size=4) | st.dictionaries(KEYS, inner, min_size=1, max_size=4),
    max_leaves=20,
)


def php_pairs(value: Any, prefix: str, brackets: bool) -> list[tuple[str, str]]:
    """``value`` as PHP's http_build_query writes it: lists with indices, or ``[]`` for scalars."""
    if isinstance(value, dict):
        return [pair for key, item in value.items() for pair in php_pairs(item, f"{prefix}[{key}]", brackets)]
    if isinstance(value, list):
        if brackets and all(isinstance(item, str) for item in value):
            return [(f"{prefix}[]", item) for item in value]
        return [pair for i, item in enumerate(value) for pair in php_pairs(item, f"{prefix}[{i}]", brackets)]
    return [(prefix, value)]


@settings(max_examples=200, deadline=None)
@given(data=st.dictionaries(KEYS, DATA, min_size=1, max_size=5), brackets=st.booleans())
def test_nested_data_survives_a_round_trip_through_php_keys(data: dict[str, Any], brackets: bool) -> None:
    pairs = [pair for key, value in data.items() for pair in php_pairs(value, key, brackets)]
    assert nest(pairs) == data
    assert parse_urlencoded(urlencode(pairs).encode()) == data


def multipart(fields: list[tuple[str, str]], boundary: str = "b24-boundary") -> tuple[bytes, str]:
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields
    ]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_multipart_fields_nest_like_urlencoded_ones() -> None:
    body, content_type = multipart([("event", "ONCRMDEALADD"), ("data[FIELDS][ID]", "5"), ("tags[]", "Đà Nẵng")])

    assert parse_multipart(body, content_type) == {
        "event": "ONCRMDEALADD",
        "data": {"FIELDS": {"ID": "5"}},
        "tags": ["Đà Nẵng"],
    }
    assert parse_payload(body, content_type) == parse_multipart(body, content_type)
    assert parse_payload(b'{"a": 1}', None) == {"a": 1}


@pytest.mark.parametrize(
    ("body", "content_type", "says"),
    [
        (b"--x\r\n\r\nv\r\n--x--\r\n", "multipart/form-data; boundary=x", "Content-Disposition"),
        (b"no parts at all", "multipart/form-data; boundary=x", "malformed"),
        (b"--x\r\nContent-Disposition: form-data\r\n\r\nv\r\n--x--\r\n", "multipart/form-data; boundary=x", "name="),
        (
            b'--x\r\nContent-Disposition: form-data; name="f"; filename="a.bin"\r\n\r\n\xff\xfe\r\n--x--\r\n',
            "multipart/form-data; boundary=x",
            "not UTF-8",
        ),
        (b"--x\r\n\r\nv\r\n--x--\r\n", "multipart/form-data", "boundary="),
    ],
)
def test_a_malformed_multipart_body_is_a_400(body: bytes, content_type: str, says: str) -> None:
    with pytest.raises(BadRequest) as raised:
        parse_multipart(body, content_type)
    assert says in raised.value.message


# ------------------------------------------------------------------------------- through the app


def test_a_urlencoded_delivery_maps_and_coerces_like_json(api: Api) -> None:
    body = urlencode({"request_id": "9", "product": "Sofa", "amount": "1500000", "phone": "0912345678"}).encode()

    response = api.client.post("/hooks/form", content=body, headers={**FORM, "Authorization": f"Bearer {SECRET}"})

    assert response.status_code == 202, response.text
    (change,) = api.changes()
    assert (change.record_id, change.op) == ("form-9", "put")
    assert change.fields == {"title": "Website: Sofa", "amount": 1500000, "phone": "0912345678"}


def test_a_signed_multipart_delivery_with_php_keys_is_stored(api: Api) -> None:
    body, content_type = multipart(
        [("entity", "deal"), ("id", "7"), ("delivery", "d-7"), ("data[title]", "Bàn ăn"), ("data[amount]", "990000")]
    )

    response = api.client.post(
        "/hooks/crm", content=body, headers={"Content-Type": content_type, "X-Signature": sign(body)}
    )

    assert response.status_code == 202, response.text
    (change,) = api.changes()
    assert change.fields == {"title": "Bàn ăn", "amount": 990000}
    assert change.idempotency_key == "crm:d-7"


def test_a_form_over_the_source_limit_is_413(api: Api) -> None:
    body = urlencode({"entity": "deal", "id": "7", "data[title]": "x" * 3000}).encode()

    response = api.client.post("/hooks/crm", content=body, headers={**FORM, "X-Signature": sign(body)})

    assert response.status_code == 413
    assert api.changes() == []


def test_an_unsigned_form_is_refused_before_it_is_parsed(api: Api) -> None:
    response = api.client.post("/hooks/crm", content=b"a[b=1", headers=FORM)

    assert response.status_code == 401


# ------------------------------------------------------------------------------- the schemes

ZALO_APP = "1234567890"
ZALO_KEY = "zalo-oa-key"


def source(**auth: str) -> m.Source:
    return m.Source(
        metadata=m.Metadata(name="s"),
        path="/hooks/s",
        auth=auth.pop("type"),  # type: ignore[arg-type]
        secret=auth.pop("secret", "${TOKEN}"),
        auth_field=auth.pop("field", ""),
        app_id=auth.pop("app_id", ""),
        map={"object": "deal", "id": "{{ payload.id }}"},
    )


def test_body_token_compares_the_field_with_the_secret() -> None:
    hook = WebhookSource(source(type="body_token", field="auth.application_token"), {"TOKEN": "b24-s3cr3t"})

    checked = hook.check_payload({"event": "E", "auth": {"application_token": "b24-s3cr3t", "domain": "x.vn"}})
    assert checked == {"event": "E", "auth": {"domain": "x.vn"}}  # no map can store the token
    wrong = [
        {"auth": {"application_token": "b24-s3cr3t-2"}},
        {"auth": "b24-s3cr3t"},
        {},
        [1],
        {"auth": {"application_token": ["b24-s3cr3t"]}},
    ]
    for payload in wrong:
        with pytest.raises(Unauthorized) as raised:
            hook.check_payload(payload)
        assert "auth.application_token" in raised.value.message and "s3cr3t" not in raised.value.message


def test_a_scheme_whose_secret_is_unset_answers_500() -> None:
    for scheme in (source(type="body_token", field="t"), source(type="zalo_oa", app_id="${ZALO_APP}")):
        hook = WebhookSource(scheme, {})
        assert hook.misconfigured
        with pytest.raises(Misconfigured):
            hook.check_headers({})
    assert "app_id" in WebhookSource(source(type="zalo_oa", app_id="${ZALO_APP}"), {"TOKEN": "k"}).misconfigured


def zalo_body(stamp: str | int) -> bytes:
    return json.dumps({"event_name": "follow", "id": "u1", "timestamp": stamp}).encode()


def zalo_headers(body: bytes, stamp: str | int, key: str = ZALO_KEY) -> dict[str, str]:
    mac = hashlib.sha256(ZALO_APP.encode() + body + str(stamp).encode() + key.encode()).hexdigest()
    return {"X-ZEvent-Signature": f"mac={mac}"}


@pytest.mark.parametrize("stamp", [str(int(T0.timestamp() * 1000) - 60_000), int(T0.timestamp()) + 120])
def test_zalo_oa_accepts_its_mac_with_a_timestamp_in_ms_or_s(stamp: str | int) -> None:
    hook = WebhookSource(
        source(type="zalo_oa", app_id="${ZALO_APP}", secret="${KEY}"), {"ZALO_APP": ZALO_APP, "KEY": ZALO_KEY}
    )
    body = zalo_body(stamp)

    hook.authenticate(zalo_headers(body, stamp), body, T0)


@pytest.mark.parametrize(
    ("body", "stamp", "says"),
    [
        (zalo_body("1"), "1", "minutes from now"),
        (zalo_body(str(int(T0.timestamp() * 1000) + 301_000)), None, "minutes from now"),
        (b'{"event_name": "follow"}', "", "timestamp"),
        (b"not json", "", "timestamp"),
        (zalo_body("12.5"), "12.5", "timestamp"),
        (zalo_body("١٢٣"), "١٢٣", "timestamp"),  # digits, but not ASCII ones
        (zalo_body("9" * 400), "9" * 400, "timestamp"),
        (zalo_body(-5), "-5", "timestamp"),
    ],
)
def test_zalo_oa_refuses_stale_or_unstamped_events(body: bytes, stamp: str | None, says: str) -> None:
    hook = WebhookSource(
        source(type="zalo_oa", app_id="${ZALO_APP}", secret="${KEY}"), {"ZALO_APP": ZALO_APP, "KEY": ZALO_KEY}
    )
    sent = json.loads(body)["timestamp"] if stamp is None else stamp

    with pytest.raises(Unauthorized) as raised:
        hook.authenticate(zalo_headers(body, sent), body, T0)
    assert says in raised.value.message
    assert ZALO_KEY not in raised.value.message


def test_zalo_oa_source_through_the_app(make_api: MakeApi) -> None:
    zalo = """
apiVersion: flowctl/v1
kind: Source
metadata: {name: zalo}
spec:
  path: /hooks/zalo
  auth: {type: zalo_oa, app_id: "${ZALO_APP}", secret: "${KEY}"}
  map: {object: deal, id: "{{ payload.id }}", event: "{{ payload.event_name }}"}
"""
    api = make_api(env={"HOOK_SECRET": SECRET, "ZALO_APP": ZALO_APP, "KEY": ZALO_KEY}, **{"sources/zalo.yaml": zalo})
    stamp = str(int(api.svc.clock.now().timestamp() * 1000))
    body = zalo_body(stamp)

    good = api.client.post("/hooks/zalo", content=body, headers=zalo_headers(body, stamp))
    bad = api.client.post("/hooks/zalo", content=body, headers=zalo_headers(body, stamp, key="other"))

    assert good.status_code == 202, good.text
    assert bad.status_code == 401 and "X-ZEvent-Signature" in bad.json()["error"]["message"]
    (change,) = api.changes()
    assert (change.op, change.event, change.record_id) == ("event", "follow", "u1")
