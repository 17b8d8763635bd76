"""/openapi.json is valid OpenAPI 3.1, lists every route, and what the app answers conforms to it."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
import pytest
from http_support import CONFIG, Api, Background, FailingStore, MakeApi, dumps, sign
from openapi_spec_validator import OpenAPIV31SpecValidator
from starlette.routing import Route

from flowctl.runtime.api.handlers import openapi, routes

DEAL = {"fields": {"title": "Sofa"}}


@pytest.fixture
def doc(api: Api) -> dict[str, Any]:
    response = api.client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def test_the_document_is_valid_openapi_3_1(doc: dict[str, Any]) -> None:
    OpenAPIV31SpecValidator(doc).validate()
    assert doc == openapi()


@pytest.mark.parametrize("secured", [False, True])
def test_every_operation_is_named_tagged_and_says_its_role(secured: bool) -> None:
    doc = openapi(secured=secured)
    OpenAPIV31SpecValidator(doc).validate()
    declared = {
        (endpoint.documented_path, method): operation.role
        for endpoint in routes.endpoints
        for method, operation in endpoint.operations.items()
    }
    ids = []
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            where = f"{method.upper()} {path}"
            ids.append(operation.get("operationId"))
            assert operation.get("operationId"), f"{where} has no operationId"
            assert operation.get("tags"), f"{where} has no tags"
            role = declared[(path, method)]
            assert operation.get("x-required-role") == role, f"{where}: x-required-role is not {role}"
            secured_by = [{"bearerAuth": []}] if secured and role is not None else None
            assert operation.get("security") == secured_by, f"{where}: security {operation.get('security')}"
            if role is not None:  # what the role check answers is documented with the operation
                assert {"401", "403"} <= set(operation["responses"]), f"{where} does not document 401 and 403"
    assert len(ids) == len(set(ids)), f"operationIds used twice: {sorted(i for i in ids if ids.count(i) > 1)}"


def test_the_document_is_secured_once_config_sets_a_token(make_api: MakeApi) -> None:
    access = '  access:\n    - {name: ci, token: "${CI_TOKEN}", role: viewer}\n'
    api = make_api(config=CONFIG + access, env={"CI_TOKEN": "c1", "HOOK_SECRET": "s"})
    served = api.client.get("/openapi.json").json()

    assert served == openapi(secured=True)
    OpenAPIV31SpecValidator(served).validate()


def test_every_route_and_method_is_documented(api: Api, doc: dict[str, Any]) -> None:
    app_routes = api.client.app.routes  # type: ignore[attr-defined]
    routes = [r for r in app_routes if isinstance(r, Route) and r.path != "/ui"]  # the console is no API operation
    documented = {
        (path, method.upper()) for path, item in doc["paths"].items() for method in item if method != "parameters"
    }

    served = {
        (re.sub(r"\{(\w+):path\}", r"{\1}", r.path), method)
        for r in routes
        for method in (r.methods or ())
        if method != "HEAD"
    }

    assert served == documented


def conforms(doc: dict[str, Any], method: str, path: str, response: Any) -> None:
    """The status is documented for the operation and the body fits the documented schema."""
    operation = doc["paths"][path][method.lower()]
    status = str(response.status_code)
    assert status in operation["responses"], f"{method} {path} answered undocumented {status}: {response.text}"
    declared = operation["responses"][status]
    if "$ref" in declared:
        declared = doc["components"]["responses"][declared["$ref"].rsplit("/", 1)[1]]
    (media, content), *_ = declared["content"].items()
    assert response.headers["content-type"].startswith(media)
    if media == "application/json":
        schema = {**content["schema"], "components": doc["components"]}
        jsonschema.Draft202012Validator(schema).validate(response.json())
    for header in declared.get("headers", {}):
        assert header.lower() in response.headers


def test_answers_conform_to_the_document(api: Api, doc: dict[str, Any]) -> None:
    client = api.client
    record = "/v1/records/{object}/{id}"
    calls = [
        ("PUT", record, client.put("/v1/records/deal/1", json=DEAL)),
        ("PUT", record, client.put("/v1/records/deal/1", json={"fields": {}})),
        ("PUT", record, client.put("/v1/records/deal/1", content=b"[", headers={"content-type": "application/json"})),
        ("PUT", record, client.put("/v1/records/deal/1", content=b"x", headers={"content-type": "text/csv"})),
        ("PUT", record, client.put("/v1/records/deal/1", json={"fields": {"title": "x" * 9000}})),
        ("PUT", record, client.put("/v1/records/nope/1", json=DEAL)),
        ("PUT", record, client.put("/v1/records/deal/2", json=DEAL, headers={"Idempotency-Key": "k"})),
        ("PUT", record, client.put("/v1/records/deal/3", json=DEAL, headers={"Idempotency-Key": "k"})),
        ("PATCH", record, client.patch("/v1/records/deal/1", json={"fields": {"amount": 3}})),
        ("DELETE", record, client.delete("/v1/records/deal/1")),
        ("GET", record, client.get("/v1/records/deal/404")),
        ("GET", "/v1/records/{object}", client.get("/v1/records/deal", params={"limit": 0})),
        ("POST", "/v1/records/{object}/{id}/stage", client.post("/v1/records/deal/1/stage", json={"stage": "zz"})),
        ("POST", "/v1/events", client.post("/v1/events", json={"event": "e", "object": "deal", "id": 1})),
        ("POST", "/hooks/{path}", client.post("/hooks/crm", content=b"{}", headers={"X-Signature": "00"})),
        ("POST", "/hooks/{path}", client.post("/hooks/none", json={})),
        ("GET", "/healthz", client.get("/healthz")),
        ("GET", "/readyz", client.get("/readyz")),
        ("GET", "/metrics", client.get("/metrics")),
    ]
    calls += [
        ("GET", record, client.get("/v1/records/deal/2")),  # pending
        ("PUT", record, client.put("/v1/records/deal/4", json=DEAL, headers={"Prefer": "wait=0.05"})),  # 202
    ]
    api.process()
    with Background(api):
        waited = client.put("/v1/records/deal/5", json=DEAL, headers={"Prefer": "wait=10"})
    assert waited.status_code == 200, waited.text
    calls += [
        ("PUT", record, waited),
        ("GET", record, client.get("/v1/records/deal/2")),
        ("GET", "/v1/records/{object}", client.get("/v1/records/deal")),
        ("GET", "/v1/records/{object}", client.get("/v1/records/deal", params={"deleted": "true"})),  # deal 1
        ("GET", "/v1/records/{object}/{id}/timeline", client.get("/v1/records/deal/1/timeline")),  # deleted
    ]
    assert calls[-2][2].json()["items"][0]["deleted_at"] and calls[-1][2].json()["record"]["deleted"] is True
    body = dumps({"entity": "deal", "id": 1, "delivery": "x", "data": {"title": "t"}})
    signed = client.post("/hooks/crm", content=body, headers={"X-Signature": sign(body)})
    calls.append(("POST", "/hooks/{path}", signed))

    for method, path, response in calls:
        conforms(doc, method, path, response)
    assert {r.status_code for _, _, r in calls} >= {200, 202, 400, 401, 404, 409, 413, 415, 422}


def test_unavailable_answers_conform(make_api: MakeApi) -> None:
    api = make_api(store=FailingStore())
    doc = api.client.get("/openapi.json").json()

    conforms(doc, "PUT", "/v1/records/{object}/{id}", api.client.put("/v1/records/deal/1", json=DEAL))
    api.svc.is_ready = False
    conforms(doc, "GET", "/readyz", api.client.get("/readyz"))
