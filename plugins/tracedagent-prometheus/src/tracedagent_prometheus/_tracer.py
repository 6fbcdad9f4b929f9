"""``PrometheusTracer``: the design's metrics, updated in the hooks (O(1), no I/O).

Counters and histograms are updated as events arrive, through label children cached per label values
(``labels()`` is looked up once per combination). In a single process the children are plain Python
numbers and bucket counts (:mod:`._inprocess`), turned into metric families only when Prometheus
scrapes; prometheus-client's metric objects, which take a lock per value and walk the buckets in Python,
are used in multiprocess mode only, where their files are needed. Live values (tools in flight and
queued, breaker states, plugin errors, export queues) are read when Prometheus scrapes, by a collector.
Label values are names chosen by developers (agent, tool, model, provider), never user content, and a
cardinality guard folds values past ``max_label_values`` per label into ``other``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import values as client_values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

import tracedagent
from tracedagent import (
    ContextCompacted,
    HandoffOccurred,
    ModelCallEnded,
    RetryScheduled,
    RunEnded,
    RunInterrupted,
    RunResumed,
    RunStarted,
    ToolCallEnded,
    hookimpl,
)
from tracedagent.resilience import tool_states

from . import _names as N
from ._inprocess import InProcessMetrics

__all__ = ["LabelGuard", "LiveCollector", "PrometheusTracer"]

OTHER = "other"


class LabelGuard:
    """Keeps a label's distinct values under ``limit``: later new values become ``other``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self.folded = 0

    def __call__(self, value: str | None) -> str:
        value = value or "unknown"
        if value in self._seen:
            return value
        with self._lock:
            if value in self._seen:
                return value
            if len(self._seen) >= self.limit:
                self.folded += 1
                return OTHER
            self._seen.add(value)
            return value


