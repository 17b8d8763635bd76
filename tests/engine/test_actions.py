"""Every action as a typed effect: the parameters it renders, its channel, and its record writes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from flowctl.engine.sms import segments
from flowctl.engine.state import Effect

TEMPLATES = """
apiVersion: flowctl/v1
kind: Template
metadata: {name: welcome}
spec: {channel: email, subject: "Chào {{ record.full_name }}", html: "<p>Xin chào {{ record.full_name }}</p>"}
---
apiVersion: flowctl/v1
kind: Template
metadata: {name: quote}
spec: {channel: document, subject: "Báo giá {{ record.id }}", html: "<h1>Báo giá cho {{ record.full_name }}</h1>"}
---
apiVersion: flowctl/v1
kind: Template
metadata: {name: terms}
spec: {channel: document, text: "Điều khoản cho {{ record.full_name }}"}
---
apiVersion: flowctl/v1
kind: Template
metadata: {name: hello-sms}
spec: {channel: sms, text: "Chao {{ record.full_name | unaccent }}"}
---
apiVersion: flowctl/v1
kind: AllocationRule
metadata: {name: rr}
spec: {strategy: round_robin, users: [lan, minh, tuan]}
---
apiVersion: flowctl/v1
kind: AllocationRule
metadata: {name: least}
spec: {strategy: least_loaded, users: [lan, minh]}
"""

LAN = {
    "full_name": "Nguyễn Thị Lan",
    "phone": "0901234567",
    "email": "lan.kh@example.com",
    "owner": "minh",
    "due_date": "2026-03-20",
}


def run_node(
    sim_of, node: str, *, fields: Mapping[str, Any] = LAN, times: int = 1, extra: Mapping[str, str] | None = None
) -> list[Effect]:
    """Run a flow whose one node is ``node`` for contact 1, ``times`` times; the effects."""
    flow = f"""
apiVersion: flowctl/v1
kind: Flow
metadata: {{name: act}}
spec:
  object: contact
  mode: parallel
  trigger: {{on: event, event: go}}
  start: a
  nodes:
    a: {node}
