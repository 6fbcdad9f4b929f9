"""The plugin changes nothing it does not own (the application's provider, its id generator, its
exporters, the SDK exporter module's ``encode_spans`` stay the same objects), and a run started inside
an application's span is that span's child whichever way the spans leave: the plugin's own exporter
(in memory and over OTLP/HTTP to a loopback receiver), the global provider, or ``tracer_provider=``.

Until the core puts the application's ids on the events, the runs here are events made by hand:
``RunStarted`` with the application span's trace id and its span id as ``parent_span_id``."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import trace_exporter as http_module
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from otlp_support import MakeTracer, attrs, one, parent_id, span_id, trace_id
from test_otlp_context import async_tool
from test_otlp_wire import _Collector

from tracedagent import Agent, ModelCallEnded, ModelCallStarted, RunEnded, RunStarted, ToolCallEnded, ToolCallStarted
from tracedagent.testing import ScriptedModel, Step
from tracedagent_otlp import OtlpTracer
from tracedagent_otlp import names as N

APP_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
APP_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def collector() -> Iterator[_Collector]:
    c = _Collector()
    yield c
    c.close()


def _events(trace: str = APP_TRACE, parent: str | None = APP_SPAN) -> list[Any]:
    """A run (as the core reports one started in the application's span) with a model call and a tool call."""
    now = time.time_ns()
    head = {"run_id": "run-1", "trace_id": trace, "agent": "a"}
    seg, chat, tool = "1111111111111111", "2222222222222222", "3333333333333333"
    return [
        RunStarted(**head, span_id=seg, parent_span_id=parent, timestamp_ns=now, model="m", provider="p"),
        ModelCallStarted(**head, span_id=chat, parent_span_id=seg, timestamp_ns=now + 1, model="m", provider="p"),
        ModelCallEnded(**head, span_id=chat, parent_span_id=seg, timestamp_ns=now + 2, model="m", provider="p"),
        ToolCallStarted(**head, span_id=tool, parent_span_id=seg, timestamp_ns=now + 3, tool="t", call_id="c"),
        ToolCallEnded(**head, span_id=tool, parent_span_id=seg, timestamp_ns=now + 4, tool="t", call_id="c"),
        RunEnded(**head, span_id=seg, parent_span_id=parent, timestamp_ns=now + 5),
    ]


def _send(tracer: OtlpTracer, events: list[Any]) -> None:
    for event in events:
        getattr(tracer, event.hook)(event)
    assert tracer.flush(10.0)


def _check_tree(spans: list[ReadableSpan] | tuple[ReadableSpan, ...]) -> None:
    """invoke_agent is the application span's child (remote parent, its trace); the calls are its children."""
    agent = one(spans, "invoke_agent a")
    assert trace_id(agent) == APP_TRACE
    assert parent_id(agent) == APP_SPAN
    assert agent.parent is not None
    assert agent.parent.is_remote
    for name in ("chat m", "execute_tool t"):
        child = one(spans, name)
        assert trace_id(child) == APP_TRACE
        assert parent_id(child) == span_id(agent)
        assert child.parent is not None
        assert not child.parent.is_remote


def test_own_exporter_a_run_in_an_application_span_is_its_child(make_tracer: MakeTracer) -> None:
    tracer, memory = make_tracer(metrics=False)
    _send(tracer, _events())
    _check_tree(memory.get_finished_spans())


def test_own_otlp_http_exporter_sends_the_remote_parent_as_the_sdk_would(
    collector: _Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", collector.url)
    tracer = OtlpTracer(metrics=False, interval_s=0.05)
    reference = OtlpTracer(span_exporter=InMemorySpanExporter(), metrics=False, interval_s=0.05)
    try:
        assert tracer._collector is not None
        assert tracer._collector.fast is not None  # the fast encoder writes the bytes
        events = _events()
        _send(tracer, events)
        _send(reference, events)
    finally:
        tracer.shutdown(5.0)
        reference.shutdown(5.0)
    got = [s for _, body in collector.requests for s in _scope_spans(ExportTraceServiceRequest.FromString(body))]
    assert reference._exporter is not None
    memory = reference._exporter
    assert isinstance(memory, InMemorySpanExporter)
    want = _scope_spans(encode_spans(memory.get_finished_spans()))
    assert [s.SerializeToString() for s in got] == [s.SerializeToString() for s in want]
    agent = next(s for s in got if s.name == "invoke_agent a")
    assert agent.parent_span_id.hex() == APP_SPAN
    assert agent.trace_id.hex() == APP_TRACE
    assert agent.flags & 0x300 == 0x300  # the parent is remote


def _scope_spans(request: ExportTraceServiceRequest) -> list[Any]:
    return [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]


@pytest.mark.parametrize("how", ["tracer_provider=", "the global provider"])
def test_application_provider_a_run_in_an_application_span_is_its_child(how: str) -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    if how == "the global provider":
        trace_api.set_tracer_provider(provider)
        tracer = OtlpTracer(metrics=False, interval_s=0.05)
        assert tracer.destination == "the application's tracer provider"
    else:
        tracer = OtlpTracer(tracer_provider=provider, metrics=False, interval_s=0.05)
    try:
        _send(tracer, _events())
    finally:
        tracer.shutdown(5.0)
    spans = memory.get_finished_spans()
    _check_tree(spans)
    # the provider picked the span ids; the core's are on the spans
    assert attrs(one(spans, "invoke_agent a"))[N.TD_SPAN_ID] == "1111111111111111"


def test_a_parentless_run_through_the_application_provider_keeps_its_tree() -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = OtlpTracer(tracer_provider=provider, metrics=False, interval_s=0.05)
    try:
        _send(tracer, _events(parent=None))
    finally:
        tracer.shutdown(5.0)
    spans = memory.get_finished_spans()
    agent = one(spans, "invoke_agent a")
    assert agent.parent is None
    assert {parent_id(one(spans, n)) for n in ("chat m", "execute_tool t")} == {span_id(agent)}
    assert len({trace_id(s) for s in spans}) == 1
    # the provider chose the trace id of a root: the core's is on every span
    assert {attrs(s).get(N.TD_TRACE_ID, trace_id(s)) for s in spans} == {APP_TRACE}


# ------------------------------------------------------------------------------ touch nothing


def test_runs_change_nothing_the_application_or_the_sdk_owns(
    collector: _Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory = InMemorySpanExporter()
    processor = SimpleSpanProcessor(memory)
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    trace_api.set_tracer_provider(provider)
    ids, sampler, resource = provider.id_generator, provider.sampler, provider.resource
    processors = provider._active_span_processor._span_processors  # read only, to compare after
    encoder = http_module.encode_spans
    assert encoder is encode_spans
    app_tracer = provider.get_tracer("app")
    app_ids = app_tracer.id_generator  # type: ignore[attr-defined]

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", collector.url)
    global_one = OtlpTracer(metrics=False, interval_s=0.05)  # the global provider
    given = OtlpTracer(tracer_provider=provider, metrics=False, interval_s=0.05)
    own = OtlpTracer(span_exporter=_providers_own_exporter(), metrics=False, interval_s=0.05)
    plugins = [global_one, given, own]
    try:
        model = ScriptedModel([Step(tool_calls=[("async_tool", {"label": "x"})]), "ok"], per_run=True)
        agent = Agent("a", model, tools=[async_tool], plugins=plugins)
        with app_tracer.start_as_current_span("request"):
            asyncio.run(agent.run("go"))
        for plugin in plugins:
            assert plugin.flush(10.0)
    finally:
        for plugin in plugins:
            plugin.shutdown(5.0)
    assert trace_api.get_tracer_provider() is provider
    assert provider.id_generator is ids
    assert provider.sampler is sampler
    assert provider.resource is resource
    assert provider._active_span_processor._span_processors == processors
    assert processors[0] is processor
    assert app_tracer.id_generator is app_ids  # type: ignore[attr-defined]
    for plugin in (global_one, given):  # the tracer the plugin got from the provider, untouched too
        assert plugin._builder is not None
        assert plugin._builder.sink.tracer.id_generator is ids  # type: ignore[attr-defined]
    assert http_module.encode_spans is encoder
    assert memory._stopped is False  # the application's exporter was not shut down
    names = sorted(s.name for s in memory.get_finished_spans())
    assert names.count("invoke_agent a") == 2  # one from each tracer on the provider
    assert "request" in names
    assert collector.requests  # the own exporter sent over OTLP/HTTP meanwhile


def _providers_own_exporter() -> Any:
    from tracedagent_otlp import _providers

    return _providers.span_exporter_from_env(os.environ)
