"""Prometheus metrics without a dependency: counters, gauges, histograms and scrape-time callbacks.

One :class:`Metrics` registry per process. Registering is get-or-create, so the HTTP app and the
service may both ask for ``flowctl_changes_accepted_total`` and share it. Updates take a lock (a
few hundred nanoseconds), so any thread may count. :meth:`Metrics.render` writes the text
exposition format 0.0.4 that Prometheus scrapes.

Labels are passed by name: ``requests.inc(route="PUT /v1/records/{object}/{id}", status="202")``.
Values that are cheaper to read than to keep up to date (queue depth, outbox rows by status) are
callbacks evaluated at scrape time: ``metrics.gauge_callback("flowctl_outbox", "…", fn, ("status",))``
where ``fn`` returns ``{"pending": 3, "dead": 1}`` (or a plain number when there are no labels).
"""

from __future__ import annotations

import bisect
import logging
import math
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from flowctl.ports import Clock
from flowctl.runtime.daemon.ingest import unavailable

log = logging.getLogger("flowctl.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Latency buckets in seconds: an accepted write is one group commit, so most land below 50 ms.
DEFAULT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

LabelKey = tuple[str, ...]
CallbackValue = float | int | Mapping[str, float | int] | Mapping[tuple[str, ...], float | int]


class MetricError(ValueError):
    """A metric was registered or used inconsistently (bad name, other kind, other labels)."""


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _labels_text(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape_label(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class _Metric:
    kind = ""

    def __init__(self, name: str, help: str, labels: Sequence[str]) -> None:
        if not _NAME.match(name):
            raise MetricError(f"'{name}' is not a valid metric name")
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

    def header(self) -> str:
        return f"# HELP {self.name} {_escape_help(self.help)}\n# TYPE {self.name} {self.kind}\n"

    def lines(self) -> Iterator[str]:
        raise NotImplementedError


class Counter(_Metric):
    """A number that only goes up (requests served, changes accepted)."""

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

    def lines(self) -> Iterator[str]:
        with self._lock:
            items = sorted(self._values.items())
        for key, value in items:
            yield f"{self.name}{_labels_text(self.labelnames, key)} {_number(value)}\n"


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
        # per label key: [count per bucket ..., count above the last bucket], sum
        self._values: dict[LabelKey, tuple[list[int], list[float]]] = {}

    def observe(self, value: float, /, **labels: str) -> None:
        key = self._key(labels)
        index = bisect.bisect_left(self.buckets, value)
        with self._lock:
            state = self._values.get(key)
            if state is None:
                state = self._values[key] = ([0] * (len(self.buckets) + 1), [0.0])
            state[0][index] += 1
            state[1][0] += value

    def count(self, **labels: str) -> int:
        with self._lock:
            state = self._values.get(self._key(labels))
            return sum(state[0]) if state else 0

    def lines(self) -> Iterator[str]:
        with self._lock:
            items = sorted((key, (list(counts), total[0])) for key, (counts, total) in self._values.items())
        for key, (counts, total) in items:
            running = 0
            for bound, n in zip((*self.buckets, math.inf), counts, strict=True):
                running += n
                labels = _labels_text(self.labelnames, key, f'le="{_number(bound)}"')
                yield f"{self.name}_bucket{labels} {running}\n"
            plain = _labels_text(self.labelnames, key)
            yield f"{self.name}_sum{plain} {_number(total)}\n"
            yield f"{self.name}_count{plain} {running}\n"


class GaugeCallback(_Metric):
    """A gauge whose value ``fn`` computes at scrape time; a failing ``fn`` is logged and skipped."""

    kind = "gauge"

    def __init__(self, name: str, help: str, fn: Callable[[], CallbackValue], labels: Sequence[str] = ()) -> None:
        super().__init__(name, help, labels)
        self.fn = fn

    def lines(self) -> Iterator[str]:
        try:
            result = self.fn()
            rows = self._rows(result)
        except Exception as exc:  # one broken callback must not break the whole scrape
            if unavailable(exc):  # the database is down: the daemon's threads report that once
                log.debug("metric %s: the store is unavailable", self.name)
            else:
                log.exception("metric %s: the callback failed", self.name)
            return
        for key, value in rows:
            yield f"{self.name}{_labels_text(self.labelnames, key)} {_number(float(value))}\n"

    def _rows(self, result: CallbackValue) -> list[tuple[LabelKey, float | int]]:
        if not isinstance(result, Mapping):
            if self.labelnames:
                raise MetricError(f"metric {self.name} has labels, so its callback must return a mapping")
            return [((), result)]
        rows: list[tuple[LabelKey, float | int]] = []
        for raw, value in result.items():
            key = tuple(str(v) for v in raw) if isinstance(raw, tuple) else (str(raw),)
            if len(key) != len(self.labelnames):
                raise MetricError(f"metric {self.name}: {raw!r} does not give labels {list(self.labelnames)}")
            rows.append((key, value))
        return sorted(rows)


M = TypeVar("M", bound=_Metric)


class Metrics:
    """The registry: get-or-create metrics by name, render them all for a scrape."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._metrics: dict[str, _Metric] = {}

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
        metric = GaugeCallback(name, help, fn, labels)
        with self._lock:
            found = self._metrics.get(name)
            if found is not None and not isinstance(found, GaugeCallback):
                raise MetricError(f"metric {name} is already registered as a {found.kind}")
            self._metrics[name] = metric

    def render(self) -> str:
        """Every metric in the Prometheus text format 0.0.4 (callbacks run here; may block)."""
        with self._lock:
            metrics = sorted(self._metrics.values(), key=lambda metric: metric.name)
        return "".join(metric.header() + "".join(metric.lines()) for metric in metrics)


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