"""
    sim = sim_of({"flows.yaml": flow, "templates.yaml": TEMPLATES, **(extra or {})})
    sim.write("create", "contact", "1", dict(fields))
    for _ in range(times):
        sim.event("go", "contact", "1")
    assert sim.state.problems == [], sim.state.problems
    return sim.state.effects


def one(effects: list[Effect]) -> dict[str, Any]:
    (effect,) = effects
    return effect.to_json()


def test_send_email_renders_the_template_and_defaults_to_the_record_email(sim_of) -> None:
    got = one(run_node(sim_of, "{type: send_email, template: welcome, cc: 'sales@example.com'}"))
    assert got == {
        "action": "send_email",
        "template": "welcome",
        "to": "lan.kh@example.com",
        "cc": "sales@example.com",
        "subject": "Chào Nguyễn Thị Lan",
        "html": "<p>Xin chào Nguyễn Thị Lan</p>",
        "channel": "log",
        "object": "contact",
        "id": "1",
    }


def test_html_bodies_escape_record_values_and_text_bodies_keep_them(sim_of) -> None:
    hostile = {**LAN, "full_name": '<a href="https://evil.example">Lan & co</a>'}
    node = "{type: send_email, template: welcome, attach: [{template: quote, format: html}]}"
    got = one(run_node(sim_of, node, fields=hostile))
    assert got["html"] == "<p>Xin chào &lt;a href=&#34;https://evil.example&#34;&gt;Lan &amp; co&lt;/a&gt;</p>"
    assert got["attachments"][0]["html"].startswith("<h1>Báo giá cho &lt;a href=")
    assert got["subject"] == 'Chào <a href="https://evil.example">Lan & co</a>'  # a subject is not HTML


def test_send_email_attaches_rendered_documents(sim_of) -> None:
    node = (
        "{type: send_email, template: welcome, to: '{{ record.email }}', attach: [quote, "
        "{template: terms, format: original, filename: 'dieu-khoan-{{ record.id }}.txt'}, "
        "{template: quote, format: html}]}"
    )
    got = one(run_node(sim_of, node))
    assert got["attachments"] == [
        {
            "template": "quote",
            "format": "pdf",
            "filename": "quote.pdf",
            "title": "Báo giá 1",
            "html": "<h1>Báo giá cho Nguyễn Thị Lan</h1>",
        },
        {
            "template": "terms",
            "format": "original",
            "filename": "dieu-khoan-1.txt",
            "title": "terms",
            "text": "Điều khoản cho Nguyễn Thị Lan",
        },
        {
            "template": "quote",
            "format": "html",
            "filename": "quote.html",
            "title": "Báo giá 1",
            "html": "<h1>Báo giá cho Nguyễn Thị Lan</h1>",
        },
    ]


@pytest.mark.parametrize(
    ("text", "encoding", "parts"),
    [
        ("Chao {{ record.full_name | unaccent }}", "GSM-7", 1),
        ("Chào {{ record.full_name }}", "UCS-2", 1),
        ("{{ 'a' * 161 }}", "GSM-7", 2),
        ("{{ 'ă' * 71 }}", "UCS-2", 2),
    ],
)
def test_send_sms_counts_segments_gsm7_or_ucs2(sim_of, text: str, encoding: str, parts: int) -> None:
    got = one(run_node(sim_of, f'{{type: send_sms, text: "{text}"}}'))
    assert got["to"] == "0901234567"  # the record's phone by default
    assert (got["encoding"], got["segments"]) == (encoding, parts)
    assert got["characters"] == segments(got["text"]).characters


def test_send_sms_from_a_template_uses_its_text(sim_of) -> None:
    got = one(run_node(sim_of, "{type: send_sms, template: hello-sms, to: '{{ owner.phone }}'}"))
    assert (got["template"], got["text"], got["to"], got["encoding"]) == (
        "hello-sms",
        "Chao Nguyen Thi Lan",
        "0901000002",
        "GSM-7",
    )


def test_create_task_with_every_field(sim_of) -> None:
    node = (
        "{type: create_task, title: 'Gọi {{ record.full_name }}', description: 'SĐT {{ record.phone }}', "
        "due: 1d, task_type: call, priority: high, assignee: {user: lan}, watchers: [owner, supervisor]}"
    )
    got = one(run_node(sim_of, node))
    assert got == {
        "action": "create_task",
        "title": "Gọi Nguyễn Thị Lan",
        "assignee": "lan",
        "description": "SĐT 0901234567",
        "due": "2026-03-03T09:00:00+07:00",
        "task_type": "call",
        "priority": "high",
        "watchers": ["minh", "hoa"],
        "channel": "log",
        "object": "contact",
        "id": "1",
    }


def test_create_task_due_from_a_date_field_and_the_owner_by_default(sim_of) -> None:
    got = one(run_node(sim_of, "{type: create_task, title: t, due: '{{ record.due_date }}'}"))
    assert (got["assignee"], got["due"]) == ("minh", "2026-03-20T00:00:00+07:00")


def test_create_task_assignee_from_a_user_field(sim_of) -> None:
    got = one(run_node(sim_of, "{type: create_task, title: t, assignee: {field: owner}}"))
    assert got["assignee"] == "minh"


def test_update_fields_renders_values_and_writes_the_record(sim_of) -> None:
    effects = run_node(sim_of, "{type: update_fields, set: {note: 'called {{ record.full_name }}', score: 5}}")
    got = one(effects)
    assert got == {
        "action": "update_fields",
        "set": {"note": "called Nguyễn Thị Lan", "score": 5},
        "channel": "",
        "object": "contact",
        "id": "1",
    }


def test_update_fields_result_is_stored(sim_of) -> None:
    flow = """
apiVersion: flowctl/v1
kind: Flow
metadata: {name: act}
spec:
  object: contact
  trigger: {on: created}
  start: a
  nodes:
    a: {type: update_fields, set: {status: active, note: "{{ record.full_name }}"}}
"""
    sim = sim_of({"flows.yaml": flow})
    sim.write("create", "contact", "1", {"full_name": "Lan"})
    record = sim.state.record("contact", "1")
    assert (record.fields["status"], record.fields["note"], record.version) == ("active", "Lan", 2)


def test_handover_to_a_user_sets_the_owner(sim_of) -> None:
    got = one(run_node(sim_of, "{type: handover, to: lan}"))
    assert got == {
        "action": "handover",
        "assignee": "lan",
        "from": "minh",
        "channel": "log",
        "object": "contact",
        "id": "1",
    }


def test_handover_round_robin_takes_turns_across_records_and_runs(sim_of) -> None:
    effects = run_node(sim_of, "{type: handover, to: {rule: rr}}", times=4)
    assert [e.params["assignee"] for e in effects] == ["lan", "minh", "tuan", "lan"]


def test_handover_least_loaded_picks_the_user_owning_the_fewest_open_records(sim_of) -> None:
    # contact 1 is the only record: whoever owns it is the more loaded of lan and minh
    effects = run_node(sim_of, "{type: handover, to: {rule: least}}", times=3)
    assert [e.params["assignee"] for e in effects] == ["lan", "minh", "lan"]


def test_handover_to_the_supervisor_of_the_owner(sim_of) -> None:
    got = one(run_node(sim_of, "{type: handover, to: supervisor}"))
    assert got["assignee"] == "hoa"


def test_handover_with_nobody_to_hand_to_fails_clearly(sim_of) -> None:
    flow = """
