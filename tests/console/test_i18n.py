"""English by default, Vietnamese from Accept-Language, and the switch's cookie over both."""

from __future__ import annotations

from flowctl.runtime.console import i18n

from .conftest import MakeConsole


def test_english_is_the_default(make_console: MakeConsole) -> None:
    html = make_console(token=False).client.get("/ui/boards").text
    assert '<html lang="en">' in html and ">Boards</a>" in html


def test_vietnamese_from_accept_language(make_console: MakeConsole) -> None:
    console = make_console(token=False)
    html = console.client.get("/ui/boards", headers={"Accept-Language": "vi-VN,vi;q=0.9,en;q=0.5"}).text
    assert '<html lang="vi">' in html and ">Bảng Kanban</a>" in html and ">Hộp thư đi</a>" in html


def test_the_switch_sets_a_cookie_that_wins_over_the_header(make_console: MakeConsole) -> None:
    console = make_console(token=False)
    switch = console.client.get("/ui/lang?to=vi&next=/ui/runs")
    assert switch.status_code == 303 and switch.headers["location"] == "/ui/runs"
    assert "lang=vi" in switch.headers["set-cookie"] and "Path=/ui" in switch.headers["set-cookie"]
    html = console.client.get("/ui/runs", headers={"Accept-Language": "en"}).text
    assert ">Lượt chạy</a>" in html
    assert 'href="/ui/lang?to=en&amp;next=%2Fui%2Fruns"' in html  # and back


def test_the_switch_goes_back_only_into_the_console(make_console: MakeConsole) -> None:
    console = make_console(token=False)
    assert console.client.get("/ui/lang?to=vi&next=https://evil.example/").headers["location"] == "/ui/"


def test_both_languages_have_every_word() -> None:
    assert set(i18n.EN) == set(i18n.VI)
    assert all(i18n.VI[key] for key in i18n.VI)


def test_choose_follows_the_q_values() -> None:
    assert i18n.choose("", "en;q=0.4, vi;q=0.8") == "vi"
    assert i18n.choose("", "fr, de") == "en"
    assert i18n.choose("en", "vi") == "en"
    assert i18n.choose("xx", "vi") == "vi"
