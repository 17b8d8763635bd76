"""Roles: every operation of the API lets in the role it declares and those above it, refuses the
roles below with 403 and a request without a known token with 401; a writer writes only its
objects; a token never shows in an answer, in the document or in the daemon's log.

The operations come from ``routes.endpoints``, so an endpoint added later is covered as it is
declared, without a line here.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from http_support import CONFIG, Api, MakeApi, dumps

from flowctl.cli.main import cli
from flowctl.runtime.api.access import listen_allowed
from flowctl.runtime.api.handlers import routes
from flowctl.runtime.api.openapi import ROLES, Endpoint, Role
from flowctl.testing import Daemon, write_config

TOKENS = {role: f"{role}-tok-7f3a9c1e" for role in ROLES} | {"deals-only": "deals-tok-52b8e0d4"}
ENV = {f"{name.upper().replace('-', '_')}_TOKEN": token for name, token in TOKENS.items()} | {"HOOK_SECRET": "s"}

ROLE_CONFIG = (
    CONFIG
    + "  access:\n"
    + "".join(f'    - {{name: {role}-1, token: "${{{role.upper()}_TOKEN}}", role: {role}}}\n' for role in ROLES)
    + '    - {name: deals-only, token: "${DEALS_ONLY_TOKEN}", role: writer, objects: [deal]}\n'
)

CONTACT = """
apiVersion: flowctl/v1
kind: ObjectType
metadata: {name: contact}
spec:
  fields:
    full_name: {type: string}
"""

#: A value for each path parameter an endpoint may declare; a name not listed gets "x".
PATH_VALUES = {"object": "deal", "id": "7", "path": "nowhere"}


def concrete(endpoint: Endpoint) -> str:
    """``endpoint``'s path with every parameter filled in."""
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda found: PATH_VALUES.get(found.group(1), "x"), endpoint.path)


def operations(secured: bool) -> list[tuple[str, str, Role | None]]:
    """(method, path, role) of every declared operation, HEAD with GET's role; ``secured``: those
    with a role, else the open ones."""
    found = []
    for endpoint in routes.endpoints:
        for method, operation in endpoint.operations.items():
            methods = (method, "head") if method == "get" else (method,)
            found += [(m.upper(), concrete(endpoint), operation.role) for m in methods]
    return [op for op in found if (op[2] is not None) is secured]


SECURED = operations(secured=True)
OPEN = operations(secured=False)


def call(api: Api, method: str, path: str, token: str | None = None, **headers: str) -> httpx.Response:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    body = None if method in ("GET", "HEAD", "DELETE") else b"{}"
    if body is not None:
        headers["Content-Type"] = "application/json"
    return api.client.request(method, path, content=body, headers=headers)


@pytest.fixture
def roles(make_api: MakeApi) -> Api:
    return make_api(config=ROLE_CONFIG, env=ENV, **{"objects/contact.yaml": CONTACT})


def no_token_in(text: str) -> None:
    for token in TOKENS.values():
        assert token not in text


@pytest.mark.parametrize(("method", "path", "role"), SECURED, ids=[f"{m} {p}" for m, p, _ in SECURED])
def test_each_role_below_the_operations_is_refused_and_the_others_let_in(
    roles: Api, method: str, path: str, role: Role
) -> None:
    for holder in ROLES:
        response = call(roles, method, path, TOKENS[holder])
        if ROLES.index(holder) < ROLES.index(role):
            assert response.status_code == 403, f"{holder} on {method} {path} ({role}): {response.text}"
            if method != "HEAD":
                error = response.json()["error"]
                assert sorted(error) == ["code", "details", "message"] and error["code"] == "forbidden"
                assert f"'{holder}-1'" in error["message"] and role in error["message"]
        else:
            assert response.status_code not in (401, 403), f"{holder} on {method} {path} ({role}): {response.text}"
        no_token_in(response.text)


@pytest.mark.parametrize(("method", "path", "role"), SECURED, ids=[f"{m} {p}" for m, p, _ in SECURED])
@pytest.mark.parametrize(
    "header", [None, "Bearer wrong", "Bearer", f"Basic {TOKENS['admin']}", TOKENS["admin"], "Bearer admin-tok"]
)
def test_without_a_known_token_every_secured_operation_answers_401(
    roles: Api, method: str, path: str, role: Role, header: str | None
) -> None:
    response = call(roles, method, path, **({"Authorization": header} if header is not None else {}))

    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == 'Bearer realm="flowctl"'
    no_token_in(response.text)
    assert roles.changes() == []