apiVersion: flowctl/v1
kind: Flow
metadata: {name: act}
spec:
  object: contact
  trigger: {on: created}
  start: a
  nodes:
    a: {type: handover, to: supervisor}
"""
    sim = sim_of({"flows.yaml": flow})
    sim.write("create", "contact", "1", {"owner": "hoa"})  # hoa has no supervisor
    (problem,) = sim.state.problems
    assert problem.code == "action_failed"
    assert problem.message == "flow:act node a: handover found nobody to hand the record to"


def test_notify_a_user_or_the_owners_supervisor(sim_of) -> None:
    got = one(run_node(sim_of, "{type: notify, to: lan, title: 'Khách mới', text: 'Gọi {{ record.full_name }}'}"))
    assert got == {
        "action": "notify",
        "to": "lan",
        "user": "lan",
        "email": "lan@example.com",
        "phone": "0901000001",
        "name": "Nguyễn Thị Lan",
        "title": "Khách mới",
        "text": "Gọi Nguyễn Thị Lan",
        "channel": "log",
        "object": "contact",
        "id": "1",
    }
    got = one(run_node(sim_of, "{type: notify, to: supervisor, text: 'x'}"))
    assert (got["to"], got["email"]) == ("hoa", "hoa@example.com")


def test_create_document_renders_html_or_text(sim_of) -> None:
    got = one(run_node(sim_of, "{type: create_document, template: quote, save_as: bao-gia}"))
    assert got == {
        "action": "create_document",
        "template": "quote",
        "format": "pdf",
        "save_as": "bao-gia",
        "filename": "bao-gia.pdf",
        "html": "<h1>Báo giá cho Nguyễn Thị Lan</h1>",
        "title": "Báo giá 1",
        "channel": "log",
        "object": "contact",
        "id": "1",
    }
    got = one(run_node(sim_of, "{type: create_document, template: terms, format: original}"))
    assert (got["filename"], got["text"]) == ("terms.txt", "Điều khoản cho Nguyễn Thị Lan")


def test_webhook_renders_url_headers_and_the_body_leaves(sim_of) -> None:
    node = (
        "{type: webhook, url: 'https://crm.example.com/hooks/{{ record.id }}', method: PUT, "
        "headers: {X-Name: '{{ record.full_name }}'}, "
        "body: {id: '{{ record.id }}', tags: [a, '{{ record.owner }}'], n: 3, nested: {ok: true}}}"
    )
    got = one(run_node(sim_of, node))
    assert got == {
        "action": "webhook",
        "method": "PUT",
        "url": "https://crm.example.com/hooks/1",
        "body": {"id": "1", "tags": ["a", "minh"], "n": 3, "nested": {"ok": True}},
        "headers": {"X-Name": "Nguyễn Thị Lan"},
        "channel": "log",
        "object": "contact",
        "id": "1",
    }


def test_webhook_default_body_names_the_record(sim_of) -> None:
    got = one(run_node(sim_of, "{type: webhook, url: 'https://example.com/h'}"))
    assert (got["method"], got["body"]) == ("POST", {"object": "contact", "id": "1"})


def test_add_care_card(sim_of) -> None:
    node = (
        "{type: add_care_card, owner: {user: lan}, title: 'Chăm sóc {{ record.id }}', care_date: 7d, "
        "layout: after-sales, set: {kind: 'call', amount: 5}, notify_owner: true}"
    )
    got = one(run_node(sim_of, node))
    assert got == {
        "action": "add_care_card",
        "owner": "lan",
        "notify_owner": True,
        "care_date": "2026-03-09",
        "layout": "after-sales",
        "title": "Chăm sóc 1",
        "fields": {"kind": "call", "amount": 5},
        "channel": "log",
        "object": "contact",
        "id": "1",
    }


def test_call_places_a_call_with_a_script(sim_of) -> None:
    got = one(run_node(sim_of, "{type: call, text: 'Xin chào {{ record.full_name }}'}"))
    assert got == {
        "action": "call",
        "to": "0901234567",
        "text": "Xin chào Nguyễn Thị Lan",
        "channel": "log",
        "object": "contact",
        "id": "1",
    }


CHANNELS = """
apiVersion: flowctl/v1
kind: Channel
metadata: {name: sms}
spec: {type: http, url: "${SMS_URL}", body: {to: "{{ to }}", text: "{{ text }}"}}
---
apiVersion: flowctl/v1
kind: Channel
metadata: {name: sms-brandname}
spec: {type: http, url: "${BRAND_URL}", body: {to: "{{ to }}", text: "{{ text }}"}}
"""


def test_the_channel_is_the_named_one_else_the_mediums_else_log(sim_of) -> None:
    assert one(run_node(sim_of, "{type: send_sms, text: x}", extra={"c.yaml": CHANNELS}))["channel"] == "sms"
    named = "{type: send_sms, text: x, channel: sms-brandname}"
    assert one(run_node(sim_of, named, extra={"c.yaml": CHANNELS}))["channel"] == "sms-brandname"
    assert one(run_node(sim_of, "{type: call, text: x}", extra={"c.yaml": CHANNELS}))["channel"] == "log"


def test_without_channels_everything_goes_to_log(sim_of) -> None:
    assert one(run_node(sim_of, "{type: send_sms, text: x}"))["channel"] == "log"


def test_effect_keys_name_the_run_and_its_step(sim_of) -> None:
    effects = run_node(sim_of, "{type: send_sms, text: x, next: b}\n    b: {type: send_sms, text: y}", times=2)
    keys = [e.key for e in effects]
    assert len(set(keys)) == 4
    assert [k.rsplit(":", 1)[1] for k in keys] == ["0", "1", "0", "1"]
    assert all(e.key.startswith(e.run_id + ":") for e in effects)


@pytest.mark.parametrize(
    ("template", "stored"),
    [
        ("{{ 2 + 3 }}", 5),
        ("{{ 2.5 * 2 }}", 5.0),
        ("{{ record.missing_or_none }}", None),
        ("", None),
    ],
)
def test_update_fields_stores_values_as_the_fields_type(sim_of, template: str, stored: object) -> None:
    flow = f"""
