"""Webhook sources: signatures, replay window, redelivery, mapping and its errors."""

from __future__ import annotations

from typing import Any

import pytest
from http_support import SECRET, SOURCES, T0, Api, MakeApi, dumps, new_change, sign

from flowctl.sources.checks import check_change
from flowctl.sources.errors import Invalid
from flowctl.sources.mapping import compile_value
from flowctl.sources.webhooks import WebhookSource, resolve_secret
from flowctl.spec import model as m

DELIVERY = {"entity": "deal", "id": 7, "delivery": "d-1", "data": {"title": "Sofa", "amount": 1500000}}


def post(
    api: Api,
    payload: Any,
    *,
    signature: str | None = "sign",
    path: str = "/hooks/crm",
    headers: dict[str, str] | None = None,
) -> Any:
    body = payload if isinstance(payload, bytes) else dumps(payload)
    sent = {"Content-Type": "application/json", **(headers or {})}
    if signature == "sign":
        signature = sign(body)
    if signature is not None:
        sent["X-Signature"] = signature
    return api.client.post(path, content=body, headers=sent)


def test_a_signed_delivery_is_stored(api: Api) -> None:
    response = post(api, DELIVERY)

    assert response.status_code == 202
    assert response.json() == {"accepted": True, "changes": [{"seq": 1, "duplicate": False}], "duplicate": False}
    (change,) = api.changes()
    assert (change.object, change.record_id, change.op, change.source) == ("deal", "7", "patch", "crm")
    assert change.fields == {"title": "Sofa", "amount": 1500000}  # "{{ payload.data }}" kept as a mapping
    assert change.idempotency_key == "crm:d-1"


def test_the_signature_may_carry_a_sha256_prefix(api: Api) -> None:
    body = dumps(DELIVERY)

    assert post(api, body, signature="sha256=" + sign(body).upper()).status_code == 202


@pytest.mark.parametrize("signature", [None, "", "0" * 64, "sha256=nothex", "sign-with-other-secret"])
def test_a_bad_or_missing_signature_is_401_and_stores_nothing(api: Api, signature: str | None) -> None:
    if signature == "sign-with-other-secret":
        signature = sign(dumps(DELIVERY), secret="other")

    response = post(api, DELIVERY, signature=signature)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert api.changes() == []


def test_a_signature_of_another_body_is_401(api: Api) -> None:
    response = post(api, DELIVERY, signature=sign(dumps({**DELIVERY, "id": 8})))

    assert response.status_code == 401
    assert "does not match the body" in response.json()["error"]["message"]


def test_timestamped_signatures_are_accepted_within_five_minutes(api: Api) -> None:
    body = dumps(DELIVERY)
    stamp = str(int(T0.timestamp()) - 60)

    response = post(api, body, signature=sign(body, timestamp=stamp), headers={"X-Timestamp": stamp})

    assert response.status_code == 202


@pytest.mark.parametrize("offset", [-301, -86400, 400])
def test_a_replayed_old_timestamp_is_401(api: Api, offset: int) -> None:
    body = dumps(DELIVERY)
    stamp = str(int(T0.timestamp()) + offset)

    response = post(api, body, signature=sign(body, timestamp=stamp), headers={"X-Timestamp": stamp})

    assert response.status_code == 401
    assert "replayed or delayed" in response.json()["error"]["message"]
    assert api.changes() == []


def test_a_timestamp_not_covered_by_the_signature_is_401(api: Api) -> None:
    body = dumps(DELIVERY)
    stamp = str(int(T0.timestamp()))

    response = post(api, body, signature=sign(body), headers={"X-Timestamp": stamp})  # signed without it

    assert response.status_code == 401


def test_the_same_event_id_twice_stores_one_change(api: Api) -> None:
    first = post(api, DELIVERY)
    again = post(api, DELIVERY)

    assert first.status_code == again.status_code == 202
    assert again.json() == {"accepted": True, "changes": [{"seq": 1, "duplicate": True}], "duplicate": True}
    assert len(api.changes()) == 1


def test_a_list_delivery_maps_every_item_and_goes_in_together(api: Api) -> None:
    items = [{**DELIVERY, "id": n, "delivery": f"d-{n}"} for n in range(3)]

    response = post(api, items)

    assert response.status_code == 202
    assert [c["seq"] for c in response.json()["changes"]] == [1, 2, 3]
    assert [c.record_id for c in api.changes()] == ["0", "1", "2"]


def test_one_bad_item_refuses_the_whole_list(api: Api) -> None:
    items = [DELIVERY, {**DELIVERY, "delivery": "d-2", "data": {"title": "x", "amount": "lots"}}]

    response = post(api, items)

    assert response.status_code == 422
    assert response.json()["error"]["details"] == ["item 1: field 'amount' (money) must be a number, not str"]
    assert api.changes() == []


@pytest.mark.parametrize(
    ("payload", "named"),
    [
        ({**DELIVERY, "data": {"title": "x", "amount": [1]}}, "field 'amount' (money) must be a number, not list"),
        ({**DELIVERY, "data": {"title": "x", "nope": 1}}, "field 'nope' is not defined on deal"),
        ({**DELIVERY, "data": "text"}, "map.fields must give an object of fields, not string"),
        ({**DELIVERY, "entity": "car"}, "unknown object type 'car'"),
        ({**DELIVERY, "entity": {"a": 1}}, "map.object must give text, not object"),
        ({k: v for k, v in DELIVERY.items() if k != "id"}, "map.id: 'payload' has no field 'id'"),
        ({**DELIVERY, "id": ""}, "map.id gave an empty value"),
    ],
)
def test_mapping_problems_are_422_naming_them(api: Api, payload: Any, named: str) -> None:
    response = post(api, payload)

    assert response.status_code == 422
    assert named in response.json()["error"]["message"]
    assert api.changes() == []


