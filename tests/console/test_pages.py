"""The pages show what the store holds: cards in their columns with counts and sums, filters, the
"more" page of a long column, a record's timeline with links to its runs' traces, runs filtered,
diagrams with their nodes, and the fragment the refresh swaps in."""

from __future__ import annotations

import re
from datetime import timedelta

from flowctl.ports import ConfigVersion

from .conftest import MakeConsole, Served


def column(html: str, stage: str) -> str:
    """The HTML of one board column."""
    found = re.search(rf'<section class="column[^"]*" data-stage="{stage}">(.*?)</section>', html, re.S)
    assert found, f"no column {stage}"
    return found.group(1)


def cards(html: str, stage: str) -> list[str]:
    return re.findall(r'class="card" [^>]*data-id="([^"]+)"', column(html, stage))


def deals(console: Served) -> Served:
    console.put("1", {"title": "Bộ sofa", "amount": 15000000, "owner": "lan"}, stage="new")
    console.put("2", {"title": "Bàn ăn", "amount": 5000000, "owner": "minh"}, stage="new")
    console.put("3", {"title": "Tủ áo", "amount": 7000000, "owner": "lan"}, stage="proposal")
    return console


def test_a_board_shows_each_record_as_a_card_in_its_stage_with_counts_and_sums(make_console: MakeConsole) -> None:
    console = deals(make_console(token=False))
    html = console.client.get("/ui/boards/sales").text
    assert sorted(cards(html, "new")) == ["1", "2"] and cards(html, "proposal") == ["3"]
    assert '<span class="pending" title="proposal/remind">1 pending rule(s)</span>' in column(html, "proposal")
    assert "pending rule" not in column(html, "new")  # its SMS rule ran at once
    assert cards(html, "won") == [] and "No records" in column(html, "won")
    new = column(html, "new")
    assert '<span class="count" title="Count">2</span>' in new
    assert "20,000,000" in new and "Bộ sofa" in new and ">lan<" in new


def test_moving_a_record_moves_its_card(make_console: MakeConsole) -> None:
    console = deals(make_console(token=False))
    console.move("1", "won")
    html = console.client.get("/ui/boards/sales?fragment=1").text
    assert cards(html, "new") == ["2"] and cards(html, "won") == ["1"]
    assert not html.lstrip().startswith("<!doctype") and 'id="board"' in html  # the region alone
    again = 'data-refresh="/ui/boards/sales?owner=lan&amp;fragment=1"'
    assert again in console.client.get("/ui/boards/sales?owner=lan&fragment=1").text  # and refreshes itself


def test_the_owner_and_text_filters_narrow_the_board(make_console: MakeConsole) -> None:
    console = deals(make_console(token=False))
    by_owner = console.client.get("/ui/boards/sales?owner=lan").text
    assert cards(by_owner, "new") == ["1"] and cards(by_owner, "proposal") == ["3"]
    assert '<option value="lan" selected>' in by_owner
    by_text = console.client.get("/ui/boards/sales?q=b%C3%A0n").text
    assert cards(by_text, "new") == ["2"] and cards(by_text, "proposal") == []


def test_a_long_column_shows_its_first_cards_and_a_more_link(make_console: MakeConsole) -> None:
    console = make_console(token=False)
    for i in range(25):
        console.put(f"d{i:02}", {"title": f"Deal {i}", "amount": 1000}, stage="proposal")
    html = console.client.get("/ui/boards/sales").text
    shown = cards(html, "proposal")
    assert len(shown) == 20
    assert '<span class="count" title="Count">25</span>' in column(html, "proposal")
    more = re.search(r'class="more" href="([^"]+)"', column(html, "proposal"))
    assert more, "no more link"
    rest = console.client.get(more.group(1).replace("&amp;", "&")).text
    listed = re.findall(r'class="card-row" data-id="([^"]+)"', rest)
    assert len(listed) == 5 and not set(listed) & set(shown)


def test_an_unknown_pipeline_is_a_404_page_naming_it(make_console: MakeConsole) -> None:
    console = make_console(token=False)
    answer = console.client.get("/ui/boards/nope")
    assert answer.status_code == 404 and "nope" in answer.text and "sales" in answer.text