apiVersion: flowctl/v1
kind: Flow
metadata: {{name: act}}
spec:
  object: deal
  trigger: {{on: created}}
  start: a
  nodes:
    a: {{type: update_fields, set: {{amount: "{template.replace("missing_or_none", "note")}",
                                  note: "{{{{ 1 + 1 }}}}"}}}}
"""
    sim = sim_of({"flows.yaml": flow})
    sim.write("create", "deal", "1", {})
    fields = sim.state.record("deal", "1").fields
    assert fields["amount"] == stored and type(fields["amount"]) is type(stored)
    assert fields["note"] == "2"  # a string field keeps the text


def test_update_fields_with_text_that_is_not_of_the_fields_type_fails_clearly(sim_of) -> None:
    flow = """
apiVersion: flowctl/v1
kind: Flow
metadata: {name: act}
spec:
  object: contact
  trigger: {on: created}
  start: a
  nodes:
    a: {type: update_fields, set: {score: "{{ record.full_name }}"}}
"""
    sim = sim_of({"flows.yaml": flow})
    sim.write("create", "contact", "1", {"full_name": "Lan"})
    (problem,) = sim.state.problems
    assert problem.message == "flow:act node a: field score (integer): 'Lan' is not a number"
    assert "score" not in sim.state.record("contact", "1").fields


def test_a_due_date_without_a_zone_is_in_the_configs_zone_whatever_the_clocks(sim_of) -> None:
    from datetime import UTC

    from tests.engine.conftest import T0

    flow = """
apiVersion: flowctl/v1
kind: Flow
metadata: {name: act}
spec:
  object: contact
  trigger: {on: created}
  start: a
  nodes:
    a: {type: create_task, title: t, due: "{{ record.due_date }}"}
"""
    sim = sim_of({"flows.yaml": flow}, now=T0.astimezone(UTC))  # the daemon's clock speaks UTC
    sim.write("create", "contact", "1", {"due_date": "2026-03-20"})
    assert sim.state.effects[0].params["due"] == "2026-03-20T00:00:00+07:00"


def test_add_note_renders_its_text_and_sends_nothing(sim_of) -> None:
    effects = run_node(sim_of, "{type: add_note, text: 'Gọi cho {{ record.full_name }} lúc {{ record.due_date }}'}")
    assert one(effects) == {
        "action": "add_note",
        "text": "Gọi cho Nguyễn Thị Lan lúc 2026-03-20",
        "channel": "",  # no channel: the store keeps it as a note on the record, no outbox row
        "object": "contact",
        "id": "1",
    }
