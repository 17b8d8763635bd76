"""The metrics registry and the Prometheus text it renders."""

from __future__ import annotations

import math
import re
import threading

import pytest
from http_support import Api

from flowctl.runtime.api.metrics import CONTENT_TYPE, MetricError, Metrics

_SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)"
    r'(?:\{(?P<labels>(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*)\})?'
    r" (?P<value>[-+]?(?:[0-9.]+(?:e[-+]?[0-9]+)?|Inf|NaN))$"
)
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')


def parse(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Prometheus text format 0.0.4 → {sample name: {labels: value}}; fails on any bad line."""
    assert text.endswith("\n")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped")
            assert name not in types, f"TYPE given twice for {name}"
            types[name] = kind
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a sample line: {line!r}"
        name = match["name"]
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        assert family in types, f"{name} has no TYPE line before it"
        labels = tuple(_LABEL.findall(match["labels"] or ""))
        samples.setdefault(name, {})[labels] = float(match["value"].replace("Inf", "inf"))
    return samples


def test_counters_gauges_histograms_and_callbacks_render_as_prometheus_text() -> None:
    metrics = Metrics()
    requests = metrics.counter("app_requests_total", "Requests.", ("route", "status"))
    requests.inc(route="/a", status="200")
    requests.inc(2, route='/b "quoted"\n', status="500")
    metrics.gauge("app_workers", "Workers.").set(3)
    latency = metrics.histogram("app_seconds", "Latency.", buckets=(0.1, 1.0))
    for value in (0.05, 0.5, 5.0):
        latency.observe(value)
    metrics.gauge_callback("app_outbox", "Outbox rows.", lambda: {"pending": 4, "dead": 1}, ("status",))
    metrics.gauge_callback("app_broken", "Fails.", lambda: 1 / 0)

    samples = parse(metrics.render())

    assert samples["app_requests_total"][(("route", "/a"), ("status", "200"))] == 1
    assert samples["app_requests_total"][(("route", '/b \\"quoted\\"\\n'), ("status", "500"))] == 2
    assert samples["app_workers"][()] == 3
    assert [samples["app_seconds_bucket"][(("le", le),)] for le in ("0.1", "1", "+Inf")] == [1, 2, 3]
    assert samples["app_seconds_count"][()] == 3
    assert math.isclose(samples["app_seconds_sum"][()], 5.55)
    assert samples["app_outbox"] == {(("status", "dead"),): 1, (("status", "pending"),): 4}
    assert "app_broken" not in samples  # a failing callback is skipped, the scrape goes on


def test_registering_is_get_or_create_and_checks_consistency() -> None:
    metrics = Metrics()
    first = metrics.counter("x_total", "X.", ("a",))

    assert metrics.counter("x_total", "X.", ("a",)) is first
    with pytest.raises(MetricError):
        metrics.counter("x_total", "X.", ("b",))
    with pytest.raises(MetricError):
        metrics.gauge("x_total", "X.", ("a",))
    with pytest.raises(MetricError):
        first.inc(route="missing label")
    with pytest.raises(MetricError):
        first.inc(-1, a="1")
    with pytest.raises(MetricError):
        metrics.counter("bad name", "X.")


def test_a_callback_can_be_replaced() -> None:
    metrics = Metrics()
    metrics.gauge_callback("depth", "Queue depth.", lambda: 1)
    metrics.gauge_callback("depth", "Queue depth.", lambda: 2)

    assert parse(metrics.render())["depth"][()] == 2


def test_counting_from_many_threads_loses_nothing() -> None:
    metrics = Metrics()
    counter = metrics.counter("n_total", "N.", ("t",))
    histogram = metrics.histogram("h_seconds", "H.")

    def work() -> None:
        for _ in range(5000):
            counter.inc(t="x")
            histogram.observe(0.01)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert counter.value(t="x") == 40000
    assert histogram.count() == 40000


def test_the_metrics_endpoint_serves_what_the_api_counted(api: Api) -> None:
    api.client.put("/v1/records/deal/1", json={"fields": {"title": "x"}})
    api.client.put("/v1/records/deal/1", json={"fields": {}})

    response = api.client.get("/metrics")

    assert response.headers["content-type"] == CONTENT_TYPE
    samples = parse(response.text)
    route = ("route", "PUT /v1/records/{object}/{id}")
    assert samples["flowctl_http_requests_total"][(route, ("status", "202"))] == 1
    assert samples["flowctl_http_requests_total"][(route, ("status", "422"))] == 1
    assert samples["flowctl_http_request_seconds_count"][(route,)] == 2
    assert samples["flowctl_changes_accepted_total"][(("source", "api"),)] == 1