def test_a_record_page_shows_fields_runs_messages_and_timers(make_console: MakeConsole) -> None:
    console = deals(make_console(token=False))
    console.put("1", {"title": "Bộ sofa", "amount": 15000000, "owner": "lan", "phone": "0901234567"}, stage="new")
    html = console.client.get("/ui/records/deal/1").text
    assert "Tên cơ hội" in html and "15,000,000" in html  # the field's label from the object type
    runs = re.findall(r'class="run-link" href="([^"]+)">([^<]+)<', html)
    assert {"flow:follow-up", "rule:sales/new/thank"} <= {name for _, name in runs}
    assert "delay" in html  # the follow-up flow's pending timer
    trace_link = next(href for href, name in runs if name == "flow:follow-up")
    trace = console.client.get(trace_link).text
    assert 'id="trace"' in trace and "wait" in trace


def test_a_ref_field_on_a_record_page_links_to_the_record_it_names(make_console: MakeConsole) -> None:
    console = deals(make_console(token=False))
    console.put("4", {"title": "Ghế", "referred_by": "1"}, stage="new")
    html = console.client.get("/ui/records/deal/4").text
    (href,) = re.findall(r'class="ref-link" href="([^"]+)">1<', html)
    assert href == "/ui/records/deal/1"
    assert 'id="record-id">1<' in console.client.get(href).text


def test_a_record_page_shows_the_notes_written_on_it_each_linking_to_its_run(make_console: MakeConsole) -> None:
    console = make_console(token=False)
    console.put("5", {"title": "Ghế", "amount": 100}, stage="new")
    console.move("5", "won")
    html = console.client.get("/ui/records/deal/5").text
    notes = re.search(r"<h2>Notes</h2>(.*?)</section>", html, re.S)
    assert notes, "no notes section on the record page"
    (item,) = re.findall(r"<li>(.*?)</li>", notes.group(1), re.S)
    assert "Won Ghế &lt;b&gt;100&lt;/b&gt;" in item  # the note's text, escaped as text
    assert ">rule:sales/won/celebrate</a>" in item  # the link names the automation that wrote it
    (run_link,) = re.findall(r'href="([^"]+)"', item)
    assert "rule:sales/won/celebrate" in console.client.get(run_link).text


def test_a_record_page_lists_every_stage_the_record_entered_with_when(make_console: MakeConsole) -> None:
    console = make_console(token=False)
    console.put("5", {"title": "Ghế", "amount": 100})  # no stage: it enters the first, New
    console.svc.clock.advance(timedelta(hours=1))
    console.move("5", "proposal")
    html = console.client.get("/ui/records/deal/5").text
    history = re.search(r"<h2>Stage history</h2>(.*?)</section>", html, re.S)
    assert history, "no stage history on the record page"
    rows = re.findall(r"<tr><td>([^<]+)</td><td>([^<]+)</td><td>([^<]*)</td></tr>", history.group(1))
    assert [(stage, pipeline) for stage, pipeline, _ in rows] == [("new", "sales"), ("proposal", "sales")]
    first, second = (at for _, _, at in rows)
    assert first and second and first < second  # each with its time, an hour apart


def test_runs_filter_by_status_and_record_and_refuse_a_bad_time(make_console: MakeConsole) -> None:
    console = deals(make_console(token=False))
    waiting = console.client.get("/ui/runs?status=waiting").text
    statuses = set(re.findall(r'<span class="status ([a-z]+)">', waiting))
    assert statuses == {"waiting"}
    one = console.client.get("/ui/runs?record=deal/3").text
    assert set(re.findall(r">deal/(\d+)</a>", one)) == {"3"}
    started = console.client.get("/ui/runs?since=2026-03-02&until=2026-03-02T03:00").text  # T0 is 02:00 UTC
    assert set(re.findall(r">deal/(\d+)</a>", started)) == {"1", "2", "3"}
    assert not re.findall(r">deal/(\d+)</a>", console.client.get("/ui/runs?since=2026-03-02T02:00:01").text)
    bad = console.client.get("/ui/runs?since=last+tuesday")
    assert bad.status_code == 400 and "since" in bad.text
    fragment = console.client.get("/ui/runs?status=waiting&fragment=1").text
    assert 'id="runs"' in fragment and "<html" not in fragment


def test_a_diagram_draws_every_node_with_its_live_waiting_count(make_console: MakeConsole) -> None:
    console = deals(make_console(token=False))  # three deals with an amount: three follow-ups wait
    svg = console.client.get("/ui/graphs/follow-up").text
    nodes = dict(re.findall(r'<g class="node [^"]*" data-node="([^"]+)">.*?>(\d+) waiting</text>', svg, re.S))
    assert nodes == {"start": "0", "check": "0", "wait": "3", "again": "0", "done": "0"}
    assert '<g class="node delay busy" data-node="wait">' in svg
    console.put("4", {"title": "Ghế", "amount": 100}, stage="new")
    assert '<g class="node delay busy" data-node="wait">' in console.client.get("/ui/graphs/follow-up").text
    assert ">4 waiting</text>" in console.client.get("/ui/graphs/follow-up").text
    pipeline = console.client.get("/ui/graphs/sales").text
    stages = [n for n in re.findall(r'data-node="([^"]+)"', pipeline) if "/" not in n]
    assert stages == ["new", "proposal", "won", "lost"]


