"""Prometheus metrics: counters, gauges, histograms and scrape-time callbacks, exposed through
``prometheus_client``.

One :class:`Metrics` registry per process. Registering is get-or-create, so the HTTP app and the
service may both ask for ``flowctl_changes_accepted_total`` and share it. Updates take a lock (a
few hundred nanoseconds), so any thread may count. :meth:`Metrics.render` writes the text
exposition format 0.0.4 that Prometheus scrapes, through ``prometheus_client``'s own writer (so
names, escaping and types are what ``promtool check metrics`` expects), followed by the process
metrics (``process_cpu_seconds_total``, ``process_resident_memory_bytes``, …) and ``python_info``.

Labels are passed by name: ``requests.inc(route="PUT /v1/records/{object}/{id}", status="202")``.
Values that are cheaper to read than to keep up to date (queue depth, outbox rows by status) are
callbacks evaluated at scrape time: ``metrics.gauge_callback("flowctl_outbox", "…", fn, ("status",))``
where ``fn`` returns ``{"pending": 3, "dead": 1}`` (or a plain number when there are no labels);
a count kept elsewhere (by the engine process) is a ``counter_callback`` and its name ends in
``_total``. A counter's name must end in ``_total`` and no other metric's may.

The engine process keeps its histograms in its own registry and sends what they gained to the
daemon (``engine_child``), which adds it to the histograms of the same name here
(:meth:`Histogram.state`, :meth:`Histogram.add_state`): one ``/metrics`` shows both processes.
"""

from __future__ import annotations

import bisect
import logging
import math
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from flowctl.ports import Clock
from flowctl.runtime.daemon.ingest import unavailable

log = logging.getLogger("flowctl.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Latency buckets in seconds: an accepted write is one group commit, so most land below 50 ms.
DEFAULT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Buckets for waits that may last minutes (a message retried, a change behind a backlog).
SLOW_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

LabelKey = tuple[str, ...]
CallbackValue = float | int | Mapping[str, float | int] | Mapping[tuple[str, ...], float | int]
#: A histogram's observations: per label values, the count in each bucket (the last: above every
#: bound, not cumulative) and the sum.
HistogramState = dict[LabelKey, tuple[list[int], float]]


class MetricError(ValueError):
    """A metric was registered or used inconsistently (bad name, other kind, other labels)."""


class _Metric:
    kind = ""

    def __init__(self, name: str, help: str, labels: Sequence[str]) -> None:
        if not _NAME.match(name):
            raise MetricError(f"'{name}' is not a valid metric name")
        if name.endswith("_total") != (self.kind == "counter"):
            fix = "a counter's name ends in _total" if self.kind == "counter" else "only a counter's ends in _total"
            raise MetricError(f"metric {name}: {fix} (promtool check metrics refuses it otherwise)")
        for label in labels:
            if not _LABEL.match(label) or label.startswith("__") or label == "le":
                raise MetricError(f"'{label}' is not a valid label name for metric {name}")
        self.name = name
        self.help = help
        self.labelnames = tuple(labels)
        self._lock = threading.Lock()

    def _key(self, labels: Mapping[str, object]) -> LabelKey:
        if len(labels) != len(self.labelnames):
            raise MetricError(f"metric {self.name} takes labels {list(self.labelnames)}, got {sorted(labels)}")
        try:
            return tuple(str(labels[n]) for n in self.labelnames)
        except KeyError as exc:
            raise MetricError(f"metric {self.name} needs label {exc.args[0]!r}") from None

    def families(self) -> Iterator[Metric]:
        raise NotImplementedError


def _family(kind: str, name: str, help: str, labels: Sequence[str], rows: Iterable[tuple[LabelKey, float]]) -> Metric:
    family: CounterMetricFamily | GaugeMetricFamily
    if kind == "counter":
        family = CounterMetricFamily(name, help, labels=labels)
    else:
        family = GaugeMetricFamily(name, help, labels=labels)
    for key, value in rows:
        family.add_metric(list(key), float(value))
    return family


class Counter(_Metric):
    """A number that only goes up (requests served, changes accepted); its name ends in ``_total``."""

    kind = "counter"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help, labels)
        self._values: dict[LabelKey, float] = {}

    def inc(self, amount: float = 1.0, /, **labels: str) -> None:
        if amount < 0:
            raise MetricError(f"counter {self.name} cannot go down (inc by {amount})")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def families(self) -> Iterator[Metric]:
        with self._lock:
            items = sorted(self._values.items())
        yield _family(self.kind, self.name, self.help, self.labelnames, items)


