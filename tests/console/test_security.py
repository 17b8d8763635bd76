"""What keeps the console safe whatever the data: record values are text, every answer carries
the security headers, no inline script, no secret on a page, and the open console is read-only
and on loopback only."""

from __future__ import annotations

import re

import pytest

from flowctl.runtime.console.headers import CSP

from .conftest import MakeConsole, Served
from .support import ENV, SECRET_CHANNEL, XSS

PAGES = (
    "/ui/boards",
    "/ui/boards/sales",
    "/ui/boards/sales?fragment=1",
    "/ui/boards/sales/stages/new",
    "/ui/records/deal/1",
    "/ui/graphs",
    "/ui/graphs/sales",
    "/ui/graphs/follow-up",
    "/ui/runs",
    "/ui/runs?fragment=1",
    "/ui/outbox",
    "/ui/care",
    "/ui/deployments",
    "/ui/health",
)


def with_xss_deal(console: Served) -> Served:
    console.put("1", {"title": XSS, "amount": 1500000, "owner": "lan", "phone": "0901234567"}, stage="new")
    return console


def test_a_record_value_is_shown_as_text_on_every_page_that_shows_it(make_console: MakeConsole) -> None:
    console = with_xss_deal(make_console(token=False))
    for path in (
        "/ui/boards/sales",
        "/ui/boards/sales?fragment=1",
        "/ui/boards/sales/stages/new",
        "/ui/records/deal/1",
    ):
        html = console.client.get(path).text
        assert "&lt;img src=x onerror=alert(1)&gt;" in html, path
        assert "<img src=x" not in html, path
    outbox = console.client.get("/ui/outbox").text  # the SMS text merges the title
    assert "Cam on &lt;img src=x" in outbox and "<img src=x" not in outbox


def test_every_answer_under_ui_carries_the_security_headers(make_console: MakeConsole) -> None:
    console = with_xss_deal(make_console(token=False))
    paths = (*PAGES, "/ui", "/ui/", "/ui/no-such-page", "/ui/runs/no-such-run", "/ui/static/console.css")
    for path in (*paths, "/ui/static/refresh.js", "/ui/static/missing.js", "/ui/lang?to=vi"):
        answer = console.client.get(path)
        assert answer.headers["content-security-policy"] == CSP, path
        assert answer.headers["x-content-type-options"] == "nosniff", path
        assert answer.headers["referrer-policy"] == "same-origin", path
    assert "frame-ancestors 'none'" in CSP and "script-src 'self';" in CSP and "unsafe-inline" not in CSP
    assert console.client.post("/ui/outbox/1/retry").headers["content-security-policy"] == CSP


def test_no_page_has_inline_script_or_event_handlers(make_console: MakeConsole) -> None:
    console = with_xss_deal(make_console(token=False))
    for path in PAGES:
        html = console.client.get(path).text
        for script in re.findall(r"<script\b[^>]*>", html):
            assert 'src="/ui/static/' in script, (path, script)
        assert not re.search(r"<script\b[^>]*>\s*[^<\s]", html), path  # a script has no body
        assert not re.search(r"<[a-z][^>]*\son[a-z]+\s*=", html), path  # in a tag, not in escaped text
        assert "style=" not in html, path
        assert not re.search(r'(src|href)="(https?:)?//', html), path  # nothing from another origin


def test_no_token_or_secret_reaches_a_page(make_console: MakeConsole) -> None:
    console = make_console(token=True, channels=SECRET_CHANNEL)  # a channel header from ${GATEWAY_KEY}
    assert console.sign_in().status_code == 303
    with_xss_deal(console)
    console.dead_message()  # its last error on the outbox page too
    for path in (*PAGES, "/ui/signin", "/ui/outbox?status=dead"):
        html = console.client.get(path).text
        for secret in ENV.values():
            assert secret not in html, path
        assert "${" not in html, path
    assert all(secret not in value for value in console.client.cookies.values() for secret in ENV.values())


def test_the_open_console_answers_only_on_loopback(make_console: MakeConsole) -> None:
    console = make_console(token=False, client_host="192.0.2.10")
    answer = console.client.get("/ui/boards")
    assert answer.status_code == 403
    assert "loopback" in answer.text


def test_the_open_console_is_read_only(make_console: MakeConsole) -> None:
    console = with_xss_deal(make_console(token=False))
    row = console.dead_message()
    page = console.client.get("/ui/outbox").text
    assert 'data-status="dead"' in page
    assert "Retry" not in page and "/retry" not in page
    assert "Read-only" in page
    for action in (f"/ui/outbox/{row}/retry", f"/ui/outbox/{row}/cancel", "/ui/signin", "/ui/signout"):
        answer = console.client.post(action, data={"csrf": "x", "token": "x"})
        assert answer.status_code == 403, action
    assert console.svc.store.outbox_row(row).status == "dead"


@pytest.mark.parametrize("path", ["/ui/", "/ui/boards", "/ui/static/console.css"])
def test_without_ui_there_is_no_console(make_console: MakeConsole, path: str) -> None:
    console = make_console(token=False, ui=False)
    assert console.client.get(path).status_code == 404
