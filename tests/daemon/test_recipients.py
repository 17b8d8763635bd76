"""Recipients against a real SMTP server (aiosmtpd) and a real ``flowctl run`` (issue 16, item 7).

A stage rule's ``to:`` lists the customer's address, the owner, the owner's supervisor, a named
user, the salesperson field and the owner again: each distinct person gets the email once, at
their own address from Config ``users``, and a restart (which runs the deliverer again over the
same outbox) sends nobody a second copy.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from flowctl.store import open_store
from flowctl.testing import Daemon, wait_for
from tests.conftest import SmtpServer
from tests.daemon.configs import deal_config, mail_template, sales_pipeline

USERS = """{timezone: UTC, users: {
  lan: {full_name: Lan, email: lan@shop.vn, supervisor: hoa},
  minh: {full_name: Minh, email: minh@shop.vn, supervisor: hoa},
  hoa: {full_name: Hoa, email: hoa@shop.vn},
  ketoan: {full_name: Kế toán, email: ketoan@shop.vn}}}"""
RULES = """\
        - name: tell everyone
          action: send_email
          template: won
          to: [record.email, owner, supervisor, {user: ketoan}, record.salesperson, owner]
"""


def config(smtp_port: int) -> str:
    email = f"""\
apiVersion: flowctl/v1
kind: Channel
metadata: {{name: email}}
spec: {{type: smtp, host: 127.0.0.1, port: {smtp_port}, security: none, from: shop@example.com}}
---
"""
    then = email + mail_template("won", "Đơn {{ record.title }}", "Đơn {{ record.title }} đã chốt.") + "---\n"
    fields = "    email: email\n    salesperson: user\n"
    return deal_config(fields, spec=USERS, then=then + sales_pipeline(RULES))


def test_a_list_of_recipients_gets_the_email_once_each_across_a_restart(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    root = tmp_path / "config"
    root.mkdir()
    (root / "flowctl.yaml").write_text(config(smtp_server.port))
    database = f"sqlite:///{tmp_path / 'flowctl.db'}"
    daemon = Daemon(root / "flowctl.yaml", database)

    def received() -> Counter[str]:
        return Counter(to for mail in smtp_server.handler.messages for to in mail.rcpt_tos)

    try:
        daemon.start()
        fields = {"title": "Sofa", "email": "mai@example.com", "owner": "lan", "salesperson": "minh"}
        answer = daemon.put("deal", "1", fields)
        assert answer.status_code in (200, 202), answer.text
        first = ["mai@example.com", "lan@shop.vn", "hoa@shop.vn", "ketoan@shop.vn", "minh@shop.vn"]
        wait_for(lambda: sum(received().values()) >= len(first), what="one email per recipient", detail=received)
        assert daemon.terminate() == 0

        daemon.start()  # the deliverer starts over the same outbox: nothing already sent goes again
        answer = daemon.put("deal", "2", {"title": "Bàn", "email": "HOA@shop.vn", "owner": "minh"})
        assert answer.status_code in (200, 202), answer.text
        # deal 2: the customer is the supervisor (one email), minh is the owner, no salesperson
        second = ["HOA@shop.vn", "minh@shop.vn", "ketoan@shop.vn"]
        wait_for(lambda: sum(received().values()) >= 8, what="deal 2's emails", detail=received)
    finally:
        daemon.stop_quietly()

    mails = [(mail.message["Subject"], mail.rcpt_tos) for mail in smtp_server.handler.messages]
    assert sorted(to for subject, (to,) in mails if subject == "Đơn Sofa") == sorted(first)
    assert sorted(to for subject, (to,) in mails if subject == "Đơn Bàn") == sorted(second)
    assert len(mails) == 8  # each recipient once, one recipient per message
    store = open_store(database)
    try:
        rows = store.list_outbox(limit=100)
    finally:
        store.close()
    keys = sorted(row.key for row in rows if row.record_id == "1")
    assert len(rows) == 8 and {row.status for row in rows} == {"sent"}
    base = min(keys, key=len)  # the first recipient keeps the action's key, the n-th is <key>.<n>
    assert keys == sorted([base, *(f"{base}.{n}" for n in range(2, 6))])