class Gauge(Counter):
    """A number that goes up and down (workers running, config version age)."""

    kind = "gauge"

    def inc(self, amount: float = 1.0, /, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def dec(self, amount: float = 1.0, /, **labels: str) -> None:
        self.inc(-amount, **labels)

    def set(self, value: float, /, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = float(value)


def _bound(value: float) -> str:
    """A bucket's ``le`` as Prometheus writes it: ``0.5``, ``1.0``, ``+Inf``."""
    return "+Inf" if math.isinf(value) else repr(float(value))


class Histogram(_Metric):
    """Observations counted into cumulative ``le`` buckets, with their sum and count (latency)."""

    kind = "histogram"

    def __init__(
        self, name: str, help: str, labels: Sequence[str] = (), buckets: Sequence[float] = DEFAULT_BUCKETS
    ) -> None:
        super().__init__(name, help, labels)
        bounds = sorted(float(b) for b in buckets if not math.isinf(b))
        if not bounds:
            raise MetricError(f"histogram {name} needs at least one finite bucket")
        self.buckets = tuple(bounds)
        self._values: dict[LabelKey, tuple[list[int], list[float]]] = {}

    def observe(self, value: float, /, **labels: str) -> None:
        key = self._key(labels)
        index = bisect.bisect_left(self.buckets, value)
        with self._lock:
            counts, total = self._entry(key)
            counts[index] += 1
            total[0] += value

    def _entry(self, key: LabelKey) -> tuple[list[int], list[float]]:
        state = self._values.get(key)
        if state is None:
            state = self._values[key] = ([0] * (len(self.buckets) + 1), [0.0])
        return state

    def count(self, **labels: str) -> int:
        with self._lock:
            state = self._values.get(self._key(labels))
            return sum(state[0]) if state else 0

    def state(self) -> HistogramState:
        """A copy of every label set's bucket counts and sum (what the engine process sends)."""
        with self._lock:
            return {key: (list(counts), total[0]) for key, (counts, total) in self._values.items()}

    def add_state(self, state: Mapping[LabelKey, tuple[Sequence[int], float]]) -> None:
        """Add observations made elsewhere, with the same buckets (the engine process's)."""
        with self._lock:
            for key, (counts, total) in state.items():
                if len(key) != len(self.labelnames) or len(counts) != len(self.buckets) + 1:
                    raise MetricError(f"histogram {self.name}: {list(key)} and {len(counts)} buckets do not fit it")
                mine, sum_ = self._entry(tuple(key))
                for n, added in enumerate(counts):
                    mine[n] += int(added)
                sum_[0] += float(total)

    def families(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.help, labels=self.labelnames)
        for key, (counts, total) in sorted(self.state().items()):
            running, buckets = 0, []
            for bound, n in zip((*self.buckets, math.inf), counts, strict=True):
                running += n
                buckets.append((_bound(bound), float(running)))
            family.add_metric(list(key), buckets, total)
        yield family


def gained(now: Mapping[str, HistogramState], before: Mapping[str, HistogramState]) -> dict[str, list[Any]]:
    """What histograms gained since ``before``, as JSON for the engine process's status pipe:
    ``{name: [[label values, bucket counts, sum], ...]}``, only label sets that changed."""
    out: dict[str, list[Any]] = {}
    for name, state in now.items():
        old = before.get(name, {})
        for key, (counts, total) in state.items():
            prior_counts, prior_total = old.get(key, ([0] * len(counts), 0.0))
            delta = [a - b for a, b in zip(counts, prior_counts, strict=True)]
            if any(delta):
                out.setdefault(name, []).append([list(key), delta, total - prior_total])
    return out


def add_gained(metrics: Metrics, doc: Mapping[str, Any]) -> None:
    """Add what :func:`gained` reported (by the engine process) to the histograms of ``metrics``."""
    histograms = metrics.histograms()
    for name, rows in doc.items():
        histogram = histograms.get(name)
        if histogram is None:
            continue  # the other process knows a histogram this one does not: a newer release mid-upgrade
        histogram.add_state({tuple(str(v) for v in key): (counts, float(total)) for key, counts, total in rows})


class _Callback(_Metric):
    """A value ``fn`` computes at scrape time; a failing ``fn`` is logged and skipped."""

    def __init__(self, name: str, help: str, fn: Callable[[], CallbackValue], labels: Sequence[str] = ()) -> None:
        super().__init__(name, help, labels)
        self.fn = fn

    def families(self) -> Iterator[Metric]:
        try:
            rows = self._rows(self.fn())
        except Exception as exc:  # one broken callback must not break the whole scrape
            if unavailable(exc):  # the database is down: the daemon's threads report that once
                log.debug("metric %s: the store is unavailable", self.name)
            else:
                log.exception("metric %s: the callback failed", self.name)
            return
        yield _family(self.kind, self.name, self.help, self.labelnames, rows)

    def _rows(self, result: CallbackValue) -> list[tuple[LabelKey, float]]:
        if not isinstance(result, Mapping):
            if self.labelnames:
                raise MetricError(f"metric {self.name} has labels, so its callback must return a mapping")
            return [((), float(result))]
        rows: list[tuple[LabelKey, float]] = []
        for raw, value in result.items():
            key = tuple(str(v) for v in raw) if isinstance(raw, tuple) else (str(raw),)
            if len(key) != len(self.labelnames):
                raise MetricError(f"metric {self.name}: {raw!r} does not give labels {list(self.labelnames)}")
            rows.append((key, float(value)))
        return sorted(rows)


class GaugeCallback(_Callback):
    kind = "gauge"


class CounterCallback(_Callback):
    """A count kept elsewhere (the worker's, the engine process's), read at scrape time."""

    kind = "counter"


M = TypeVar("M", bound=_Metric)


class Metrics:
    """The registry: get-or-create metrics by name, render them all for a scrape.

    ``processes`` names the other processes whose CPU, memory and descriptors to expose beside this
    one's, by a prefix and a function that gives the pid (or None while there is none): the daemon
    adds its engine process as ``flowctl_engine``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._metrics: dict[str, _Metric] = {}
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(self)
        ProcessCollector(registry=self._registry)
        PlatformCollector(registry=self._registry)

    def _get_or_add(self, cls: type[M], name: str, labels: Sequence[str], make: Callable[[], M]) -> M:
        with self._lock:
            found = self._metrics.get(name)
            if found is None:
                metric = make()
                self._metrics[name] = metric
                return metric
        if type(found) is not cls or found.labelnames != tuple(labels):
            raise MetricError(
                f"metric {name} is already registered as a {found.kind} with labels {list(found.labelnames)}"
            )
        return found

    def counter(self, name: str, help: str, labels: Sequence[str] = ()) -> Counter:
        return self._get_or_add(Counter, name, labels, lambda: Counter(name, help, labels))

    def gauge(self, name: str, help: str, labels: Sequence[str] = ()) -> Gauge:
        return self._get_or_add(Gauge, name, labels, lambda: Gauge(name, help, labels))

    def histogram(
        self, name: str, help: str, labels: Sequence[str] = (), buckets: Sequence[float] = DEFAULT_BUCKETS
    ) -> Histogram:
        return self._get_or_add(Histogram, name, labels, lambda: Histogram(name, help, labels, buckets))

    def gauge_callback(self, name: str, help: str, fn: Callable[[], CallbackValue], labels: Sequence[str] = ()) -> None:
        """Expose ``fn()`` at every scrape; registering the name again replaces the callback
        (so a reloaded service can re-register without a restart)."""
        self._callback(GaugeCallback(name, help, fn, labels))

    def counter_callback(
        self, name: str, help: str, fn: Callable[[], CallbackValue], labels: Sequence[str] = ()
    ) -> None:
        """Like :meth:`gauge_callback` for a count that only goes up (its name ends in ``_total``)."""
        self._callback(CounterCallback(name, help, fn, labels))

    def _callback(self, metric: _Callback) -> None:
        with self._lock:
            found = self._metrics.get(metric.name)
            if found is not None and type(found) is not type(metric):
                raise MetricError(f"metric {metric.name} is already registered as a {found.kind}")
            self._metrics[metric.name] = metric

    def histograms(self) -> dict[str, Histogram]:
        """The histograms by name (the engine process reports what they gained)."""
        with self._lock:
            return {name: m for name, m in self._metrics.items() if isinstance(m, Histogram)}

    def add_process(self, prefix: str, pid: Callable[[], int | None]) -> None:
        """Expose another process's CPU, memory and descriptors as ``<prefix>_process_…``."""
        ProcessCollector(namespace=prefix, pid=lambda: pid() or "none", registry=self._registry)

    def collect(self) -> Iterator[Metric]:
        """``prometheus_client``'s collector protocol: every metric of this registry."""
        with self._lock:
            metrics = sorted(self._metrics.values(), key=lambda metric: metric.name)
        for metric in metrics:
            yield from metric.families()

    def render(self) -> str:
        """Every metric in the Prometheus text format 0.0.4 (callbacks run here; may block)."""
        return generate_latest(self._registry).decode("utf-8")


class QueueCounts(Protocol):
    """The part of the store the queue gauges read."""

    def queue_counts(self) -> Mapping[str, Any]: ...


def register_queue_metrics(metrics: Metrics, store: QueueCounts, clock: Clock, *, ttl: float = 1.0) -> None:
    """What operators graph about the shared queues, read from the store at scrape time.

    One ``store.queue_counts()`` per scrape (kept ``ttl`` seconds for the other gauges), each of its
    counts an indexed count by status, never a scan of done changes or sent rows: open changes by
    status, the lag (age of the oldest open change), outbox rows by state, pending timers.
    Also registers ``flowctl_reloads_total{result}``, which the reload code increments.
    """
    import time

    cache: dict[str, Any] = {}
    lock = threading.Lock()

    def counts() -> Mapping[str, Any]:
        with lock:
            if not cache or time.monotonic() - float(cache["at"]) > ttl:
                cache.clear()
                cache.update(store.queue_counts(), at=time.monotonic())
            return dict(cache)

    def lag() -> float:
        oldest = counts()["oldest_received_at"]
        return max((clock.now() - oldest).total_seconds(), 0.0) if oldest is not None else 0.0

    def by_prefix(prefix: str) -> dict[str, float]:
        return {k[len(prefix) :]: float(v) for k, v in counts().items() if k.startswith(prefix)}

    metrics.counter("flowctl_changes_accepted_total", "Record changes and events stored for processing.", ("source",))
    metrics.counter("flowctl_reloads_total", "Configuration reloads by result", ("result",))
    metrics.gauge_callback(
        "flowctl_changes_open",
        "Changes waiting (pending) or in a worker's hands (claimed)",
        lambda: by_prefix("changes_"),
        ("status",),
    )
    metrics.gauge_callback("flowctl_changes_lag_seconds", "Age of the oldest change not yet processed (0: none)", lag)

    def outbox_lag() -> float:
        due = counts().get("oldest_due_at")
        return max((clock.now() - due).total_seconds(), 0.0) if due is not None else 0.0

    metrics.gauge_callback(
        "flowctl_outbox_lag_seconds",
        "How long the most overdue outbox row (pending or retry) has been due (0: none is due)",
        outbox_lag,
    )
    metrics.gauge_callback(
        "flowctl_outbox_rows",
        "Outbox rows by state (sent rows are counted by flowctl_deliveries_total)",
        lambda: by_prefix("outbox_"),
        ("status",),
    )
    metrics.gauge_callback(
        "flowctl_timers_pending",
        "Timers (delays, waits, delayed rules) not yet fired",
        lambda: float(counts()["timers"]),
    )


def delivery_metrics(metrics: Metrics) -> tuple[Counter, Histogram, Histogram]:
    """The deliverer's: outcomes by channel and result, the time from queued to accepted (retries
    and holds included), and the time one send call took, by channel."""
    return (
        metrics.counter(
            "flowctl_deliveries_total",
            "Outbox rows handled by channel and result: sent, retry, dead or held.",
            ("channel", "result"),
        ),
        metrics.histogram(
            "flowctl_delivery_seconds",
            "From a message being queued in the outbox to its channel accepting it, by channel "
            "(retries and holds included)",
            ("channel",),
            buckets=SLOW_BUCKETS,
        ),
        metrics.histogram(
            "flowctl_send_seconds", "How long a channel took to answer one send, by channel", ("channel",)
        ),
    )