def test_every_page_answers(make_console: MakeConsole) -> None:
    console = deals(make_console(token=False))
    for path in ("/ui/boards", "/ui/graphs", "/ui/outbox?status=pending", "/ui/care", "/ui/deployments", "/ui/health"):
        answer = console.client.get(path)
        assert answer.status_code == 200, (path, answer.text)
    assert "sales" in console.client.get("/ui/boards").text
    assert "follow-up" in console.client.get("/ui/graphs").text


def test_runs_come_a_page_at_a_time(make_console: MakeConsole) -> None:
    console = make_console(token=False)
    for i in range(30):  # two runs each: the stage rule and the follow-up flow
        console.put(f"p{i:02}", {"title": f"Deal {i}", "amount": 100, "phone": "0901234567"}, stage="new")
    first = console.client.get("/ui/runs").text
    shown = re.findall(r'class="run-link" href="/ui/runs/([^"]+)"', first)
    assert len(shown) == 50
    following = re.search(r'class="next" href="([^"]+)"', first)
    assert following, "no next page"
    rest = console.client.get(following.group(1).replace("&amp;", "&")).text
    more = re.findall(r'class="run-link" href="/ui/runs/([^"]+)"', rest)
    assert len(more) == 10 and not set(more) & set(shown)
    assert 'class="next"' not in rest


def test_deployments_list_the_versions_and_show_what_changed_between_two(make_console: MakeConsole) -> None:
    console = make_console(token=False)
    store, now = console.svc.store, console.svc.clock.now()
    stage = {"spec": {"object": "deal", "stages": [{"id": "new"}]}}
    moved = {"spec": {"object": "deal", "stages": [{"id": "new"}, {"id": "won"}]}}
    first = {"Pipeline/sales": stage}
    store.save_version(
        ConfigVersion(id="v1aaaaaaaaaaaa", applied_at=now, documents=first, commit="c0ffee1", author="lan")
    )
    later = now + timedelta(hours=1)
    second = {"Pipeline/sales": moved, "Flow/new-one": {}}
    store.save_version(ConfigVersion(id="v2bbbbbbbbbbbb", applied_at=later, documents=second))
    page = console.client.get("/ui/deployments").text
    assert page.index("v2bbbbbbbbbb") < page.index("v1aaaaaaaaaa")  # newest first
    assert '<code>v2bbbbbbbbbb</code> <span class="badge">current</span>' in page and "c0ffee1" in page
    diff = console.client.get("/ui/deployments?from=v1aaaaaaaaaaaa&to=v2bbbbbbbbbbbb").text
    assert "Pipeline/sales" in diff and "Flow/new-one" in diff and "won" in diff
    assert "<code>flowctl rollback v1aaaaaaaaaa</code>" in diff  # from the current version back: the command
    backwards = console.client.get("/ui/deployments?from=v2bbbbbbbbbbbb&to=v1aaaaaaaaaaaa").text
    assert "flowctl rollback" not in backwards  # towards an older version is not a rollback of the current one
    assert console.client.get("/ui/deployments?from=nope&to=v2bbbbbbbbbbbb").status_code == 404


def test_health_says_whether_the_engine_runs_and_what_the_last_reload_did(make_console: MakeConsole) -> None:
    console = make_console(token=False)
    page = console.client.get("/ui/health").text
    assert "Engine process" in page and ">running<" in page and "True" not in page
    assert "none since the daemon started" in page


def test_care_shows_each_process_with_who_it_touches_in_the_next_days(make_console: MakeConsole) -> None:
    console = make_console(token=False)  # the clock is at 2026-03-02 02:00 UTC
    console.put("r1", {"title": "Hợp đồng bảo trì", "renewal": "2024-03-05", "phone": "0901234567"}, stage="won")
    page = console.client.get("/ui/care").text
    row = re.search(r"<tr><td>renewal-call.*?</tr>", page, re.S)
    assert row, page
    days = dict(re.findall(r'<span class="day" title="([\d-]+)">[^:]+: (\d+)</span>', row.group(0)))
    assert days["2026-03-05"] == "1" and days["2026-03-04"] == "0"
    assert "<td>2026-03-02 09:00:00</td>" in row.group(0)  # the next firing: today at 09:00
