"""``PrometheusTracer``: the design's metrics, updated in the hooks (O(1), no I/O).

Counters and histograms are updated as events arrive, through label children cached per label values
(``labels()`` is looked up once per combination). Live values (tools in flight and queued, breaker
states, plugin errors, export queues) are read when Prometheus scrapes, by a collector. Label values are
names chosen by developers (agent, tool, model, provider), never user content, and a cardinality guard
folds values past ``max_label_values`` per label into ``other``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

import tracedagent
from tracedagent import (
    ContextCompacted,
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


class _Metrics:
    """The metric objects of one registry (shared by every tracer using that registry)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        multiprocess = "PROMETHEUS_MULTIPROC_DIR" in os.environ or "prometheus_multiproc_dir" in os.environ

        def gauge(name: str, doc: str, labels: tuple[str, ...]) -> Gauge:
            if multiprocess:
                return Gauge(name, doc, labels, registry=registry, multiprocess_mode="livesum")
            return Gauge(name, doc, labels, registry=registry)

        self.runs_total = Counter(
            N.RUNS_TOTAL, "Run segments ended, by status.", ("agent", "status"), registry=registry
        )
        self.run_duration = Histogram(
            N.RUN_DURATION, "Duration of run segments.", ("agent",), buckets=N.RUN_BUCKETS, registry=registry
        )
        self.runs_active = gauge(N.RUNS_ACTIVE, "Runs going on now.", ("agent",))
        self.model_calls_total = Counter(
            N.MODEL_CALLS_TOTAL, "Model calls, by status.", ("agent", "provider", "model", "status"), registry=registry
        )
        self.model_call_duration = Histogram(
            N.MODEL_CALL_DURATION,
            "Duration of model calls (GenAI operation duration buckets).",
            ("agent", "provider", "model"),
            buckets=N.GENAI_DURATION_BUCKETS,
            registry=registry,
        )
        self.model_ttft = Histogram(
            N.MODEL_TTFT,
            "Time from sending a model request to its first streamed part.",
            ("agent", "provider", "model"),
            buckets=N.TTFT_BUCKETS,
            registry=registry,
        )
        self.tokens_total = Counter(
            N.TOKENS_TOTAL,
            "Tokens used, by type (input, output, cache_read, reasoning).",
            ("agent", "provider", "model", "type"),
            registry=registry,
        )
        self.tool_calls_total = Counter(
            N.TOOL_CALLS_TOTAL, "Tool calls, by status.", ("agent", "tool", "status"), registry=registry
        )
        self.tool_call_duration = Histogram(
            N.TOOL_CALL_DURATION,
            "Duration of tool calls.",
            ("agent", "tool"),
            buckets=N.TOOL_BUCKETS,
            registry=registry,
        )
        self.tool_rejections_total = Counter(
            N.TOOL_REJECTIONS_TOTAL,
            "Tool calls refused by a resilience layer, by reason.",
            ("tool", "reason"),
            registry=registry,
        )
        self.retries_total = Counter(
            N.RETRIES_TOTAL,
            "Retries scheduled, by target and kind (model, tool).",
            ("target", "kind"),
            registry=registry,
        )
        self.interrupts_total = Counter(N.INTERRUPTS_TOTAL, "Runs paused for a person.", ("agent",), registry=registry)
        self.resumes_total = Counter(N.RESUMES_TOTAL, "Paused runs resumed.", ("agent",), registry=registry)
        self.compactions_total = Counter(
            N.COMPACTIONS_TOTAL, "Context compactions, by strategy.", ("agent", "strategy"), registry=registry
        )
        self.compaction_tokens_removed_total = Counter(
            N.COMPACTION_TOKENS_REMOVED_TOTAL, "Tokens removed by compaction.", ("agent",), registry=registry
        )


_metrics_lock = threading.Lock()
_metrics_by_registry: dict[int, tuple[CollectorRegistry, _Metrics]] = {}


def _metrics_for(registry: CollectorRegistry) -> _Metrics:
    with _metrics_lock:
        entry = _metrics_by_registry.get(id(registry))
        if entry is None or entry[0] is not registry:
            entry = (registry, _Metrics(registry))
            _metrics_by_registry[id(registry)] = entry
            registry.register(LiveCollector())
        return entry[1]


