"""Sign-in: a token is exchanged for a session cookie (HttpOnly, SameSite=Strict, Path=/ui; Secure
on https) that is not the token; every POST carries the session's CSRF token; roles decide who may
retry or cancel a message."""

from __future__ import annotations

from urllib.parse import quote

from .conftest import MakeConsole
from .support import OPERATOR, TOKEN, VIEWER


def test_a_page_without_a_session_sends_to_the_sign_in_form(make_console: MakeConsole) -> None:
    console = make_console(token=True)
    answer = console.client.get("/ui/runs?status=failed")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/ui/signin?next=" + quote("/ui/runs?status=failed", safe="")
    form = console.client.get(answer.headers["location"])
    assert form.status_code == 200 and 'type="password" name="token"' in form.text
    assert 'value="/ui/runs?status=failed"' in form.text


def test_signing_in_gives_a_session_cookie_that_is_not_the_token(make_console: MakeConsole) -> None:
    console = make_console(token=True)
    answer = console.sign_in(TOKEN)
    assert answer.status_code == 303 and answer.headers["location"] == "/ui/outbox"
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("flowctl_session="))
    attributes = {part.strip().split("=")[0].lower(): part for part in cookie.split(";")}
    assert "httponly" in attributes and "secure" not in attributes
    assert attributes["samesite"].split("=")[1].lower() == "strict"
    assert attributes["path"].split("=")[1] == "/ui"
    assert TOKEN not in cookie
    page = console.client.get("/ui/outbox")
    assert page.status_code == 200 and "Signed in as api_token (admin)" in page.text


def test_the_cookie_is_secure_on_https(make_console: MakeConsole) -> None:
    console = make_console(token=True, base_url="https://127.0.0.1")
    answer = console.sign_in(TOKEN)
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("flowctl_session="))
    assert "secure" in cookie.lower()


def test_a_wrong_token_signs_nobody_in(make_console: MakeConsole) -> None:
    console = make_console(token=True)
    answer = console.sign_in("not-the-token")
    assert answer.status_code == 401
    assert "That token is not accepted." in answer.text
    assert "flowctl_session" not in answer.headers.get("set-cookie", "")
    assert console.client.get("/ui/boards").status_code == 303


def test_sign_in_without_the_forms_csrf_value_is_refused(make_console: MakeConsole) -> None:
    console = make_console(token=True)
    answer = console.client.post("/ui/signin", data={"token": TOKEN, "csrf": "guessed", "next": "/ui/boards"})
    assert answer.status_code == 403
    assert console.client.get("/ui/boards").status_code == 303


def test_sign_in_goes_back_only_to_a_console_page(make_console: MakeConsole) -> None:
    console = make_console(token=True)
    for elsewhere in ("https://evil.example/", "//evil.example/ui/", "/v1/records/deal/1", "/ui\\@evil"):
        console.client.get("/ui/signin")
        csrf = console.client.cookies.get("flowctl_signin")
        answer = console.client.post("/ui/signin", data={"token": TOKEN, "csrf": csrf, "next": elsewhere})
        assert answer.headers["location"] == "/ui/", elsewhere


def test_sign_out_needs_the_csrf_token_and_ends_the_session(make_console: MakeConsole) -> None:
    console = make_console(token=True)
    console.sign_in(TOKEN)
    session = console.client.cookies.get("flowctl_session")
    assert console.client.post("/ui/signout", data={"csrf": "wrong"}).status_code == 403
    assert console.client.get("/ui/boards").status_code == 200
    answer = console.client.post("/ui/signout", data={"csrf": console.csrf("/ui/boards")})
    assert answer.status_code == 303
    console.client.cookies.set("flowctl_session", session or "", path="/ui")
    assert console.client.get("/ui/boards").status_code == 303  # the old cookie opens nothing


def test_a_viewer_sees_a_dead_message_but_may_not_retry_it(make_console: MakeConsole) -> None:
    console = make_console(token=True)
    console.put("1", {"title": "Sofa", "phone": "0901234567"}, stage="new")
    row = console.dead_message()
    console.sign_in(VIEWER)
    page = console.client.get("/ui/outbox").text
    assert "HTTP 400 from the gateway" in page and 'data-status="dead"' in page
    assert "/retry" not in page and "/cancel" not in page
    csrf = console.csrf("/ui/boards")  # the sign-out form's: a valid token of this session
    answer = console.client.post(f"/ui/outbox/{row}/retry", data={"csrf": csrf})
    assert answer.status_code == 403 and "operator" in answer.text
    assert console.svc.store.outbox_row(row).status == "dead"


def test_an_operator_retries_a_dead_message(make_console: MakeConsole) -> None:
    console = make_console(token=True)
    console.put("1", {"title": "Sofa", "phone": "0901234567"}, stage="new")
    row = console.dead_message()
    console.sign_in(OPERATOR)
    page = console.client.get("/ui/outbox").text
    assert f'action="/ui/outbox/{row}/retry"' in page
    refused = console.client.post(f"/ui/outbox/{row}/retry", data={"csrf": "forged"})
    assert refused.status_code == 403 and console.svc.store.outbox_row(row).status == "dead"
    back = "/ui/outbox?status=dead&done=retried:999"
    answer = console.client.post(f"/ui/outbox/{row}/retry", data={"csrf": console.csrf("/ui/outbox"), "back": back})
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/ui/outbox?status=dead&done=retried%3A{row}"
    assert console.svc.store.outbox_row(row).status == "pending"
    after = console.client.get(answer.headers["location"]).text
    assert f"Message {row} is queued again." in after


def test_a_session_of_another_console_opens_nothing(make_console: MakeConsole) -> None:
    first, second = make_console(token=True), make_console(token=True)
    first.sign_in(TOKEN)
    second.client.cookies.set("flowctl_session", first.client.cookies.get("flowctl_session") or "", path="/ui")
    assert second.client.get("/ui/boards").status_code == 303


def test_an_oversized_sign_in_form_is_refused_with_413(make_console: MakeConsole) -> None:
    console = make_console(token=True)
    answer = console.client.post("/ui/signin", data={"token": "x" * 20_000, "csrf": "y"})
    assert answer.status_code == 413 and "at most" in answer.text