def test_deep_nesting_and_bad_json_are_400(api: Api) -> None:
    deep = b'{"entity": "deal", "id": 1, "data": {"details": ' + b"[" * 50 + b"]" * 50 + b"}}"

    assert post(api, deep).status_code == 400
    assert post(api, b"{not json").status_code == 400
    assert api.changes() == []


def test_the_source_size_limit_is_413(api: Api) -> None:
    body = dumps({**DELIVERY, "data": {"title": "x" * 3000}})  # the source allows 2048 bytes

    assert post(api, body).status_code == 413


def test_unknown_hook_path_is_404(api: Api) -> None:
    assert post(api, DELIVERY, path="/hooks/other").status_code == 404


def test_a_bearer_source_maps_templates_to_typed_fields(api: Api) -> None:
    payload = {"request_id": 42, "product": "Sofa", "amount": "1500000", "phone": 901234567}
    headers = {"Authorization": f"Bearer {SECRET}"}

    refused = post(api, payload, path="/hooks/form", signature=None)
    response = post(api, payload, path="/hooks/form", signature=None, headers=headers)

    assert refused.status_code == 401
    assert response.status_code == 202
    (change,) = api.changes()
    assert (change.op, change.record_id) == ("put", "form-42")
    # "1500000" for a money field becomes a number, 901234567 for a phone field becomes text
    assert change.fields == {"title": "Website: Sofa", "amount": 1500000, "phone": "901234567"}


def test_a_source_whose_secret_is_unset_refuses_with_500(make_api: Any) -> None:
    api = make_api(env={})

    response = post(api, DELIVERY)

    assert response.status_code == 500
    assert response.json()["error"]["code"] == "misconfigured"
    assert "HOOK_SECRET" not in response.text  # configuration details stay in the log


# ------------------------------------------------------------------------------- units


def source(**map_: Any) -> WebhookSource:
    spec = m.Source(
        metadata=m.Metadata(name="s"),
        path="/hooks/s",
        auth="none",
        map=m.frozen_map({"object": "deal", "id": "1", **map_}),
    )
    return WebhookSource(spec, {})


def test_single_expressions_keep_their_type_and_templates_give_text() -> None:
    context = {"payload": {"n": 3, "data": {"a": [1, 2]}, "name": "Lan"}}

    assert compile_value("{{ payload.n }}", "x")(context) == 3
    assert compile_value("{{ payload.data }}", "x")(context) == {"a": [1, 2]}
    assert compile_value("{{ payload.n }}{{ payload.n }}", "x")(context) == "33"
    assert compile_value("Hi {{ payload.name }}", "x")(context) == "Hi Lan"
    assert compile_value({"k": ["{{ payload.n + 1 }}", 5]}, "x")(context) == {"k": [4, 5]}


def test_ops_events_and_duplicate_ids_within_a_list() -> None:
    event = source(event="{{ payload.kind }}", event_id="{{ headers['x-delivery'] }}", fields="{{ payload }}")

    changes = event.changes([{"kind": "invoice.paid"}, {"kind": "invoice.sent"}], {"x-delivery": "D"}, T0)

    assert [(c.op, c.event, dict(c.data)) for c in changes] == [
        ("event", "invoice.paid", {"kind": "invoice.paid"}),
        ("event", "invoice.sent", {"kind": "invoice.sent"}),
    ]
    assert [c.idempotency_key for c in changes] == ["s:D:0", "s:D:1"]  # one id for the delivery: by position
    with pytest.raises(Invalid, match=r"map\.op gave 'explode'"):
        source(op="explode").changes({}, {}, T0)
    with pytest.raises(Invalid, match=r"map\.op is move but the map has no stage"):
        source(op="move").changes({}, {}, T0)


def test_templates_cannot_see_the_signature_or_authorization() -> None:
    leaky = source(fields={"a": "{{ headers.authorization }}"})

    with pytest.raises(Invalid, match="has no field 'authorization'"):
        leaky.changes({}, {"authorization": "Bearer x", "x-other": "1"}, T0)


def test_check_change_covers_each_op(api: Api) -> None:
    bundle = api.svc.bundle

    assert check_change(bundle, new_change(op="move", stage="")) == ["a move needs the stage to move to"]
    assert check_change(bundle, new_change(op="event", event="")) == ["an event needs a name"]
    assert check_change(bundle, new_change(op="delete")) == []
    assert check_change(bundle, new_change(op="put", fields={"title": "x"}, stage="won")) == []


def test_a_secret_is_empty_when_a_variable_it_needs_is_missing() -> None:
    assert resolve_secret("${A}-${B}", {"A": "1", "B": "2"}) == "1-2"
    assert resolve_secret("${A}-${B}", {"A": "1"}) == ""
    assert resolve_secret("${A}-${B}", {"A": "1", "B": ""}) == ""
    assert resolve_secret("plain", {}) == "plain"


def test_a_source_secret_takes_a_default_as_a_channel_does(make_api: MakeApi) -> None:
    sources = SOURCES.replace('secret: "${HOOK_SECRET}"', 'secret: "${HOOK_SECRET:-fallback-secret}"')
    api = make_api(env={}, **{"sources/hooks.yaml": sources})
    body = dumps(DELIVERY)

    response = post(api, body, signature=sign(body, secret="fallback-secret"))

    assert response.status_code == 202, response.text
