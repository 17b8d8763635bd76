"""A phone field takes only numbers a numbering plan has: the API answers 422 naming the field,
and a number without +country code is read in Config ``phone_region`` (VN unless set)."""

from __future__ import annotations

import pytest
from http_support import CONFIG, MakeApi, dumps, sign


@pytest.mark.parametrize("phone", ["123456", "01686123456", "+84 12"])
def test_a_phone_no_plan_has_is_422_naming_the_field(make_api: MakeApi, phone: str) -> None:
    api = make_api()
    refused = api.client.put("/v1/records/deal/d1", json={"fields": {"title": "Sofa", "phone": phone}})
    assert refused.status_code == 422
    message = refused.json()["error"]["message"]
    assert message.startswith(f"field 'phone' (phone) '{phone}' is not a phone number any numbering plan has")
    assert "e.g. 0912345678, or with its country code, e.g. +84912345678" in message
    assert api.client.get("/v1/records/deal/d1").status_code == 404  # nothing stored


def test_the_eleven_digit_mobiles_retired_in_2018_are_explained(make_api: MakeApi) -> None:
    refused = make_api().client.patch("/v1/records/deal/d1", json={"fields": {"phone": "0168 612 3456"}})
    assert refused.status_code == 422
    assert "became ten-digit in 2018 (0168 → 038" in refused.json()["error"]["message"]


@pytest.mark.parametrize("phone", ["0901234567", "+84 90 123 4567", "0386123456", "02431234567", "+14155552671"])
def test_numbers_of_a_plan_are_stored_as_written(make_api: MakeApi, phone: str) -> None:
    api = make_api()
    assert api.client.put("/v1/records/deal/d1", json={"fields": {"title": "Sofa", "phone": phone}}).status_code == 202
    assert api.client.get("/v1/records/deal/d1").json()["fields"]["phone"] == phone


def test_phone_region_decides_how_a_national_number_is_read(make_api: MakeApi) -> None:
    api = make_api(config=CONFIG + "  phone_region: TH\n")
    bangkok = api.client.put("/v1/records/deal/d1", json={"fields": {"title": "Sofa", "phone": "021234567"}})
    assert bangkok.status_code == 202
    hanoi = api.client.put("/v1/records/deal/d2", json={"fields": {"title": "Sofa", "phone": "0386123456"}})
    assert hanoi.status_code == 422
    assert "read in region TH" in hanoi.json()["error"]["message"]
    assert "+66" in hanoi.json()["error"]["message"]


def test_a_webhook_delivery_with_a_phone_no_plan_has_is_422_and_stores_nothing(make_api: MakeApi) -> None:
    api = make_api()
    item = {"entity": "deal", "id": 7, "delivery": "d-1", "data": {"title": "Sofa", "phone": "01686123456"}}
    body = dumps(item)
    headers = {"Content-Type": "application/json", "X-Signature": sign(body)}
    refused = api.client.post("/hooks/crm", content=body, headers=headers)
    assert refused.status_code == 422
    assert "field 'phone' (phone) '01686123456' is not a phone number" in refused.json()["error"]["message"]
    assert api.changes() == []