def _multiprocess() -> bool:
    """Whether prometheus-client's multiprocess mode is on (its directory must then exist): the variable is
    set, or prometheus-client chose its file-backed values when it was imported."""
    named = [name for name in ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir") if name in os.environ]
    multiprocess = bool(named)
    directory = os.environ[named[0]] if named else ""
    if multiprocess and not (directory and os.path.isdir(directory)):
        # prometheus-client would fail in every hook, deep in its mmap files: say it once, here.
        raise tracedagent.ConfigurationError(
            f"PROMETHEUS_MULTIPROC_DIR={directory!r} is not a directory; create it (empty) before the workers "
            "start, or unset it outside multiprocess servers"
        )
    return multiprocess or client_values.ValueClass is not client_values.MutexValue


class _Metrics:
    """The prometheus-client metric objects of one registry, in multiprocess mode (shared by every tracer
    using that registry). :class:`~._inprocess.InProcessMetrics` has the same attributes, names, labels
    and buckets."""

    runs_total: Counter
    run_duration: Histogram
    runs_active: Gauge
    model_calls_total: Counter
    model_call_duration: Histogram
    model_ttft: Histogram
    tokens_total: Counter
    cost_usd_total: Counter
    tool_calls_total: Counter
    tool_call_duration: Histogram
    tool_rejections_total: Counter
    retries_total: Counter
    interrupts_total: Counter
    resumes_total: Counter
    handoffs_total: Counter
    compactions_total: Counter
    compaction_tokens_removed_total: Counter
    output_validation_failures_total: Counter

    def __init__(self, registry: CollectorRegistry) -> None:
        for attribute, name, doc, kind, labels, buckets in N.UPDATED:
            metric: Counter | Gauge | Histogram
            if kind == "counter":
                metric = Counter(name, doc, labels, registry=registry)
            elif kind == "histogram":
                metric = Histogram(name, doc, labels, buckets=buckets, registry=registry)
            else:
                metric = Gauge(name, doc, labels, registry=registry, multiprocess_mode="livesum")
            setattr(self, attribute, metric)


_metrics_lock = threading.Lock()
_metrics_by_registry: dict[int, tuple[CollectorRegistry, _Metrics | InProcessMetrics]] = {}


def _metrics_for(registry: CollectorRegistry, max_label_values: int = 200) -> _Metrics | InProcessMetrics:
    with _metrics_lock:
        entry = _metrics_by_registry.get(id(registry))
        if entry is None or entry[0] is not registry:
            metrics = _Metrics(registry) if _multiprocess() else InProcessMetrics(registry)
            entry = (registry, metrics)
            _metrics_by_registry[id(registry)] = entry
            registry.register(LiveCollector(max_label_values))
        return entry[1]


class LiveCollector(Collector):
    """Values read at scrape time: tools in flight and queued, breaker states, plugin errors, export queues.

    Tools past ``max_label_values`` distinct names are summed under ``other``, as the tracer's labels are."""

    def __init__(self, max_label_values: int = 200) -> None:
        self.tool = LabelGuard(max_label_values)

    def collect(self) -> Iterator[Any]:
        inflight = GaugeMetricFamily(N.TOOL_INFLIGHT, "Tool calls running now (this process).", labels=("tool",))
        queued = GaugeMetricFamily(
            N.TOOL_QUEUE_DEPTH, "Tool calls waiting for a slot (this process).", labels=("tool",)
        )
        circuit = GaugeMetricFamily(
            N.CIRCUIT_STATE, "Circuit breaker state: 0 closed, 1 half-open, 2 open.", labels=("tool",)
        )
        by_tool: dict[str, list[int]] = {}
        for state in sorted(tool_states(), key=lambda s: s.tool):
            values = by_tool.setdefault(self.tool(state.tool), [0, 0, -1])
            values[0] += state.inflight
            values[1] += state.queue_depth
            if state.circuit_state is not None:
                values[2] = max(values[2], N.CIRCUIT_VALUE.get(state.circuit_state, 0))
        for tool, (running, waiting, breaker) in sorted(by_tool.items()):
            inflight.add_metric((tool,), running)
            queued.add_metric((tool,), waiting)
            if breaker >= 0:
                circuit.add_metric((tool,), breaker)
        yield inflight
        yield queued
        yield circuit
        errors = CounterMetricFamily(
            N.PLUGIN_ERRORS_TOTAL.removesuffix("_total"),
            "Plugin hook implementations that raised (or returned a coroutine).",
            labels=("plugin", "hook"),
        )
        for (plugin, hook), count in sorted(tracedagent.plugin_errors().items()):
            errors.add_metric((plugin, hook), count)
        yield errors
        depth = GaugeMetricFamily(N.EXPORT_QUEUE_DEPTH, "Items waiting in a sink's export queue.", labels=("sink",))
        dropped = CounterMetricFamily(
            N.EXPORT_DROPPED_TOTAL.removesuffix("_total"),
            "Items a sink dropped: events of traces it shed, or past its queue's bound.",
            labels=("sink",),
        )
        shed = CounterMetricFamily(
            N.TRACES_SHED_TOTAL.removesuffix("_total"),
            "Whole traces a sink did not take, decided when their run started or resumed (it was at capacity).",
            labels=("sink",),
        )
        per_sink: dict[str, list[int]] = {}
        for stats in tracedagent.export_stats():
            values = per_sink.setdefault(stats.sink, [0, 0, 0])
            values[0] += stats.queue_depth
            values[1] += stats.dropped
            values[2] += stats.traces_shed
        for sink, (waiting, lost, traces_shed) in sorted(per_sink.items()):
            depth.add_metric((sink,), waiting)
            dropped.add_metric((sink,), lost)
            shed.add_metric((sink,), traces_shed)
        yield depth
        yield dropped
        yield shed


class PrometheusTracer:
    """Keeps tracedagent's metrics in ``registry`` (the default one unless given)."""

    name = "prometheus-tracer"

    def __init__(self, registry: CollectorRegistry | None = None, *, max_label_values: int = 200) -> None:
        if isinstance(max_label_values, bool) or not isinstance(max_label_values, int) or max_label_values < 1:
            raise tracedagent.ConfigurationError(
                f"max_label_values must be a whole number >= 1, not {max_label_values!r}"
            )
        self.registry = registry if registry is not None else REGISTRY
        self.metrics = _metrics_for(self.registry, max_label_values)
        self.agent = LabelGuard(max_label_values)
        self.tool = LabelGuard(max_label_values)
        self.model = LabelGuard(max_label_values)
        self.provider = LabelGuard(max_label_values)
        self.reason = LabelGuard(max_label_values)
        self.strategy = LabelGuard(max_label_values)
        self._children: dict[tuple[Any, ...], Any] = {}
        # The children the frequent hooks use, per label set (one lookup instead of one per metric), and
        # per raw values as the events carry them (so the label guards are asked once per combination).
        self._run_series: dict[tuple[str, ...], list[Any]] = {}
        self._model_series: dict[tuple[str, ...], list[Any]] = {}
        self._tool_series: dict[tuple[str, ...], list[Any]] = {}
        self._by_raw: dict[tuple[Any, ...], tuple[tuple[str, ...], list[Any]]] = {}
        self._max_raw = 4 * max_label_values

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    # -------------------------------------------------------------------------------------- hooks

    def _series(self, cache: dict[tuple[str, ...], list[Any]], labels: tuple[str, ...], size: int) -> list[Any]:
        """The children of one label set for a hook, made on first use (slot by slot: a child appears in
        the exposition only once it is asked for, as before)."""
        series = cache.get(labels)
        if series is None:
            series = cache[labels] = [None] * size
        return series

    def _raw(self, kind: str, raw: tuple[Any, ...]) -> tuple[tuple[str, ...], list[Any]]:
        """The guarded labels and the series of one combination of raw values, cached. Past
        ``4 * max_label_values`` combinations (only reachable once values fold into ``other``) the
        answer is worked out each time instead of remembered, so memory stays bounded."""
        if kind == "run":
            labels: tuple[str, ...] = (self.agent(raw[1]),)
            series = self._series(self._run_series, labels, 3)
        elif kind == "model":
            labels = (self.agent(raw[1]), self.provider(raw[2]), self.model(raw[3]))
            series = self._series(self._model_series, labels, 8)
        else:
            labels = (self.agent(raw[1]), self.tool(raw[2]))
            series = self._series(self._tool_series, labels, 2)
        if len(self._by_raw) < self._max_raw:
            self._by_raw[raw] = (labels, series)
        return labels, series

    def _slot(self, series: list[Any], slot: int, metric: Any, *labels: str) -> Any:
        child = series[slot] = self._child(metric, *labels)
        return child

    @hookimpl
    def on_run_start(self, event: RunStarted) -> None:
        raw = ("run", event.agent)
        labels, s = self._by_raw.get(raw) or self._raw("run", raw)
        (s[0] or self._slot(s, 0, self.metrics.runs_active, *labels)).inc()

    @hookimpl
    def on_resume(self, event: RunResumed) -> None:
        agent = self.agent(event.agent)
        self._child(self.metrics.runs_active, agent).inc()
        self._child(self.metrics.resumes_total, agent).inc()

    @hookimpl
    def on_run_end(self, event: RunEnded) -> None:
        m = self.metrics
        raw = ("run", event.agent)
        labels, s = self._by_raw.get(raw) or self._raw("run", raw)
        (s[0] or self._slot(s, 0, m.runs_active, *labels)).dec()
        if event.status == "completed":
            (s[2] or self._slot(s, 2, m.runs_total, *labels, "completed")).inc()
        else:
            self._child(m.runs_total, *labels, event.status).inc()
        (s[1] or self._slot(s, 1, m.run_duration, *labels)).observe(event.duration_s)
        failures = event.output_validation_failures
        if failures:
            self._child(m.output_validation_failures_total, *labels).inc(failures)

    @hookimpl
    def on_model_call_end(self, event: ModelCallEnded) -> None:
        m = self.metrics
        raw = ("model", event.agent, event.provider, event.model)
        # slots: calls ok, duration, ttft, input, output, cache_read, reasoning tokens, cost
        labels, s = self._by_raw.get(raw) or self._raw("model", raw)
        if event.status == "ok":
            (s[0] or self._slot(s, 0, m.model_calls_total, *labels, "ok")).inc()
        else:
            self._child(m.model_calls_total, *labels, event.status).inc()
        (s[1] or self._slot(s, 1, m.model_call_duration, *labels)).observe(event.duration_s)
        if event.time_to_first_token_s is not None:
            (s[2] or self._slot(s, 2, m.model_ttft, *labels)).observe(event.time_to_first_token_s)
        usage = event.usage
        if usage.input_tokens:
            (s[3] or self._slot(s, 3, m.tokens_total, *labels, "input")).inc(usage.input_tokens)
        if usage.output_tokens:
            (s[4] or self._slot(s, 4, m.tokens_total, *labels, "output")).inc(usage.output_tokens)
        if usage.cache_read_tokens:
            (s[5] or self._slot(s, 5, m.tokens_total, *labels, "cache_read")).inc(usage.cache_read_tokens)
        if usage.reasoning_tokens:
            (s[6] or self._slot(s, 6, m.tokens_total, *labels, "reasoning")).inc(usage.reasoning_tokens)
        if usage.cost_usd:
            (s[7] or self._slot(s, 7, m.cost_usd_total, *labels)).inc(usage.cost_usd)

    @hookimpl
    def on_tool_call_end(self, event: ToolCallEnded) -> None:
        m = self.metrics
        raw = ("tool", event.agent, event.tool)
        # slots: calls ok, duration
        labels, s = self._by_raw.get(raw) or self._raw("tool", raw)
        if event.status == "ok":
            (s[0] or self._slot(s, 0, m.tool_calls_total, *labels, "ok")).inc()
            (s[1] or self._slot(s, 1, m.tool_call_duration, *labels)).observe(event.duration_s)
            return
        agent, tool = labels
        self._child(m.tool_calls_total, agent, tool, event.status).inc()
        (s[1] or self._slot(s, 1, m.tool_call_duration, agent, tool)).observe(event.duration_s)
        if event.status in ("rejected", "circuit_open"):
            reason = event.reason or ("circuit_open" if event.status == "circuit_open" else "rejected")
            self._child(m.tool_rejections_total, tool, self.reason(reason)).inc()

    @hookimpl
    def on_retry(self, event: RetryScheduled) -> None:
        target = self.tool(event.target) if event.kind == "tool" else self.model(event.target)
        self._child(self.metrics.retries_total, target, event.kind).inc()

    @hookimpl
    def on_interrupt(self, event: RunInterrupted) -> None:
        self._child(self.metrics.interrupts_total, self.agent(event.agent)).inc()

    @hookimpl
    def on_handoff(self, event: HandoffOccurred) -> None:
        self._child(self.metrics.handoffs_total, self.agent(event.from_agent), self.agent(event.to_agent)).inc()

    @hookimpl
    def on_compaction(self, event: ContextCompacted) -> None:
        m, agent = self.metrics, self.agent(event.agent)
        self._child(m.compactions_total, agent, self.strategy(event.strategy)).inc()
        removed = event.tokens_before - event.tokens_after
        if removed > 0:
            self._child(m.compaction_tokens_removed_total, agent).inc(removed)
