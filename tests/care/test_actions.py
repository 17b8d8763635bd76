"""Every AMIS care action, through the daemon path: scheduler → ledger + outbox → delivery to real sinks."""

from __future__ import annotations

import io
import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pypdf import PdfReader

from flowctl.channels import build_senders, close_senders
from flowctl.engine.state import Record
from flowctl.runtime.delivery.deliverer import Deliverer
from flowctl.store import open_store
from flowctl.testing import FrozenClock
from tests.care.conftest import contact, make_bundle, put_records, scheduler

TZ = ZoneInfo("Asia/Ho_Chi_Minh")
T0 = datetime(2026, 5, 2, 8, 0, tzinfo=TZ)

FILES = {
    "objects.yaml": """
        apiVersion: flowctl/v1
        kind: ObjectType
        metadata: {name: order}
        spec:
          fields:
            order_no: {type: string}
            salesperson: {type: user}
            product: {type: string}
            delivery_date: {type: date}
            status: {type: enum, values: [new, delivered]}
        """,
    "rules.yaml": """
        apiVersion: flowctl/v1
        kind: AllocationRule
        metadata: {name: rr}
        spec: {strategy: round_robin, users: [lan, minh, tuan]}
        ---
        apiVersion: flowctl/v1
        kind: AllocationRule
        metadata: {name: ll}
        spec: {strategy: least_loaded, users: [lan, minh]}
        """,
    "templates.yaml": """
        apiVersion: flowctl/v1
        kind: Template
        metadata: {name: email-sinh-nhat}
        spec: {channel: email, subject: "Chúc mừng sinh nhật {{ record.full_name }}",
               html: "<p>Kính gửi {{ record.full_name }}</p>"}
        ---
        apiVersion: flowctl/v1
        kind: Template
        metadata: {name: thiep}
        spec:
          channel: document
          subject: "Thiệp sinh nhật"
          html: "<h1>Chúc mừng sinh nhật {{ record.full_name }}</h1><p>Trân trọng, đội ngũ chăm sóc khách hàng</p>"
        ---
        apiVersion: flowctl/v1
        kind: Template
        metadata: {name: sms-sinh-nhat}
        spec: {channel: sms, text: "ABC chuc mung sinh nhat {{ record.full_name | unaccent }}"}
        """,
}

CHANNELS = """
apiVersion: flowctl/v1
kind: Channel
metadata: {{name: email}}
spec: {{type: smtp, host: 127.0.0.1, port: {smtp_port}, security: none, from: cskh@example.vn}}
---
apiVersion: flowctl/v1
kind: Channel
metadata: {{name: sms-brandname}}
spec:
  type: http
  url: "{sink}/brandname"
  body: {{brandname: ABC-VIETNAM, phone: "{{{{ to }}}}", message: "{{{{ text }}}}"}}
"""

POLICY = "  feb29: feb28\n  on_missed: catch_up\n  grace: 24h\n  dst_gap: shift\n  dst_overlap: once\n"


def process(name: str, obj: str, when: str, actions: str, priority: int = 1) -> str:
    return (
        f"apiVersion: flowctl/v1\nkind: CareProcess\nmetadata: {{name: {name}}}\nspec:\n  object: {obj}\n"
        f"  priority: {priority}\n  when: {when}\n{POLICY}  actions:\n{actions}"
    )


BIRTHDAY = process(
    "sinh-nhat",
    "contact",
    '{anniversary_of: birthday, at: "08:00"}',
    """\
    - action: send_email
      template: email-sinh-nhat
      to: "{{ record.email }}"
      attach:
        - {template: thiep, format: pdf, filename: "thiep-{{ record.id }}.pdf"}
        - {template: thiep, format: original}
    - {action: send_sms, channel: sms-brandname, template: sms-sinh-nhat, to: "{{ record.phone }}"}
    - action: create_task
      title: "Gọi chúc mừng #{{ record.full_name }}"
      description: "Sinh nhật {{ record.birthday | date('dd/mm') }}"
      due: 1d
      task_type: gọi điện
      priority: high
      assignee: owner
      watchers: [supervisor, {user: tuan}]
    - {action: update_fields, set: {note: "đã chúc mừng {{ today }}"}}
""",
)
ROUND_ROBIN = process(
    "phan-bo",
    "contact",
    '{anniversary_of: renewal, at: "09:00"}',
    "    - action: handover\n      to: {rule: rr}\n",
    priority=2,
)
LEAST_LOADED = process(
    "it-viec",
    "contact",
    '{anniversary_of: renewal, offset: 1d, at: "09:00"}',
    "    - action: handover\n      to: {rule: ll}\n",
    priority=3,
)
CARE_CARD = process(
    "the-cham-soc",
    "order",
    '{date: delivery_date, offset: 3d, at: "09:00"}',
    """\
    - action: add_care_card
      title: "Chăm sóc sau giao hàng đơn {{ record.order_no }}"
      owner: {field: salesperson}
      notify_owner: true
      layout: sau-ban-hang
      care_date: 2d
      set: {product: "{{ record.product }}", topic: Hỏi thăm lắp đặt}
""",
)


def config(tmp_path: Path, smtp_port: int, sink: str) -> Any:
    files = {**FILES, "channels.yaml": CHANNELS.format(smtp_port=smtp_port, sink=sink)}
    care = "---\n".join([BIRTHDAY, ROUND_ROBIN, LEAST_LOADED, CARE_CARD])
    return make_bundle(tmp_path / "cfg", care, files=files)