@pytest.mark.parametrize(("method", "path", "role"), OPEN, ids=[f"{m} {p}" for m, p, _ in OPEN])
def test_open_operations_answer_without_a_token(roles: Api, method: str, path: str, role: None) -> None:
    anonymous = call(roles, method, path)
    as_admin = call(roles, method, path, TOKENS["admin"])

    assert anonymous.status_code not in (401, 403), anonymous.text
    assert anonymous.status_code == as_admin.status_code
    no_token_in(anonymous.text)


def test_a_writer_of_deals_writes_deals_only(roles: Api) -> None:
    token = TOKENS["deals-only"]
    headers = {"Authorization": f"Bearer {token}"}
    client = roles.client
    allowed = [
        client.put("/v1/records/deal/1", json={"fields": {"title": "Sofa"}}, headers=headers),
        client.post("/v1/events", json={"event": "paid", "object": "deal", "id": 1}, headers=headers),
    ]
    refused = [
        client.put("/v1/records/contact/1", json={"fields": {"full_name": "Lan"}}, headers=headers),
        client.patch("/v1/records/contact/1", json={"fields": {"full_name": "Lan"}}, headers=headers),
        client.delete("/v1/records/contact/1", headers=headers),
        client.post("/v1/records/contact/1/stage", json={"stage": "new"}, headers=headers),
        client.post("/v1/events", json={"event": "called", "object": "contact", "id": 1}, headers=headers),
    ]

    assert [r.status_code for r in allowed] == [202, 202]
    for response in refused:
        assert response.status_code == 403, response.text
        message = response.json()["error"]["message"]
        assert "'deals-only'" in message and "contact" in message and "deal" in message
        assert token not in response.text
    assert [(c.object, c.op) for c in roles.changes()] == [("deal", "put"), ("deal", "event")]
    # reading is a viewer's right, and a writer is one: contacts read as everything else
    assert client.get("/v1/records/contact/1", headers=headers).status_code == 404


def test_a_writer_without_objects_and_those_above_write_every_object(roles: Api) -> None:
    for role in ("writer", "operator", "admin"):
        response = roles.client.put(
            f"/v1/records/contact/{role}",
            json={"fields": {"full_name": "Lan"}},
            headers={"Authorization": f"Bearer {TOKENS[role]}"},
        )
        assert response.status_code == 202, f"{role}: {response.text}"


def test_the_api_token_shorthand_is_an_admin_beside_the_access_entries(make_api: MakeApi) -> None:
    config = ROLE_CONFIG.replace("  access:\n", '  api_token: "${API_TOKEN}"\n  access:\n')
    api = make_api(config=config, env={**ENV, "API_TOKEN": "shorthand-tok-1"})

    assert call(api, "GET", "/metrics", "shorthand-tok-1").status_code == 200
    assert call(api, "GET", "/metrics", TOKENS["viewer"]).status_code == 200
    assert call(api, "PUT", "/v1/records/deal/1", TOKENS["viewer"]).status_code == 403


def test_the_document_and_readiness_show_no_token(roles: Api) -> None:
    document = roles.client.get("/openapi.json")
    ready = roles.client.get("/readyz")

    assert document.status_code == 200 and ready.status_code == 200
    no_token_in(document.text + ready.text)
    operation = document.json()["paths"]["/v1/records/{object}/{id}"]["put"]
    assert operation["x-required-role"] == "writer" and operation["security"] == [{"bearerAuth": []}]


def test_an_entry_whose_variable_is_unset_is_refused_and_the_others_work(make_api: MakeApi) -> None:
    env = {k: v for k, v in ENV.items() if k != "OPERATOR_TOKEN"}
    api = make_api(config=ROLE_CONFIG, env=env)

    assert call(api, "PUT", "/v1/records/deal/1", TOKENS["operator"]).status_code == 401
    assert call(api, "PUT", "/v1/records/deal/1", "").status_code == 401  # '' is not the unset one's token
    assert call(api, "PUT", "/v1/records/deal/2", TOKENS["writer"]).status_code == 422  # in: {} has no fields
    assert call(api, "GET", "/metrics", TOKENS["admin"]).status_code == 200


@pytest.mark.parametrize(
    ("tokens", "allowed"),
    [(("", "t"), True), (("", ""), False), ((), False), ((" ", "\t"), False), (("t",), True)],
)
def test_any_usable_token_lets_the_daemon_listen_beyond_loopback(tokens: tuple[str, ...], allowed: bool) -> None:
    assert (listen_allowed("0.0.0.0:8080", *tokens) == "") is allowed


# ------------------------------------------------------------------------------- a real daemon

DAEMON_CONFIG = """\
apiVersion: flowctl/v1
kind: Config
metadata: {name: roles}
spec:
  access:
    - {name: ci, token: "${CI_TOKEN}", role: viewer}
    - {name: crm-sync, token: "${CRM_TOKEN}", role: writer, objects: [deal]}
    - {name: support, token: "${SUPPORT_TOKEN}", role: operator}
---
apiVersion: flowctl/v1
kind: ObjectType
metadata: {name: deal}
spec:
  fields:
    title: {type: string}
---
apiVersion: flowctl/v1
kind: ObjectType
metadata: {name: contact}
spec:
  fields:
    full_name: {type: string}
"""


