"""The JSON Schemas: valid Draft 2020-12, documented for editors, bundled without drift, and they
accept the language of DESIGN.md while catching typos at the right line."""

from __future__ import annotations

import dataclasses
import json
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from flowctl.cli.schema import bundle_schema, command, dumps
from flowctl.spec import model as m
from flowctl.spec.issues import Issue
from flowctl.spec.loader import RawDocument, load_text
from flowctl.spec.schema import (
    BUNDLE_FILE,
    DISPATCH_FILE,
    SCHEMA_FILES,
    check_document,
    load_schema,
    schema_names,
)

BASE = "https://flowctl.dev/schemas/v1/"
DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
COMMON_FILE = "common.schema.json"
SCHEMAS_DIR = Path(__file__).resolve().parents[1] / "schemas"


def docs(text: str) -> list[RawDocument]:
    result = load_text(textwrap.dedent(text), "doc.yaml")
    assert not result.issues, result.issues
    assert result.documents
    return result.documents


def issues_of(text: str) -> list[Issue]:
    (doc,) = docs(text)
    return check_document(doc)


def bundle_validator() -> Draft202012Validator:
    return Draft202012Validator(bundle_schema())


def dispatch_validator() -> Draft202012Validator:
    registry: Registry = Registry().with_resources(
        (load_schema(name)["$id"], Resource.from_contents(load_schema(name))) for name in schema_names()
    )
    return Draft202012Validator(load_schema(DISPATCH_FILE), registry=registry)


