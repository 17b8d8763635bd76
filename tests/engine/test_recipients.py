"""``to:`` naming people: the scenarios under ``flowctl test``, and the resolution itself
(``engine.recipients``): per channel, distinct, linked records through the render context."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from flowctl.engine.actions import render
from flowctl.engine.recipients import resolve
from flowctl.engine.simulator import Simulator
from flowctl.engine.state import Record
from flowctl.spec import model as m
from flowctl.spec.config import load_bundle
from tests.cli.conftest import invoke

HERE = Path(__file__).resolve().parent / "recipients"


def bundle() -> m.Bundle:
    loaded = load_bundle(HERE)
    assert loaded.ok and loaded.bundle is not None, loaded.errors
    return loaded.bundle


def deal(**fields: str) -> Record:
    return Record(object="deal", id="1", fields=fields, owner=fields.get("owner", ""), version=1)


def rule_action(name: str) -> m.Action:
    (stage,) = [s for s in bundle().pipelines["sales"].stages if s.id == "won"]
    return next(r.action for r in stage.rules if r.name == name)


def test_the_recipient_scenarios_pass_under_flowctl_test() -> None:
    result = invoke("test", HERE)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "5 passed, 0 failed"


def test_each_recipient_resolves_to_the_address_kind_of_the_channel() -> None:
    b = bundle()
    record = deal(title="Sofa", email="mai@example.com", phone="0912", owner="lan", salesperson="minh")
    people = (m.Recipient(kind="owner"), m.Recipient(kind="supervisor"), m.Recipient(kind="field", value="salesperson"))
    assert resolve("send_email", people, record, {}, b, render).addresses == (
        "lan@shop.vn",
        "hoa@shop.vn",
        "minh@shop.vn",
    )
    assert resolve("send_sms", people, record, {}, b, render).addresses == ("0901000001", "0901000004", "0901000002")
    assert resolve("notify", people, record, {}, b, render).addresses == ("lan", "hoa", "minh")


def test_a_linked_field_is_read_from_the_linked_records_the_runtime_put_in_the_context() -> None:
    b = bundle()
    linked = (m.Recipient(kind="linked", value="customer.email"), m.Recipient(kind="user", value="ketoan"))
    context = {"record": {}, "linked": {"customer": {"email": "mai@example.com", "full_name": "Mai"}}}
    found = resolve("send_email", linked, deal(owner="lan"), context, b, render)
    assert found.addresses == ("mai@example.com", "ketoan@shop.vn")
    nothing_loaded = resolve("send_email", linked, deal(owner="lan"), {"record": {}}, b, render)
    assert nothing_loaded.addresses == ("ketoan@shop.vn",)
    assert nothing_loaded.missing == ("linked.customer.email",)


def test_the_builder_keeps_an_address_template_as_before_and_parses_people() -> None:
    assert rule_action("one").recipients == (m.Recipient(kind="supervisor"),)
    kinds = [(r.kind, r.value) for r in rule_action("tell everyone").recipients]
    assert kinds == [
        ("field", "email"),
        ("owner", ""),
        ("supervisor", ""),
        ("user", "ketoan"),
        ("field", "salesperson"),
    ]


def test_one_message_per_distinct_recipient_with_keys_that_repeat_on_a_retry() -> None:
    def keys() -> list[tuple[str, str]]:
        sim = Simulator(bundle(), datetime(2026, 4, 6, 9, tzinfo=ZoneInfo("Asia/Ho_Chi_Minh")), version="t")
        fields = {"title": "Sofa", "email": "lan@shop.vn", "owner": "lan", "salesperson": "lan"}
        sim.write("create", "deal", "1", fields, stage="new")
        step = sim.write("move", "deal", "1", stage="won")
        return [(e.key, str(e.params["to"])) for e in step.effects if e.action == "send_email"]

    first = keys()
    assert [to for _, to in first] == ["lan@shop.vn", "hoa@shop.vn", "ketoan@shop.vn"]
    base = first[0][0]
    assert [k for k, _ in first] == [base, f"{base}.2", f"{base}.3"]
    assert keys() == first  # the same input gives the same keys: the outbox sends nobody twice


def test_a_recipient_without_an_address_is_reported_and_nobody_at_all_fails_the_action() -> None:
    sim = Simulator(bundle(), datetime(2026, 4, 6, 9, tzinfo=ZoneInfo("Asia/Ho_Chi_Minh")), version="t")
    sim.write("create", "deal", "3", {"title": "Tủ", "owner": "ketoan"}, stage="new")
    step = sim.write("move", "deal", "3", stage="won")
    messages = [p.message for p in step.problems]
    assert any("no address for record.email, supervisor, record.salesperson" in t for t in messages), messages
    # the SMS goes to [record.phone, owner]: ketoan has no phone and the deal none, so nobody
    assert any("send_sms found nobody to send to (record.phone, owner gave no address)" in t for t in messages)
    assert [e.params["to"] for e in step.effects if e.action == "send_email"] == ["ketoan@shop.vn"]


def test_an_address_template_inside_a_list_is_checked_like_any_template(tmp_path: Path) -> None:
    text = (HERE / "flowctl.yaml").read_text(encoding="utf-8")
    broken = text.replace("to: [record.phone, owner]", 'to: [record.phone, "{{ record.phnoe }}"]')
    assert broken != text
    (tmp_path / "flowctl.yaml").write_text(broken, encoding="utf-8")
    loaded = load_bundle(tmp_path)
    line = next(n for n, text in enumerate(broken.splitlines(), start=1) if "record.phnoe" in text)
    found = [(i.code, i.span.line) for i in loaded.errors]
    assert found == [("E031", line)], loaded.errors
    assert "a recipient of pipeline 'sales', stage 'won', rule 'thank'" in loaded.errors[0].message