def test_a_daemon_never_logs_a_token_and_names_an_unset_variable(tmp_path: Path) -> None:
    secrets = {"CI_TOKEN": "ci-secret-93d1f07a", "CRM_TOKEN": "crm-secret-4e6b2c88"}  # SUPPORT_TOKEN unset
    config = write_config(tmp_path / "config", {"flowctl.yaml": DAEMON_CONFIG})
    daemon = Daemon(config, f"sqlite:///{tmp_path / 'roles.db'}", env=secrets, args=("--log-level", "debug"))
    daemon.env.pop("SUPPORT_TOKEN", None)
    with daemon:
        bearer = {name: {"Authorization": f"Bearer {value}"} for name, value in secrets.items()}
        answers = [
            httpx.put(f"{daemon.url}/v1/records/deal/1", json={"fields": {"title": "A"}}, headers=bearer["CRM_TOKEN"]),
            httpx.put(f"{daemon.url}/v1/records/contact/1", json={"fields": {}}, headers=bearer["CRM_TOKEN"]),
            httpx.put(f"{daemon.url}/v1/records/deal/2", json={"fields": {}}, headers=bearer["CI_TOKEN"]),
            httpx.get(f"{daemon.url}/v1/records/deal/1", headers=bearer["CI_TOKEN"]),
            httpx.get(f"{daemon.url}/metrics", headers={"Authorization": "Bearer support-guess"}),
            httpx.get(f"{daemon.url}/openapi.json"),
            httpx.get(f"{daemon.url}/readyz"),
        ]
        assert [a.status_code for a in answers] == [202, 403, 403, 200, 401, 200, 200]
        assert answers[-1].json() == {"status": "degraded", "problems": ["access support: SUPPORT_TOKEN is not set"]}
        assert daemon.terminate() == 0
    output = daemon.output()
    [line] = [line for line in output.splitlines() if "not set in the environment" in line]
    assert "access support: SUPPORT_TOKEN is not set" in line
    for value in secrets.values():
        assert value not in output
        assert all(value not in a.text for a in answers)


def test_a_daemon_listens_beyond_loopback_once_one_access_token_is_usable(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config", {"flowctl.yaml": DAEMON_CONFIG})
    unset = ("CI_TOKEN", "CRM_TOKEN", "SUPPORT_TOKEN")
    refused = Daemon(config, f"sqlite:///{tmp_path / 'refused.db'}")
    refused.env = {k: v for k, v in refused.env.items() if k not in unset}
    refused.args = ("--listen", f"0.0.0.0:{refused.port}")
    with pytest.raises(RuntimeError, match=re.escape("refusing to listen on 0.0.0.0:")):
        refused.start()

    daemon = Daemon(config, f"sqlite:///{tmp_path / 'open.db'}", env={"CI_TOKEN": "ci-secret-93d1f07a"})
    daemon.env = {k: v for k, v in daemon.env.items() if k not in unset[1:]}
    daemon.args = ("--listen", f"0.0.0.0:{daemon.port}")
    with daemon:
        answer = httpx.get(f"{daemon.url}/v1/records/deal/1", headers={"Authorization": "Bearer ci-secret-93d1f07a"})
        assert answer.status_code == 404  # in, as a viewer: the record does not exist
        assert daemon.terminate() == 0


def test_validate_env_names_an_unset_access_variable_without_offering_a_default(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config", {"flowctl.yaml": DAEMON_CONFIG})
    env = {"CI_TOKEN": "c", "CRM_TOKEN": "", "SUPPORT_TOKEN": None}

    result = CliRunner().invoke(cli, ["validate", str(config), "--env"], env=env)

    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if "E095" in line]
    assert [line.split(": error")[0] for line in lines] == ["flowctl.yaml:7:31", "flowctl.yaml:8:30"]
    assert "access crm-sync needs ${CRM_TOKEN}, which is empty" in lines[0]
    assert "access support needs ${SUPPORT_TOKEN}, which is not set" in lines[1]
    assert all("default" not in line for line in lines)  # a default would be a token in git (E092)


def test_hooks_keep_their_own_authentication(roles: Api) -> None:
    body = dumps({"entity": "deal", "id": 1, "delivery": "x", "data": {"title": "t"}})
    response = roles.client.post("/hooks/crm", content=body, headers={"X-Signature": "00"})

    assert response.status_code == 401  # the webhook's signature, not a role
    assert "signature" in response.json()["error"]["message"].lower()