def deliver(store: Any, bundle: Any, at: datetime) -> None:
    senders = build_senders(bundle, {})
    deliverer = Deliverer(store, senders, FrozenClock(at), owner="d", rng=random.Random(1))
    try:
        while deliverer.deliver_once():
            pass
    finally:
        close_senders(senders)


def test_email_pdf_sms_task_and_field_update(tmp_path: Path, smtp_server: Any, http_sink: Any) -> None:
    bundle = config(tmp_path, smtp_server.port, http_sink.url)
    store = open_store(f"sqlite:///{tmp_path / 'care.db'}")
    put_records(
        store,
        contact(
            "1",
            full_name="Nguyễn Văn Hải",
            email="hai@example.com",
            phone="0912000001",
            birthday="1985-05-02",
            owner="lan",
        ),
    )
    assert scheduler(store, bundle, T0).tick(T0).outcomes == {"sent": 1}
    deliver(store, bundle, T0)
    [mail] = smtp_server.handler.messages
    message = mail.message
    assert message["Subject"] == "Chúc mừng sinh nhật Nguyễn Văn Hải"
    attachments = {part.get_filename(): part for part in message.iter_attachments()}
    assert set(attachments) == {"thiep-1.pdf", "thiep.html"}
    pdf = PdfReader(io.BytesIO(attachments["thiep-1.pdf"].get_content()))
    text = "\n".join(page.extract_text() for page in pdf.pages)
    assert "Chúc mừng sinh nhật Nguyễn Văn Hải" in text and "Trân trọng, đội ngũ chăm sóc khách hàng" in text
    assert "<h1>Chúc mừng sinh nhật Nguyễn Văn Hải</h1>" in attachments["thiep.html"].get_content()
    [hit] = http_sink.hits
    assert hit.path == "/brandname"
    assert hit.json() == {
        "brandname": "ABC-VIETNAM",
        "phone": "0912000001",
        "message": "ABC chuc mung sinh nhat Nguyen Van Hai",
    }
    [task] = [r for r in store.list_outbox(limit=20) if r.action == "create_task"]
    assert {
        k: task.payload[k] for k in ("title", "description", "due", "task_type", "priority", "assignee", "watchers")
    } == {
        "title": "Gọi chúc mừng #Nguyễn Văn Hải",
        "description": "Sinh nhật 02/05",
        "due": "2026-05-03T08:00:00+07:00",
        "task_type": "gọi điện",
        "priority": "high",
        "assignee": "lan",
        "watchers": ["hoa", "tuan"],
    }
    record = store.record("contact", "1")
    assert record is not None and record.fields["note"] == "đã chúc mừng 2026-05-02"


def test_round_robin_position_survives_a_restart_and_least_loaded_balances(
    tmp_path: Path, smtp_server: Any, http_sink: Any
) -> None:
    bundle = config(tmp_path, smtp_server.port, http_sink.url)
    url = f"sqlite:///{tmp_path / 'care.db'}"
    store = open_store(url)
    put_records(
        store,
        contact("1", renewal="2020-06-01"),
        contact("2", renewal="2020-06-01"),
        contact("3", renewal="2020-06-02"),
        contact("4", renewal="2020-06-02"),
    )
    day1 = datetime(2026, 6, 1, 9, 0, tzinfo=TZ)
    scheduler(store, bundle, day1).tick(day1)
    store.close()
    store = open_store(url)  # a restart: a new process, a new store, a new scheduler
    day2 = day1 + timedelta(days=1)
    scheduler(store, bundle, day2, owner="after-restart").tick(day2)
    runs = {(r.name, r.record_id): r for r in store.list_runs(limit=50)}
    handed = {
        key: next(e.values.get("assignee") or e.detail for e in run.trace if e.kind == "effect")
        for key, run in runs.items()
    }
    # round robin on the anniversary: 1, 2 on day 1, then (after the restart) 3, 4 go on: lan, minh, tuan, lan;
    # least loaded, a day after each anniversary, counts the contacts each owns: on day 2 lan owns 1 and 4,
    # minh 2, so 1 goes to minh; then lan owns 4 only, so 2 goes to lan
    assert [handed[("phan-bo", id_)] for id_ in "1234"] == ["lan", "minh", "tuan", "lan"], handed
    assert [handed[("it-viec", id_)] for id_ in "12"] == ["minh", "lan"], handed
    assert store.allocation("rr")["position"] == 1  # four handed out: lan, minh, tuan, lan
    assert store.allocation("ll") == {"position": 1}  # ties would go on from minh


def test_care_card_goes_to_the_orders_salesperson(tmp_path: Path, smtp_server: Any, http_sink: Any) -> None:
    bundle = config(tmp_path, smtp_server.port, http_sink.url)
    store = open_store(f"sqlite:///{tmp_path / 'care.db'}")
    put_records(
        store,
        Record(
            object="order",
            id="7",
            version=1,
            fields={
                "order_no": "DH-0007",
                "salesperson": "minh",
                "product": "Tủ lạnh",
                "delivery_date": "2026-05-01",
                "status": "delivered",
            },
        ),
    )
    at = datetime(2026, 5, 4, 9, 0, tzinfo=TZ)
    assert scheduler(store, bundle, at).tick(at).outcomes == {"sent": 1}
    [card] = [r for r in store.list_outbox(limit=20) if r.action == "add_care_card"]
    assert {k: card.payload[k] for k in ("owner", "notify_owner", "layout", "care_date", "title", "fields")} == {
        "owner": "minh",
        "notify_owner": True,
        "layout": "sau-ban-hang",
        "care_date": "2026-05-06",
        "title": "Chăm sóc sau giao hàng đơn DH-0007",
        "fields": {"product": "Tủ lạnh", "topic": "Hỏi thăm lắp đặt"},
    }