class LiveCollector(Collector):
    """Values read at scrape time: tools in flight and queued, breaker states, plugin errors, export queues."""

    def collect(self) -> Iterator[Any]:
        inflight = GaugeMetricFamily(N.TOOL_INFLIGHT, "Tool calls running now (this process).", labels=("tool",))
        queued = GaugeMetricFamily(
            N.TOOL_QUEUE_DEPTH, "Tool calls waiting for a slot (this process).", labels=("tool",)
        )
        circuit = GaugeMetricFamily(
            N.CIRCUIT_STATE, "Circuit breaker state: 0 closed, 1 half-open, 2 open.", labels=("tool",)
        )
        by_tool: dict[str, list[int]] = {}
        for state in tool_states():
            values = by_tool.setdefault(state.tool, [0, 0, -1])
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
            "Items a sink dropped because its queue was full.",
            labels=("sink",),
        )
        per_sink: dict[str, list[int]] = {}
        for stats in tracedagent.export_stats():
            values = per_sink.setdefault(stats.sink, [0, 0])
            values[0] += stats.queue_depth
            values[1] += stats.dropped
        for sink, (waiting, lost) in sorted(per_sink.items()):
            depth.add_metric((sink,), waiting)
            dropped.add_metric((sink,), lost)
        yield depth
        yield dropped


class PrometheusTracer:
    """Keeps tracedagent's metrics in ``registry`` (the default one unless given)."""

    name = "prometheus-tracer"

    def __init__(self, registry: CollectorRegistry | None = None, *, max_label_values: int = 200) -> None:
        if isinstance(max_label_values, bool) or not isinstance(max_label_values, int) or max_label_values < 1:
            raise tracedagent.ConfigurationError(
                f"max_label_values must be a whole number >= 1, not {max_label_values!r}"
            )
        self.registry = registry if registry is not None else REGISTRY
        self.metrics = _metrics_for(self.registry)
        self.agent = LabelGuard(max_label_values)
        self.tool = LabelGuard(max_label_values)
        self.model = LabelGuard(max_label_values)
        self.provider = LabelGuard(max_label_values)
        self.reason = LabelGuard(max_label_values)
        self.strategy = LabelGuard(max_label_values)
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    # -------------------------------------------------------------------------------------- hooks

    @hookimpl
    def on_run_start(self, event: RunStarted) -> None:
        self._child(self.metrics.runs_active, self.agent(event.agent)).inc()

    @hookimpl
    def on_resume(self, event: RunResumed) -> None:
        agent = self.agent(event.agent)
        self._child(self.metrics.runs_active, agent).inc()
        self._child(self.metrics.resumes_total, agent).inc()

    @hookimpl
    def on_run_end(self, event: RunEnded) -> None:
        m, agent = self.metrics, self.agent(event.agent)
        self._child(m.runs_active, agent).dec()
        self._child(m.runs_total, agent, event.status).inc()
        self._child(m.run_duration, agent).observe(event.duration_s)

    @hookimpl
    def on_model_call_end(self, event: ModelCallEnded) -> None:
        m = self.metrics
        labels = (self.agent(event.agent), self.provider(event.provider), self.model(event.model))
        self._child(m.model_calls_total, *labels, event.status).inc()
        self._child(m.model_call_duration, *labels).observe(event.duration_s)
        if event.time_to_first_token_s is not None:
            self._child(m.model_ttft, *labels).observe(event.time_to_first_token_s)
        usage = event.usage
        for kind, count in (
            ("input", usage.input_tokens),
            ("output", usage.output_tokens),
            ("cache_read", usage.cache_read_tokens),
            ("reasoning", usage.reasoning_tokens),
        ):
            if count:
                self._child(m.tokens_total, *labels, kind).inc(count)

    @hookimpl
    def on_tool_call_end(self, event: ToolCallEnded) -> None:
        m = self.metrics
        agent, tool = self.agent(event.agent), self.tool(event.tool)
        self._child(m.tool_calls_total, agent, tool, event.status).inc()
        self._child(m.tool_call_duration, agent, tool).observe(event.duration_s)
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
    def on_compaction(self, event: ContextCompacted) -> None:
        m, agent = self.metrics, self.agent(event.agent)
        self._child(m.compactions_total, agent, self.strategy(event.strategy)).inc()
        removed = event.tokens_before - event.tokens_after
        if removed > 0:
            self._child(m.compaction_tokens_removed_total, agent).inc(removed)
