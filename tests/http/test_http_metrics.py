"""The metrics registry and the Prometheus text it renders."""

from __future__ import annotations

import json
import math
import threading

import pytest
from http_support import Api
from prometheus_client.parser import text_string_to_metric_families

from flowctl.runtime.api.metrics import CONTENT_TYPE, MetricError, Metrics, add_gained, gained


def parse(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Prometheus text format 0.0.4 → {sample name: {labels: value}}, read by prometheus_client's
    own parser (which fails on a bad line); every family has a TYPE and a HELP."""
    assert text.endswith("\n")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        assert family.type in ("counter", "gauge", "histogram"), family
        assert family.documentation, f"{family.name} has no HELP"
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
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
    assert samples["app_requests_total"][(("route", '/b "quoted"\n'), ("status", "500"))] == 2
    assert samples["app_workers"][()] == 3
    assert [samples["app_seconds_bucket"][(("le", le),)] for le in ("0.1", "1.0", "+Inf")] == [1, 2, 3]
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
    with pytest.raises(MetricError, match="_total"):
        metrics.counter("x_count", "A counter's name ends in _total.")
    with pytest.raises(MetricError, match="_total"):
        metrics.gauge_callback("y_total", "Only a counter's does.", lambda: 1)


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


def test_what_the_engine_process_histograms_gained_adds_up_in_the_daemons() -> None:
    child, parent = Metrics(), Metrics()
    for metrics in (child, parent):
        metrics.histogram("batch_seconds", "Batch.", ("kind",), buckets=(0.1, 1.0))
    observed = child.histograms()["batch_seconds"]
    sent: dict = {}
    for values in ((0.05, 0.5), (5.0,), ()):  # three reports; the last has nothing new
        for value in values:
            observed.observe(value, kind="changes")
        now = {name: h.state() for name, h in child.histograms().items()}
        doc = gained(now, sent)
        assert bool(doc) == bool(values)
        add_gained(parent, json.loads(json.dumps(doc)))  # as it crosses the pipe
        sent = now
    restarted = Metrics()  # a new engine process starts from zero; the daemon keeps the sum
    restarted.histogram("batch_seconds", "Batch.", ("kind",), buckets=(0.1, 1.0)).observe(0.01, kind="changes")
    add_gained(parent, gained({n: h.state() for n, h in restarted.histograms().items()}, {}))

    samples = parse(parent.render())
    buckets = [samples["batch_seconds_bucket"][(("kind", "changes"), ("le", le))] for le in ("0.1", "1.0", "+Inf")]
    assert buckets == [2, 3, 4]
    assert math.isclose(samples["batch_seconds_sum"][(("kind", "changes"),)], 5.56)
