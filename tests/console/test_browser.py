"""The console in a real browser (headless Chromium) against a real daemon: what a person sees.

A card appears when a record is PUT and moves when the record moves, by the page's own refresh;
a run's trace opens from the record page; a dead message is retried by an operator and not
offered to a viewer; an operator restores a deleted record from the recycle bin; a hostile title
is text and runs nothing; the page asks no other origin.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from flowctl.testing import Daemon, wait_for, write_config

from .browser import Gateway, chromium, requested_urls, unavailable
from .support import ENV, OPERATOR, TOKEN, VIEWER, XSS, config

pytestmark = pytest.mark.skipif(bool(unavailable()), reason=f"browser tests: {unavailable()}")

SMS = """\
apiVersion: flowctl/v1
kind: Channel
metadata: {{name: sms}}
spec:
  type: http
  url: "{url}/sms"
  body: {{to: "{{{{ to }}}}", text: "{{{{ text }}}}"}}
"""


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    with Gateway() as running:
        yield running


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, gateway: Gateway) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("console")
    write_config(root / "config", config(token=True, channels=SMS.format(url=gateway.url)))
    running = Daemon(root / "config", f"sqlite:///{root / 'flowctl.db'}", env=ENV, token=TOKEN)
    with running.start(timeout=60):
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as driver:
        driver.set_page_load_timeout(20)
        yield driver


def sign_in(browser: Any, daemon: Daemon, token: str) -> None:
    from selenium.webdriver.common.by import By  # lazy: selenium is a test extra

    browser.delete_all_cookies()
    browser.get(f"{daemon.url}/ui/signin")
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.ID, "signin").click()
    wait_for(lambda: "/ui/signin" not in browser.current_url, 10, "the sign-in to go through")


def text_of(browser: Any, element_id: str, timeout: float = 15) -> str:
    """The text of the element ``element_id`` once the page a click is loading shows it.

    A click on a submit button returns before the next page has loaded, so looking at once can
    still see the old page, which has no such element.
    """
    from selenium.webdriver.common.by import By  # lazy: selenium is a test extra

    def found() -> list[Any]:
        return list(browser.find_elements(By.ID, element_id))

    wait_for(found, timeout, f"#{element_id} on the page", lambda: browser.current_url, every=0.2)
    return str(found()[0].text)


def card_stage(browser: Any, record_id: str) -> str:
    """The stage of the column showing the card of ``record_id`` ('' when none does)."""
    return str(
        browser.execute_script(
            "const c = document.querySelector(`a.card[data-id='${arguments[0]}']`);"
            "return c ? c.closest('section').dataset.stage : '';",
            record_id,
        )
    )


def move(daemon: Daemon, record_id: str, stage: str) -> None:
    answer = httpx.post(
        f"{daemon.url}/v1/records/deal/{record_id}/stage", json={"stage": stage}, headers=daemon.headers(), timeout=10
    )
    assert answer.status_code == 202, answer.text


def test_a_record_put_through_the_api_appears_as_a_card_and_moves_with_it(browser: Any, daemon: Daemon) -> None:
    sign_in(browser, daemon, VIEWER)
    browser.get(f"{daemon.url}/ui/boards/sales")
    browser.execute_script("window.notReloaded = true;")
    assert card_stage(browser, "b1") == ""
    assert (
        daemon.put("deal", "b1", {"title": "Bộ sofa", "amount": 15000000, "owner": "lan"}, stage="new").status_code
        == 202
    )
    wait_for(
        lambda: card_stage(browser, "b1") == "new", 15, "the card in the New column", lambda: card_stage(browser, "b1")
    )
    move(daemon, "b1", "won")
    wait_for(
        lambda: card_stage(browser, "b1") == "won", 15, "the card in the Won column", lambda: card_stage(browser, "b1")
    )
    assert browser.execute_script("return window.notReloaded === true;"), "the page reloaded instead of refreshing"


def test_a_runs_trace_opens_from_the_record_page(browser: Any, daemon: Daemon) -> None:
    from selenium.webdriver.common.by import By  # lazy: selenium is a test extra

    sign_in(browser, daemon, VIEWER)
    daemon.put("deal", "t1", {"title": "Bàn ăn", "amount": 3000000, "phone": "0901234567"}, stage="new")
    wait_for(lambda: daemon.get("/v1/records/deal/t1").json().get("pending") is False, 15, "the record processed")
    browser.get(f"{daemon.url}/ui/records/deal/t1")
    links = browser.find_elements(By.CSS_SELECTOR, "a.run-link")
    assert {link.text for link in links} >= {"flow:follow-up", "rule:sales/new/thank"}
    next(link for link in links if link.text == "flow:follow-up").click()
    trace = text_of(browser, "trace")
    assert "delay" in trace or "wait" in trace
    assert "/ui/runs/" in browser.current_url


def test_a_dead_message_is_retried_by_an_operator_and_not_offered_to_a_viewer(
    browser: Any, daemon: Daemon, gateway: Gateway
) -> None:
    from selenium.webdriver.common.by import By  # lazy: selenium is a test extra

    daemon.put("deal", "m1", {"title": "Tủ áo", "phone": "0909999999"}, stage="new")
    sign_in(browser, daemon, VIEWER)
    dead = f"{daemon.url}/ui/outbox?status=dead&record=deal/m1"

    def dead_rows() -> list[Any]:
        browser.get(dead)
        return list(browser.find_elements(By.CSS_SELECTOR, "tr[data-status='dead']"))

    wait_for(dead_rows, 20, "the SMS to die at the gateway", every=0.5)
    (line,) = dead_rows()
    row = line.get_attribute("data-row")
    assert "400" in line.text  # the gateway's answer, as the last error
    assert not line.find_elements(By.CSS_SELECTOR, "button")

    sign_in(browser, daemon, OPERATOR)
    browser.get(dead)
    hits = gateway.hits
    browser.find_element(By.CSS_SELECTOR, f"tr[data-row='{row}'] button.retry").click()
    assert f"Message {row} is queued again." in text_of(browser, "flash")
    wait_for(lambda: gateway.hits > hits, 20, "the retried message to reach the gateway again")


def test_an_operator_restores_a_deleted_record_from_the_recycle_bin(browser: Any, daemon: Daemon) -> None:
    from selenium.webdriver.common.by import By  # lazy: selenium is a test extra

    daemon.put("deal", "r1", {"title": "Ghế thư giãn", "amount": 4200000}, stage="new")
    wait_for(lambda: daemon.get("/v1/records/deal/r1").json().get("pending") is False, 15, "the record processed")
    assert daemon.delete("deal", "r1").status_code == 202
    sign_in(browser, daemon, OPERATOR)
    binned = f"{daemon.url}/ui/recycle-bin?object=deal"

    def row() -> list[Any]:
        browser.get(binned)
        return list(browser.find_elements(By.CSS_SELECTOR, "tr[data-id='r1']"))

    wait_for(row, 15, "the deleted record in the recycle bin", every=0.5)
    (line,) = row()
    assert "Ghế thư giãn" in line.text
    line.find_element(By.CSS_SELECTOR, "button.restore").click()
    assert "deal/r1 is restored" in text_of(browser, "flash")
    wait_for(lambda: daemon.get("/v1/records/deal/r1").status_code == 200, 15, "the record restored")
    browser.get(f"{daemon.url}/ui/boards/sales")
    wait_for(lambda: card_stage(browser, "r1") == "new", 15, "its card back in New", lambda: card_stage(browser, "r1"))


def test_a_hostile_title_shows_as_text_and_runs_nothing(browser: Any, daemon: Daemon) -> None:
    from selenium.common.exceptions import NoAlertPresentException  # lazy: selenium is a test extra
    from selenium.webdriver.common.by import By  # lazy: as above

    sign_in(browser, daemon, VIEWER)
    daemon.put("deal", "x1", {"title": XSS, "amount": 1}, stage="proposal")
    requested_urls(browser)  # forget what came before
    browser.get(f"{daemon.url}/ui/boards/sales")
    wait_for(lambda: card_stage(browser, "x1") == "proposal", 15, "the hostile card")
    title = browser.find_element(By.CSS_SELECTOR, "a.card[data-id='x1'] .title")
    assert title.text == XSS
    assert not browser.find_elements(By.CSS_SELECTOR, "a.card[data-id='x1'] img")
    browser.get(f"{daemon.url}/ui/records/deal/x1")
    assert browser.find_element(By.CSS_SELECTOR, "td[data-field='title']").text == XSS
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 - reading it is how Selenium asks for an alert
    assert not [url for url in requested_urls(browser) if url.rstrip("/").endswith("/x")]  # no <img src=x> loaded


def test_the_pages_ask_no_other_origin_and_break_no_policy(browser: Any, daemon: Daemon) -> None:
    sign_in(browser, daemon, VIEWER)
    requested_urls(browser)  # forget what came before
    browser.get_log("browser")
    pages = ("/ui/boards/sales", "/ui/records/deal/b1", "/ui/graphs/follow-up", "/ui/runs", "/ui/outbox", "/ui/health")
    for page in pages:
        browser.get(f"{daemon.url}{page}")
    browser.get(f"{daemon.url}/ui/boards/sales")
    wait_for(lambda: any("fragment=1" in u for u in requested_urls(browser)), 10, "a refresh of the board")
    urls = requested_urls(browser)
    timing = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name);")
    for url in [*urls, *timing]:
        assert url.startswith((daemon.url + "/ui/", "data:")), url
    problems = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not problems, problems


def test_a_hidden_tab_asks_nothing_until_it_is_shown_again(browser: Any, daemon: Daemon) -> None:
    sign_in(browser, daemon, VIEWER)
    browser.get(f"{daemon.url}/ui/runs")
    wait_for(lambda: any("fragment=1" in u for u in requested_urls(browser)), 10, "the runs list to refresh")
    browser.execute_script(  # what the browser reports when the tab goes to the background
        "Object.defineProperty(document, 'visibilityState', {value: 'hidden', configurable: true});"
        "document.dispatchEvent(new Event('visibilitychange'));"
    )
    time.sleep(0.5)  # a refresh already under way may still land
    requested_urls(browser)
    time.sleep(5)  # two and a half refresh periods
    assert not [u for u in requested_urls(browser) if "fragment=1" in u]
    browser.execute_script(
        "Object.defineProperty(document, 'visibilityState', {value: 'visible', configurable: true});"
        "document.dispatchEvent(new Event('visibilitychange'));"
    )
    wait_for(lambda: any("fragment=1" in u for u in requested_urls(browser)), 10, "a refresh once shown again")
