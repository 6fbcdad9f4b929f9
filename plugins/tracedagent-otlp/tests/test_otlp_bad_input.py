"""Issue 17's bad input, with the OTLP tracer on: a current span that is invalid, not sampled or broken,
and an application tracer provider that is not the OpenTelemetry SDK's. The run still works, in a new
trace where it cannot join, and nothing raises."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace as trace_api
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from otlp_support import one, parent_id, trace_id

from tracedagent import Agent, PluginContext, RunStarted
from tracedagent.testing import ScriptedModel, capture_events
from tracedagent_otlp import OtlpTracer, tracedagent_configure


class ForeignProvider(trace_api.TracerProvider):
    """A tracer provider of another SDK: its tracers make no-op spans."""

    def get_tracer(self, *args: Any, **kwargs: Any) -> trace_api.Tracer:
        return trace_api.NoOpTracer()


class BrokenSpan(NonRecordingSpan):
    """A current span of someone else's whose context cannot be read."""

    def get_span_context(self) -> SpanContext:
        raise RuntimeError("broken span")


def _refused() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1/traces"


def test_a_non_sdk_provider_set_globally_leaves_the_tracer_exporting_on_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trace_api.set_tracer_provider(ForeignProvider())
    status = tracedagent_configure(PluginContext(lambda plugin, name, why: None, "otlp"))
    assert status.startswith("inactive: the application's tracer provider is a ForeignProvider")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", _refused())
    tracer = OtlpTracer(metrics=False, interval_s=0.05)
    try:
        assert "ForeignProvider, not the SDK's" in tracer.destination
        app = trace_api.get_tracer_provider().get_tracer("the-app")
        with capture_events() as events, app.start_as_current_span("request"):  # a no-op span: nothing to join
            result = Agent("a", ScriptedModel(["ok"]), plugins=[tracer]).run_sync("hi")
        assert result.status == "completed"
        (started,) = events.of_type(RunStarted)
        assert started.parent_span_id is None
    finally:
        tracer.shutdown(5.0)


@pytest.mark.parametrize("kind", ["invalid", "unsampled", "sdk-unsampled", "broken"])
def test_a_current_span_that_cannot_be_joined_gives_an_exported_trace_of_its_own(kind: str) -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = OtlpTracer(tracer_provider=provider, metrics=False, interval_s=0.05)
    span: Any
    if kind == "sdk-unsampled":
        span = TracerProvider(sampler=ALWAYS_OFF).get_tracer("x").start_span("dropped")
    elif kind == "unsampled":
        span = NonRecordingSpan(SpanContext(0xABC, 0xDEF, False, TraceFlags(TraceFlags.DEFAULT)))
    elif kind == "broken":
        span = BrokenSpan(SpanContext(0xABC, 0xDEF, False, TraceFlags(TraceFlags.SAMPLED)))
    else:
        span = trace_api.INVALID_SPAN
    token = otel_context.attach(trace_api.set_span_in_context(span))
    try:
        result = Agent("a", ScriptedModel(["ok"]), plugins=[tracer]).run_sync("hi")
    finally:
        otel_context.detach(token)
    try:
        assert result.status == "completed"
        assert tracer.flush(5.0)
    finally:
        tracer.shutdown(5.0)
    agent = one(memory.get_finished_spans(), "invoke_agent a")
    assert parent_id(agent) is None
    assert trace_id(agent) == result.trace_id != f"{0xABC:032x}"


def test_an_application_sampler_that_drops_everything_still_runs_and_exports_nothing() -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_OFF, shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = OtlpTracer(tracer_provider=provider, metrics=False, interval_s=0.05)
    try:
        result = Agent("a", ScriptedModel(["ok"]), plugins=[tracer]).run_sync("hi")
        assert result.status == "completed"
        assert tracer.flush(5.0)
    finally:
        tracer.shutdown(5.0)
    assert memory.get_finished_spans() == ()