def subschemas(schema: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """Every subschema with its path; ``if`` conditions are skipped (they are tests, not keys)."""
    yield path, schema
    if not isinstance(schema, dict):
        return
    for keyword in ("properties", "patternProperties", "$defs", "dependentSchemas"):
        for name, sub in (schema.get(keyword) or {}).items():
            yield from subschemas(sub, (*path, keyword, name))
    for keyword in (
        "additionalProperties",
        "unevaluatedProperties",
        "items",
        "contains",
        "propertyNames",
        "then",
        "else",
        "not",
    ):
        if keyword in schema:
            yield from subschemas(schema[keyword], (*path, keyword))
    for keyword in ("allOf", "anyOf", "oneOf", "prefixItems"):
        for i, sub in enumerate(schema.get(keyword) or []):
            yield from subschemas(sub, (*path, keyword, i))


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


# ------------------------------------------------------------------------------------------------
# The files


def test_every_kind_has_its_file() -> None:
    expected = {*SCHEMA_FILES.values(), COMMON_FILE, DISPATCH_FILE, BUNDLE_FILE}
    assert set(schema_names()) == expected
    assert all(name == f"{kind.lower()}.schema.json" for kind, name in SCHEMA_FILES.items())


@pytest.mark.parametrize("name", schema_names())
def test_schema_is_valid_draft_2020_12(name: str) -> None:
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == DRAFT_2020_12
    assert schema["$id"] == BASE + name


@pytest.mark.parametrize("kind", m.KINDS)
def test_kind_schema_pins_api_version_and_kind(kind: str) -> None:
    schema = load_schema(SCHEMA_FILES[kind])
    assert schema["properties"]["apiVersion"]["const"] == m.API_VERSION
    assert schema["properties"]["kind"]["const"] == kind
    assert schema["additionalProperties"] is False


def test_dispatch_schema_covers_every_kind() -> None:
    schema = load_schema(DISPATCH_FILE)
    assert schema["properties"]["kind"]["enum"] == list(m.KINDS)
    targets = {rule["if"]["properties"]["kind"]["const"]: rule["then"]["$ref"] for rule in schema["allOf"]}
    assert targets == {kind: BASE + SCHEMA_FILES[kind] for kind in m.KINDS}


def test_references_name_files_of_the_folder() -> None:
    ids = {load_schema(name)["$id"] for name in schema_names()}
    for name in schema_names():
        for ref in refs(load_schema(name)):
            if ref.startswith("#"):
                continue
            assert ref.split("#")[0] in ids, f"{name}: {ref}"


def test_committed_bundle_is_the_generated_one() -> None:
    generated = bundle_schema()
    assert load_schema(BUNDLE_FILE) == generated, "regenerate it: flowctl schema --out schemas"
    assert (SCHEMAS_DIR / BUNDLE_FILE).read_text(encoding="utf-8") == dumps(generated)


def test_bundle_is_self_contained() -> None:
    bundle = bundle_schema()
    for ref in refs(bundle):
        assert ref.startswith("#/$defs/"), ref
        node: Any = bundle
        for part in ref[2:].split("/"):
            assert part in node, f"{ref} does not resolve"
            node = node[part]
    assert all("$id" not in definition for definition in bundle["$defs"].values())
    assert all("$defs" not in definition for definition in bundle["$defs"].values())


def test_bundle_shows_each_property_its_own_text() -> None:
    """Editors show a $ref target's text on hover, so the bundle inlines small shared formats."""
    bundle = bundle_schema()
    timeout = bundle["$defs"]["flow.wait_event"]["properties"]["for"]
    assert "$ref" not in timeout
    assert timeout["description"].startswith("Give up after this long")
    assert "A duration" in timeout["description"]
    assert timeout["pattern"] == load_schema(COMMON_FILE)["$defs"]["duration"]["pattern"]
    to = bundle["$defs"]["common.node_send_email"]["properties"]["to"]
    assert to["description"] == load_schema(COMMON_FILE)["$defs"]["node_send_email"]["properties"]["to"]["description"]


def test_every_property_has_a_description() -> None:
    missing = []
    for name in schema_names():
        for path, schema in subschemas(load_schema(name)):
            if len(path) >= 2 and path[-2] == "properties":
                described = isinstance(schema, dict) and isinstance(schema.get("description"), str)
                if not described or not schema["description"].strip():
                    missing.append(f"{name}: {'/'.join(map(str, path))}")
    assert not missing, "properties without a description:\n" + "\n".join(missing)


def test_examples_are_valid() -> None:
    """Editors offer examples as completions: each must pass the schema it illustrates."""
    registry: Registry = Registry().with_resources(
        (load_schema(name)["$id"], Resource.from_contents(load_schema(name))) for name in schema_names()
    )
    wrong = []
    for name in schema_names():
        schema = load_schema(name)
        for path, sub in subschemas(schema):
            if not isinstance(sub, dict) or "examples" not in sub:
                continue
            pointer = "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in path)
            probe = {"$schema": DRAFT_2020_12, "$ref": f"{schema['$id']}#{'/' + pointer if pointer else ''}"}
            validator = Draft202012Validator(probe, registry=registry)
            wrong += [
                f"{name}: {pointer}: {example!r}" for example in sub["examples"] if not validator.is_valid(example)
            ]
    assert not wrong, "\n".join(wrong)


def test_patterns_explain_themselves() -> None:
    """check_document shows a pattern's description as the reason, so it must describe the format."""
    for name in schema_names():
        for path, schema in subschemas(load_schema(name)):
            if isinstance(schema, dict) and "pattern" in schema:
                assert schema.get("description"), f"{name}: {'/'.join(map(str, path))}"


def test_every_pattern_says_what_is_expected() -> None:
    """yaml-language-server shows ``patternErrorMessage`` instead of the raw regular expression."""
    missing = []
    for name in schema_names():
        for path, schema in subschemas(load_schema(name)):
            if isinstance(schema, dict) and "pattern" in schema:
                message = schema.get("patternErrorMessage", "")
                if not message or "^" in message or "\\" in message:
                    missing.append(f"{name}: {'/'.join(map(str, path))}: {message!r}")
    assert not missing, "patterns without a patternErrorMessage in words:\n" + "\n".join(missing)


def test_every_definition_has_a_title_in_words() -> None:
    """Editors label completions and 'Expected …' messages with a definition's title, else its $defs key
    (``common.node_send_email`` in the bundle)."""
    untitled = [
        f"{name}: {key}: {definition.get('title')!r}"
        for name in schema_names()
        for key, definition in load_schema(name).get("$defs", {}).items()
        if not definition.get("title")
        or "." in definition["title"]
        or (definition["title"] == key and not (key.isalpha() and key.islower()))
    ]
    assert not untitled, "\n".join(untitled)
    bundle = bundle_schema()["$defs"]
    assert bundle["common.node_send_email"]["title"] == "send_email (flow node)"


def _snippet_value(body: Any) -> Any:
    """A snippet body as the editor inserts it when every placeholder keeps its default."""
    if isinstance(body, dict):
        return {_snippet_value(key): _snippet_value(value) for key, value in body.items()}
    if isinstance(body, list):
        return [_snippet_value(item) for item in body]
    if isinstance(body, str):
        return re.sub(r"\$\{\d+:([^}]*)\}", r"\1", body)
    return body


def test_snippets_are_valid_where_they_are_offered() -> None:
    registry: Registry = Registry().with_resources(
        (load_schema(name)["$id"], Resource.from_contents(load_schema(name))) for name in schema_names()
    )
    found, wrong = [], []
    for name in schema_names():
        schema = load_schema(name)
        for path, sub in subschemas(schema):
            if not isinstance(sub, dict) or "defaultSnippets" not in sub:
                continue
            pointer = "/".join(str(p) for p in path)
            validator = Draft202012Validator({"$ref": f"{schema['$id']}#/{pointer}"}, registry=registry)
            for snippet in sub["defaultSnippets"]:
                found.append(snippet["label"])
                value = _snippet_value(snippet["body"])
                assert "$" not in json.dumps(value), snippet  # every placeholder has a default
                wrong += [f"{name}: {pointer}: {snippet['label']}: {e.message}" for e in validator.iter_errors(value)]
    assert not wrong, "\n".join(wrong)
    assert {"send_email node", "create_task rule", "send_sms action", "{user: …}", "{rule: …}"} <= set(found)


@pytest.mark.parametrize("definition", ["assignee", "recipient", "recipients"])
def test_who_is_offered_in_words(definition: str) -> None:
    """An object example shows as '[object Object]' in yaml-language-server: objects come as labelled snippets."""
    defs = load_schema(COMMON_FILE)["$defs"]
    assert defs[definition]["examples"][:2] == ["owner", "supervisor"]
    labels = [snippet["label"] for snippet in defs[definition]["defaultSnippets"]]
    assert labels[:3] == ["owner", "supervisor", "{user: …}"]
    assert ("{rule: …}" in labels) is (definition == "assignee")
    for name in schema_names():
        for path, sub in subschemas(load_schema(name)):
            if (
                isinstance(sub, dict)
                and "examples" in sub
                and re.search(r"#/\$defs/(assignee|recipients?)\"", json.dumps(sub))
            ):
                objects = [e for e in sub["examples"] if isinstance(e, dict) or "{'" in str(e)]
                assert not objects, f"{name}: {'/'.join(map(str, path))}: {objects}"


# ------------------------------------------------------------------------------------------------
# In step with the model


def _enum_at(file: str, *path: str) -> list[Any]:
    node: Any = load_schema(file)
    for part in path:
        node = node[part]
    return list(node["enum"])


def test_node_and_action_types_match_the_model() -> None:
    node_types = _enum_at("flow.schema.json", "$defs", "node", "properties", "type")
    assert node_types == [*m.CONTROL_NODE_TYPES, *m.ACTION_TYPES]
    for dispatcher in ("ruleAction", "careAction"):
        assert _enum_at(COMMON_FILE, "$defs", dispatcher, "properties", "action") == list(m.ACTION_TYPES)
    assert _enum_at(COMMON_FILE, "$defs", "trigger", "properties", "on") == list(m.TRIGGER_KINDS)
    assert _enum_at("flow.schema.json", "properties", "spec", "properties", "mode") == list(m.MODES)
    assert _enum_at("objecttype.schema.json", "$defs", "field", "properties", "type") == list(m.FIELD_TYPES)


def test_limits_match_the_model() -> None:
    limits = load_schema("config.schema.json")["properties"]["spec"]["properties"]["limits"]
    defaults = {f.name: f.default for f in dataclasses.fields(m.Limits)}
    assert {k: v["default"] for k, v in limits["properties"].items()} == defaults


@pytest.mark.parametrize("action", m.ACTION_TYPES)
def test_an_action_takes_the_same_parameters_everywhere(action: str) -> None:
    """Flow nodes, stage rules and care processes differ only in their own keys."""
    defs = load_schema(COMMON_FILE)["$defs"]
    own = {
        "node": {"type", "next"},
        "rule": {"action", "name", "after", "delay", "wait", "on_timeout", "if"},
        "care": {"action"},
    }
    params = {}
    for context, keys in own.items():
        variant = defs[f"{context}_{action}"]
        assert variant["additionalProperties"] is False
        props = {k: v for k, v in variant["properties"].items() if k not in keys}
        params[context] = (props, sorted(set(variant.get("required", [])) - keys))
    assert params["node"] == params["rule"] == params["care"]


# ------------------------------------------------------------------------------------------------
# DESIGN.md's examples are valid


DESIGN_EXAMPLES = {
    "flow": """
        apiVersion: flowctl/v1
        kind: Flow
        metadata: {name: welcome-new-email}
        spec:
          object: user
          trigger: {on: updated, changed: [email], if: "record.email and not before.email"}
          mode: single            # per record: single | restart | queued | parallel
          start: pick
          nodes:
            pick:      {type: branch, branches: [{if: "record.segment == 'vip'", next: vip_mail}], default: std_mail}
            vip_mail:  {type: send_email, template: welcome-vip, next: wait}
            std_mail:  {type: send_email, template: welcome, next: wait}
            wait:      {type: wait_event, event: ticket.created, for: 3d, on_timeout: call, next: done}
            call:      {type: create_task, title: "Gọi cho {{ record.full_name }}", assignee: {rule: sales-rr},
                        next: done}
            done:      {type: goto_flow, flow: nurture}
        """,
    "pipeline": """
        apiVersion: flowctl/v1
        kind: Pipeline
        metadata: {name: furniture-sales}
        spec:
          object: deal
          stages:
            - id: new
              rules:
                - {name: tell client we call back, action: send_sms, template: callback-30m}
            - id: documents
              fields: [contract_no, delivery_address]          # shown / required at this step
              rules:
                - {name: make invoice, action: create_document, template: invoice, save_as: invoice}
                - {name: email invoice, after: make invoice, action: send_email, template: invoice-mail}
                - {name: nudge supervisor, delay: 1d, if: "record.stage == 'documents'", action: notify, to: supervisor}
            - id: prepayment
              triggers:                                        # move the item INTO this stage when…
                - {on: event, event: invoice.paid}
                - {on: updated, changed: [paid_amount], if: "record.paid_amount >= record.amount * 0.5"}
              rules:
                - {action: create_task, title: "Chuẩn bị đơn {{ record.id }}", assignee: {user: warehouse}}
            - {id: won, final: success}
            - {id: lost, final: failure}
        """,
    "careprocess": """
        apiVersion: flowctl/v1
        kind: CareProcess
        metadata: {name: birthday-greetings}
        spec:
          object: contact
          enabled: true
          priority: 1
          when: {anniversary_of: birthday, offset: -1d, at: "08:00"}   # or {date: renewal_date}, {cron: "0 9 * * 1"}
          if: "record.status != 'inactive'"                             # omit = all records
          feb29: feb28                                                  # feb28 | mar1 in non-leap years
          actions:
            - {action: send_sms, template: birthday-sms, to: "{{ record.phone }}"}
            - {action: send_email, template: birthday-mail}
            - {action: create_task, title: "Gọi chúc mừng #{{ record.full_name }}", due: 1d, assignee: owner}
        """,
    "the other kinds": """
        apiVersion: flowctl/v1
        kind: Config
        metadata: {name: main}
        spec: {database: "sqlite:///flowctl.db", timezone: Asia/Ho_Chi_Minh, listen: "127.0.0.1:8080",
               limits: {care_processes_per_object: 10}}
        ---
        apiVersion: flowctl/v1
        kind: ObjectType
        metadata: {name: contact}
        spec:
          fields:
            full_name: {type: string, required: true}
            phone:     {type: phone}
            email:     {type: email}
            birthday:  {type: date}
            status:    {type: enum, values: [active, inactive]}
            owner:     {type: user}
            company:   {type: ref, object: organization}
        ---
        apiVersion: flowctl/v1
        kind: Template
        metadata: {name: birthday-mail}
        spec: {channel: email, subject: "Chúc mừng sinh nhật {{ record.full_name }}", html_file: birthday.html.j2}
        ---
        apiVersion: flowctl/v1
        kind: Template
        metadata: {name: birthday-sms}
        spec: {channel: sms, text: "Chuc mung sinh nhat {{ record.full_name | unaccent }}!"}
        ---
        apiVersion: flowctl/v1
        kind: Channel
        metadata: {name: sms}
        spec: {type: http, url: "${SMS_URL}", headers: {Authorization: "Bearer ${SMS_TOKEN}"},
               body: {to: "{{ to }}", text: "{{ text }}"}, rate: 20/s}
        ---
        apiVersion: flowctl/v1
        kind: Source
        metadata: {name: crm-hooks}
        spec: {type: webhook, path: /hooks/crm, secret: "${CRM_HOOK_SECRET}",
               map: {object: "{{ payload.entity }}", id: "{{ payload.id }}", fields: "{{ payload.data }}"}}
        ---
        apiVersion: flowctl/v1
        kind: AllocationRule
        metadata: {name: sales-rr}
        spec: {strategy: round_robin, users: [lan, minh, tuan]}
        ---
        apiVersion: flowctl/v1
        kind: Test
        metadata: {name: vip gets vip welcome}
        spec:
          now: "2026-03-01T09:00:00+07:00"
          records: [{object: user, id: 1, fields: {email: null, segment: vip}}]
          steps:
            - update: {object: user, id: 1, fields: {email: lan@example.com}}
            - expect: {effects: [{action: send_email, template: welcome-vip, to: lan@example.com}]}
            - advance: 3d
            - expect: {effects: [{action: create_task}]}
            - move: {object: user, id: 1, stage: onboarded}       # for records in a pipeline
            - event: {event: ticket.created, object: user, id: 1}
            - expect: {effects: [], record: {object: user, id: 1, stage: onboarded}}
        """,
}

#: More of the language: every node type, every action, the other shapes the builder reads.
MORE_VALID = {
    "every node type": """
        apiVersion: flowctl/v1
        kind: Flow
        metadata: {name: all nodes, labels: {team: care, version: 2}}
        spec:
          object: contact
          enabled: false
          mode: parallel
          max_parallel: 3
          start: a
          nodes:
            a: {type: delay, for: 1d12h, next: b}
            b: {type: delay, until: "{{ record.due_date }} 09:00", next: c}
            c: {type: wait_event, event: invoice.paid, if: "event.amount > 0", for: 2h, on_timeout: d, next: e}
            d: {type: goto, node: a, max_visits: 3}
            e: {type: send_sms, text: "Hi {{ record.full_name }}", to: "{{ record.phone }}", channel: sms-brandname,
                next: f}
            f: {type: send_email, template: t, to: "{{ record.email }}", cc: a@example.com, bcc: b@example.com,
                attach: [invoice, {template: contract, format: original, filename: "c-{{ record.id }}.docx"}], next: g}
            g: {type: create_task, title: T, description: D, due: "{{ record.due }}", task_type: call, priority: 2,
                assignee: {field: salesperson}, watchers: [owner, supervisor, {user: hoa}], next: h}
            h: {type: update_fields, set: {status: contacted, score: 3, tags: [a, b]}, next: i}
            i: {type: move_stage, stage: won, pipeline: sales, next: j}
            j: {type: handover, to: {rule: sales-rr}, next: k}
            k: {type: notify, to: supervisor, title: Late, text: "{{ record.id }} is late", channel: chat, next: l}
            l: {type: create_document, template: quote, format: html, save_as: quote, next: m}
            m: {type: webhook, url: "https://example.com/x", method: put, headers: {X-Id: "{{ record.id }}"},
                body: {id: "{{ record.id }}", list: [1, 2]}, next: n}
            n: {type: add_care_card, owner: owner, title: Care, care_date: 7d, layout: after-sales,
                set: {note: hi}, notify_owner: true, next: o}
            o: {type: call, to: "{{ record.phone }}", channel: callcenter, template: script, next: p}
            p: {type: goto_flow, flow: nurture}
            q: {type: stop}
        """,
    "care by date and by cron": """
        apiVersion: flowctl/v1
        kind: CareProcess
        metadata: {name: renewal}
        spec:
          object: contract
          when: {date: renewal_date, offset: -7d}
          on_missed: skip
          grace: 2h
          dst_gap: skip
          dst_overlap: twice
          feb29: mar1
          actions: [{action: notify, to: owner, text: renew}]
        ---
        apiVersion: flowctl/v1
        kind: CareProcess
        metadata: {name: weekly}
        spec:
          object: contact
          when: {cron: "0 9 * * 1", at: "9:30"}
          actions: [{action: add_care_card, owner: {user: lan}}]
        """,
    "config with users and limits": """
        apiVersion: flowctl/v1
        kind: Config
        metadata: {name: main, description: everything}
        spec:
          api_token: "${FLOWCTL_TOKEN}"
          listen: "[::1]:9090"
          limits: {care_processes_per_object: 5, chain_depth: 4, effects_per_change: 50, fields_per_record: 100,
                   request_bytes: 65536, max_visits: 20}
          users:
            lan: {full_name: Nguyễn Thị Lan, email: lan@example.com, phone: "0901000001", supervisor: hoa}
            hoa: {}
        ---
        apiVersion: flowctl/v1
        kind: Config
        metadata: {name: defaults}
        """,
    "smtp and log channels, sql source": """
        apiVersion: flowctl/v1
        kind: Channel
        metadata: {name: email}
        spec: {type: smtp, host: "${SMTP_HOST}", port: 465, security: ssl, username: u, password: "${P}",
               from: "Shop <shop@example.com>", max_attempts: 3, per_recipient: 1/d, daily_budget: 500,
               quiet_hours: {start: "21:00", end: "07:30", timezone: Asia/Ho_Chi_Minh}}
        ---
        apiVersion: flowctl/v1
        kind: Channel
        metadata: {name: log}
        spec: {rate: 5/m}
        ---
        apiVersion: flowctl/v1
        kind: Source
        metadata: {name: crm-db}
        spec: {type: sql, url: "${CRM_DB}", table: contacts, key: contact_id, cursor: [updated_at, contact_id],
               interval: 1m, object: contact}
        ---
        apiVersion: flowctl/v1
        kind: Source
        metadata: {name: open-hook}
        spec: {path: /hooks/open, auth: none, max_bytes: 4096, signature_header: X-Sig}
        """,
    "test steps": """
        apiVersion: flowctl/v1
        kind: Test
        metadata: {name: "scenario titles may be sentences: commas, colons (and parentheses)"}
        spec:
          now: 2026-03-01T09:00:00+07:00
          records: [{object: deal, id: "7", stage: new, pipeline: sales, fields: {amount: 1}}]
          steps:
            - create: {object: deal, id: 8, fields: {}, stage: new, pipeline: sales}
            - update: {object: deal, id: 8, fields: {amount: 2}}
            - advance: {by: 1h}
            - advance: {to: "2026-03-05T09:00:00+07:00"}
            - event: {event: invoice.paid, object: deal, id: 8, data: {amount: 1}}
            - expect: {record: {object: deal, id: 8, stage: new, fields: {amount: 2}}}
            - delete: {object: deal, id: 8}
        """,
    "objecttype shorthands": """
        apiVersion: flowctl/v1
        kind: ObjectType
        metadata: {name: ticket}
        spec:
          label: Phiếu
          fields:
            subject: string
            body: text
            note:
            priority: {type: enum, values: [1, 2, 3], label: Mức độ}
        """,
    "stage rules that wait (DESIGN)": """
        apiVersion: flowctl/v1
        kind: Pipeline
        metadata: {name: clinic}
        spec:
          object: customer
          stages:
            - id: booked
              rules:
                - {name: chase the quote, wait: {changed: [quote_amount], for: 2d}, on_timeout: run,
                   action: notify, to: supervisor, text: "no quote yet"}
                - {name: remind before the visit, delay: {until: "{{ record.visit_at }}", offset: -2h},
                   action: send_sms, template: visit-sms}
                - {name: paid, wait: {event: invoice.paid}, action: add_note, text: paid}
                - {name: later, delay: {for: 4h}, wait: {changed: note, for: 1d}, on_timeout: skip,
                   action: add_note, text: noted}
        """,
}


@pytest.mark.parametrize("text", [*DESIGN_EXAMPLES.values(), *MORE_VALID.values()], ids=[*DESIGN_EXAMPLES, *MORE_VALID])
def test_the_language_is_valid(text: str) -> None:
    for doc in docs(text):
        assert check_document(doc) == [], doc.data.get("kind")
        assert list(bundle_validator().iter_errors(doc.data)) == []
        assert list(dispatch_validator().iter_errors(doc.data)) == []


# ------------------------------------------------------------------------------------------------
# Mistakes are caught, at their line


FLOW_HEAD = """\
apiVersion: flowctl/v1
kind: Flow
metadata: {name: f}
spec:
  object: user
  start: a
  nodes:
"""

INVALID = {
    # name: (yaml, line, text in the message, text in the hint)
    "unknown key in a flow node": (
        FLOW_HEAD
        + """\
    a:
      type: send_email
      template: welcome
      nxt: b
    b: {type: stop}
""",
        11,
        "'nxt' was unexpected",
        "next",
    ),
    "parameter of another action": (
        FLOW_HEAD
        + """\
    a:
      type: create_task
      title: Call
      template: welcome
""",
        11,
        "'template' was unexpected",
        "assignee",
    ),
    "stop takes no next": (
        FLOW_HEAD
        + """\
    a: {type: send_sms, text: hi, next: b}
    b: {type: stop, next: a}
""",
        9,
        "'next' was unexpected",
        "type",
    ),
    "bad duration": (
        FLOW_HEAD
        + """\
    a:
      type: delay
      for: 3days
""",
        10,
        "'3days' is not valid: a duration",
        "",
    ),
    "unknown node type": (
        FLOW_HEAD
        + """\
    a: {type: send_mail, template: t}
""",
        8,
        "'send_mail' is not one of",
        "pick one",
    ),
    "api_token of spaces only": (
        """\
apiVersion: flowctl/v1
kind: Config
metadata: {name: c}
spec:
  timezone: UTC
  api_token: "   "
""",
        6,
        "'   ' is not valid: the bearer token",
        "",
    ),
    "enabled: yes": (
        """\
apiVersion: flowctl/v1
kind: CareProcess
metadata: {name: birthday}
spec:
  object: contact
  enabled: yes
  when: {anniversary_of: birthday}
  actions: [{action: send_email, template: birthday-mail}]
""",
        6,
        "'yes' is text, not a boolean",
        "write true or false",
    ),
    "care action with a flow key": (
        """\
apiVersion: flowctl/v1
kind: CareProcess
metadata: {name: birthday}
spec:
  object: contact
  when: {anniversary_of: birthday}
  actions:
    - action: send_email
      template: birthday-mail
      next: x
""",
        10,
        "'next' was unexpected",
        "template",
    ),
    "two schedules": (
        """\
apiVersion: flowctl/v1
kind: CareProcess
metadata: {name: birthday}
spec:
  object: contact
  when: {anniversary_of: birthday, cron: "0 9 * * 1"}
  actions: [{action: send_email, template: birthday-mail}]
""",
        6,
        "spec/when",
        "",
    ),
    "at is HH:MM": (
        """\
apiVersion: flowctl/v1
kind: CareProcess
metadata: {name: birthday}
spec:
  object: contact
  when: {anniversary_of: birthday, at: "8h"}
  actions: [{action: send_email, template: birthday-mail}]
""",
        6,
        "'8h' is not valid: a local time of day as HH:MM",
        "",
    ),
    "event trigger without its event": (
        """\
apiVersion: flowctl/v1
kind: Flow
metadata: {name: f}
spec:
  object: user
  trigger:
    on: event
  start: a
  nodes:
    a: {type: stop}
""",
        7,
        "'event' is a required property",
        "add the missing key",
    ),
    "assignee by an unknown key": (
        """\
apiVersion: flowctl/v1
kind: Pipeline
metadata: {name: p}
spec:
  object: deal
  stages:
    - id: new
      rules:
        - action: handover
          to: {rules: managers}
""",
        10,
        "'rules' was unexpected",
        "rule",
    ),
    "a stage rule with a flow key": (
        """\
apiVersion: flowctl/v1
kind: Pipeline
metadata: {name: p}
spec:
  object: deal
  stages:
    - id: new
      rules:
        - action: notify
          to: owner
          next: x
""",
        11,
        "'next' was unexpected",
        "after",
    ),
    "a wait with on_timeout inside": (
        """\
apiVersion: flowctl/v1
kind: Pipeline
metadata: {name: p}
spec:
  object: deal
  stages:
    - id: new
      rules:
        - action: add_note
          text: x
          wait: {event: paid, for: 1d, on_timeout: run}
""",
        11,
        "'on_timeout' was unexpected",
        "allowed here: changed, event, for",
    ),
    "condition in braces": (
        FLOW_HEAD
        + """\
    a:
      type: branch
      branches:
        - {if: "{{ record.vip }}", next: a}
""",
        11,
        "is not valid: a condition",
        "",
    ),
    "smtp channel without host": (
        """\
apiVersion: flowctl/v1
kind: Channel
metadata: {name: email}
spec:
  type: smtp
  port: 70000
""",
        6,
        "70000 is greater than the maximum of 65535",
        "",
    ),
    "http key on an smtp channel": (
        """\
apiVersion: flowctl/v1
kind: Channel
metadata: {name: email}
spec:
  type: smtp
  host: smtp.example.com
  url: https://example.com
""",
        7,
        "'url' was unexpected",
        "host",
    ),
    "rate": (
        """\
apiVersion: flowctl/v1
kind: Channel
metadata: {name: sms}
spec:
  type: http
  url: https://example.com
  rate: 20/sec
""",
        7,
        "'20/sec' is not valid: at most this many messages per unit",
        "",
    ),
    "webhook path": (
        """\
apiVersion: flowctl/v1
kind: Source
metadata: {name: s}
spec:
  type: webhook
  path: hooks/crm
""",
        6,
        "starting with /",
        "",
    ),
    "sql source needs its table": (
        """\
apiVersion: flowctl/v1
kind: Source
metadata: {name: s}
spec:
  type: sql
  url: x
  cursor: updated_at
  object: contact
""",
        5,
        "'table' is a required property",
        "",
    ),
    "two operations in one test step": (
        """\
apiVersion: flowctl/v1
kind: Test
metadata: {name: t}
spec:
  steps:
    - update: {object: user, id: 1, fields: {a: 1}}
      expect: {effects: []}
""",
        6,
        "too many properties",
        "",
    ),
    "unknown test step": (
        """\
apiVersion: flowctl/v1
kind: Test
metadata: {name: t}
spec:
  steps:
    - wait: 3d
""",
        6,
        "'wait' was unexpected",
        "advance",
    ),
    "typo in metadata": (
        """\
apiVersion: flowctl/v1
kind: AllocationRule
metadata:
  name: rr
  descripton: typo
spec: {users: [lan]}
""",
        5,
        "'descripton' was unexpected",
        "description",
    ),
    "name with a slash": (
        """\
apiVersion: flowctl/v1
kind: Template
metadata: {name: mail/welcome}
spec: {channel: email}
""",
        3,
        "is not valid: the document's name",
        "",
    ),
    "enum field without values": (
        """\
apiVersion: flowctl/v1
kind: ObjectType
metadata: {name: o}
spec:
  fields:
    status: {type: enum}
""",
        6,
        "'values' is a required property",
        "",
    ),
}


@pytest.mark.parametrize(("text", "line", "message", "hint"), list(INVALID.values()), ids=list(INVALID))
def test_mistakes_are_reported_at_their_line(text: str, line: int, message: str, hint: str) -> None:
    issues = issues_of(text)
    assert issues, "no issue reported"
    assert all(issue.code == "E010" for issue in issues), issues
    matching = [issue for issue in issues if message in issue.message]
    assert matching, [str(issue) for issue in issues]
    assert matching[0].line == line, [str(issue) for issue in issues]
    assert hint in matching[0].hint
    (doc,) = docs(text)
    assert list(bundle_validator().iter_errors(doc.data)), "the bundled schema accepts it"


# ------------------------------------------------------------------------------------------------
# flowctl schema


def test_command_writes_every_schema(tmp_path: Path) -> None:
    out = tmp_path / "out" / "schemas"
    result = CliRunner().invoke(command, ["--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == schema_names()
    for name in schema_names():
        assert json.loads((out / name).read_text(encoding="utf-8")) == load_schema(name)
        assert f"wrote {out / name}" in result.output


def test_command_prints_the_bundle() -> None:
    result = CliRunner().invoke(command, [])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == bundle_schema()


def test_command_help_has_examples() -> None:
    result = CliRunner().invoke(command, ["--help"])
    assert result.exit_code == 0
    assert "flowctl schema --out .flowctl/schemas" in result.output
    assert "--out DIRECTORY" in result.output
