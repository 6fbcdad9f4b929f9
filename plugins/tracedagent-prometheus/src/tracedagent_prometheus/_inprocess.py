"""The tracer's counters, gauges and histograms in one process: plain numbers, exposed at scrape time.

prometheus-client's ``Counter.inc`` and ``Histogram.observe`` take a lock per value and walk the buckets in
Python: a few microseconds per event, paid on the run loop's thread. Here a label child is a small object
whose value (or bucket counts and sum) is a Python number, updated under one lock per registry, and the
bucket is found with :func:`bisect.bisect_left`. :class:`InProcessMetrics` is a collector: when Prometheus
scrapes it yields the very families prometheus-client's objects would (names, help, types, label names
and order, ``le`` values, ``_created`` samples unless disabled, samples in the order the children were
made), so the exposition does not change. Multiprocess mode keeps prometheus-client's objects (their
files are how the workers' values are merged).
"""

from __future__ import annotations

import math
import threading
import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client import metrics as client_metrics
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from . import _names as N

__all__ = ["InProcessMetrics"]

_COUNTER_NEGATIVE = "Counters can only be incremented by non-negative amounts."


def _use_created() -> bool:
    # prometheus-client's switch (PROMETHEUS_DISABLE_CREATED_SERIES, disable_created_metrics()).
    return bool(getattr(client_metrics, "_use_created", True))


class _CounterChild:
    __slots__ = ("created", "labels", "lock", "value")

    def __init__(self, labels: dict[str, str], lock: threading.Lock) -> None:
        self.labels = labels
        self.lock = lock
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError(_COUNTER_NEGATIVE)
        with self.lock:
            self.value += amount


class _GaugeChild:
    __slots__ = ("labels", "lock", "value")

    def __init__(self, labels: dict[str, str], lock: threading.Lock) -> None:
        self.labels = labels
        self.lock = lock
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        with self.lock:
            self.value += amount

    def dec(self, amount: float = 1) -> None:
        with self.lock:
            self.value -= amount


class _HistogramChild:
    __slots__ = ("bounds", "counts", "created", "labels", "lock", "sum")

    def __init__(self, labels: dict[str, str], lock: threading.Lock, bounds: tuple[float, ...]) -> None:
        self.labels = labels
        self.lock = lock
        self.bounds = bounds  # ends with +Inf
        self.counts = [0.0] * len(bounds)  # per bucket, not cumulative
        self.sum = 0.0
        self.created = time.time()

    def observe(self, amount: float) -> None:
        # The first bucket whose bound is >= amount, as prometheus-client's loop finds it; NaN is in none.
        index = bisect_left(self.bounds, amount)
        with self.lock:
            self.sum += amount
            if amount == amount:
                self.counts[index] += 1


class _Family:
    """One metric: its label children, made on first use (``labels()``), in the order they were made."""

    def __init__(
        self,
        name: str,
        doc: str,
        kind: str,
        labelnames: tuple[str, ...],
        buckets: tuple[float, ...],
        lock: threading.Lock,
    ) -> None:
        # prometheus-client keeps a counter's name without _total and adds it to its samples.
        self.name = name.removesuffix("_total") if kind == "counter" else name
        self.doc = doc
        self.kind = kind
        self.labelnames = labelnames
        bounds = [float(b) for b in buckets]
        if bounds and bounds[-1] != math.inf:
            bounds.append(math.inf)
        self.bounds = tuple(bounds)
        # The ``le`` label of each bucket, as prometheus-client writes it ("0.01", "+Inf").
        self.le: tuple[str, ...] = tuple(floatToGoString(b) for b in bounds)  # type: ignore[no-untyped-call]
        self.lock = lock
        self.children: dict[tuple[Any, ...], Any] = {}

    def labels(self, *values: Any) -> Any:
        child = self.children.get(values)
        if child is None:
            if len(values) != len(self.labelnames):
                raise ValueError("Incorrect label count")
            labels = dict(zip(self.labelnames, (str(v) for v in values), strict=True))
            with self.lock:
                child = self.children.get(values)
                if child is None:
                    if self.kind == "counter":
                        child = _CounterChild(labels, self.lock)
                    elif self.kind == "gauge":
                        child = _GaugeChild(labels, self.lock)
                    else:
                        child = _HistogramChild(labels, self.lock, self.bounds)
                    self.children[values] = child
        return child

    def describe(self) -> Metric:
        return Metric(self.name, self.doc, self.kind)

    def collect(self, created: bool) -> Metric:
        metric = Metric(self.name, self.doc, self.kind)
        name = self.name
        with self.lock:
            children = list(self.children.values())
            if self.kind == "histogram":
                values: list[Any] = [(c.counts.copy(), c.sum) for c in children]
            else:
                values = [c.value for c in children]
        for child, value in zip(children, values, strict=True):
            labels = child.labels
            if self.kind == "counter":
                metric.add_sample(name + "_total", labels, value)
                if created:
                    metric.add_sample(name + "_created", labels, child.created)
            elif self.kind == "gauge":
                metric.add_sample(name, labels, value)
            else:
                counts, total = value
                acc = 0.0
                for le, count in zip(self.le, counts, strict=True):
                    acc += count
                    metric.add_sample(name + "_bucket", {**labels, "le": le}, acc)
                metric.add_sample(name + "_count", labels, acc)
                if self.bounds[0] >= 0:
                    metric.add_sample(name + "_sum", labels, total)
                if created:
                    metric.add_sample(name + "_created", labels, child.created)
        return metric


class InProcessMetrics(Collector):
    """The tracer's metrics of one registry in this process (shared by every tracer on that registry);
    the same attributes as the multiprocess store, each with ``labels(*values)``."""

    runs_total: _Family
    run_duration: _Family
    runs_active: _Family
    model_calls_total: _Family
    model_call_duration: _Family
    model_ttft: _Family
    tokens_total: _Family
    cost_usd_total: _Family
    tool_calls_total: _Family
    tool_call_duration: _Family
    tool_rejections_total: _Family
    retries_total: _Family
    interrupts_total: _Family
    resumes_total: _Family
    handoffs_total: _Family
    compactions_total: _Family
    compaction_tokens_removed_total: _Family
    output_validation_failures_total: _Family

    def __init__(self, registry: CollectorRegistry) -> None:
        self._lock = threading.Lock()
        self._families: list[_Family] = []
        for attribute, name, doc, kind, labels, buckets in N.UPDATED:
            family = _Family(name, doc, kind, labels, buckets, self._lock)
            setattr(self, attribute, family)
            self._families.append(family)
        registry.register(self)  # describe() names every series: a clash fails here, as it did per metric

    def describe(self) -> Iterable[Metric]:
        return [family.describe() for family in self._families]

    def collect(self) -> Iterator[Metric]:
        created = _use_created()
        for family in self._families:
            yield family.collect(created)
