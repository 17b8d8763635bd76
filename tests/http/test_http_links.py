"""A ref field must name a live record: the API and webhook sources answer 422 naming the field
and the id; a record whose write is acknowledged, or that the same delivery writes, counts."""

from __future__ import annotations

from http_support import MakeApi, dumps, sign

LINKS = """
apiVersion: flowctl/v1
kind: ObjectType
metadata: {name: customer}
spec:
  fields:
    full_name: {type: string}
---
apiVersion: flowctl/v1
kind: ObjectType
metadata: {name: order}
spec:
  fields:
    customer: {type: ref, object: customer}
"""


def test_a_link_to_nothing_is_422_and_a_queued_record_counts(make_api: MakeApi) -> None:
    api = make_api(**{"objects/links.yaml": LINKS})
    refused = api.client.put("/v1/records/order/o1", json={"fields": {"customer": "c9"}})
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["message"] == "field 'customer' links to customer c9, which does not exist or is deleted"
    assert api.client.put("/v1/records/customer/c1", json={"fields": {"full_name": "Mai"}}).status_code == 202
    assert api.client.put("/v1/records/order/o2", json={"fields": {"customer": "c1"}}).status_code == 202
    assert api.client.patch("/v1/records/order/o2", json={"fields": {"customer": "c2"}}).status_code == 422
    assert api.client.patch("/v1/records/order/o2", json={"fields": {"customer": None}}).status_code == 202


def test_a_webhook_delivery_may_link_to_a_record_it_writes_itself(make_api: MakeApi) -> None:
    api = make_api(**{"objects/links.yaml": LINKS})
    items = [
        {"entity": "customer", "id": "c5", "delivery": "d-1", "data": {"full_name": "Lan"}},
        {"entity": "order", "id": "o5", "delivery": "d-2", "data": {"customer": "c5"}},
    ]
    body = dumps(items)
    headers = {"Content-Type": "application/json", "X-Signature": sign(body)}
    assert api.client.post("/hooks/crm", content=body, headers=headers).status_code == 202
    body = dumps([{"entity": "order", "id": "o6", "delivery": "d-3", "data": {"customer": "c6"}}])
    headers = {"Content-Type": "application/json", "X-Signature": sign(body)}
    refused = api.client.post("/hooks/crm", content=body, headers=headers)
    assert refused.status_code == 422
    assert "links to customer c6" in refused.json()["error"]["message"]
