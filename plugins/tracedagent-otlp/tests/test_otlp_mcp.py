"""MCP tool calls in OTLP: the trace continues into the server. A real MCP server (the core's test server,
built on the SDK's MCPServer and instrumented with the OpenTelemetry SDK) and this process both export to
one OTLP/HTTP receiver on loopback; the server's spans are children of our ``execute_tool`` span. And the
``_meta.traceparent`` (and HTTP header) a call sends names the exported ``execute_tool`` span, also when
the application's provider picks the span ids; the run's ``tracestate`` goes with it."""

from __future__ import annotations

import gzip
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp")

from opentelemetry import trace as trace_api
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState
from otlp_support import MakeTracer

from tracedagent import Agent, ToolCall, ToolCallEnded
from tracedagent.mcp import MCPServerHTTP, MCPServerStdio
from tracedagent.testing import ScriptedModel, capture_events
from tracedagent_otlp import OtlpTracer

SERVER = Path(__file__).resolve().parents[3] / "tests" / "mcp_server.py"


class Receiver:
    """An OTLP/HTTP trace receiver on 127.0.0.1 keeping every span it gets, with its service name."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, Any]] = []
        self.lock = threading.Lock()
        spans, lock = self.spans, self.lock

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest.FromString(body)
                with lock:
                    for resource_spans in request.resource_spans:
                        service = next(
                            (
                                a.value.string_value
                                for a in resource_spans.resource.attributes
                                if a.key == "service.name"
                            ),
                            "",
                        )
                        for scope in resource_spans.scope_spans:
                            spans.extend((service, s) for s in scope.spans)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


async def test_the_servers_spans_are_children_of_the_execute_tool_span(receiver: Receiver) -> None:
    tracer = OtlpTracer(span_exporter=OTLPSpanExporter(endpoint=receiver.base + "/v1/traces"), metrics=False)
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.base, "OTEL_SERVICE_NAME": "test-mcp-server"}
    try:
        async with MCPServerStdio(sys.executable, [str(SERVER)], env=env) as server:
            model = ScriptedModel([ToolCall.of("c", "add", {"a": 2, "b": 2}), "four"])
            await Agent("a", model, tools=[server], plugins=[tracer]).run("go")
        # aclose() stopped the server: its SimpleSpanProcessor exported each span as it ended.
        assert tracer.flush(10.0)
    finally:
        tracer.shutdown(5.0)

    with receiver.lock:
        spans = list(receiver.spans)
    ours = {s.name: s for service, s in spans if service != "test-mcp-server"}
    theirs = [s for service, s in spans if service == "test-mcp-server"]
    execute_tool = ours["execute_tool add"]
    inside = next(s for s in theirs if s.name == "add-inside-server")
    assert inside.trace_id == execute_tool.trace_id
    by_id = {s.span_id: s for s in theirs}
    # Walk up from the span inside the tool: through the SDK's server span, to our execute_tool span.
    span = inside
    chain = [span.name]
    while span.parent_span_id in by_id:
        span = by_id[span.parent_span_id]
        chain.append(span.name)
    assert span.parent_span_id == execute_tool.span_id, chain
    assert len(chain) >= 2  # the SDK's own server span is in between


# ------------------------------------------------- the ids a call sends are the exported span's ids

ROOT_TESTS = SERVER.parent
sys.path.insert(0, str(ROOT_TESTS))
from mcp_support import HTTPServerProcess, records  # noqa: E402

STATE = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"


def calls_seen(record: Path) -> list[dict[str, Any]]:
    return [r for r in records(record) if r["event"] == "call"]


def stdio(record: Path) -> MCPServerStdio:
    return MCPServerStdio(sys.executable, [str(SERVER)], env={"MCP_RECORD": str(record)})


@pytest.fixture(params=["tracer_provider=", "the global provider"])
def app(request: pytest.FixtureRequest) -> Iterator[tuple[TracerProvider, InMemorySpanExporter, OtlpTracer]]:
    """The application's provider, passed or global (then the mcp 2.x client opens a span of its own
    around each request, as instrumentation would)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    if request.param == "the global provider":
        trace_api.set_tracer_provider(provider)
        tracer = OtlpTracer(metrics=False, interval_s=0.05)
    else:
        tracer = OtlpTracer(tracer_provider=provider, metrics=False, interval_s=0.05)
    yield provider, memory, tracer
    tracer.shutdown(5.0)


def exported_tool_span(memory: InMemorySpanExporter, name: str) -> str:
    (span,) = [s for s in memory.get_finished_spans() if s.name == f"execute_tool {name}"]
    assert span.context is not None
    return f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-01"


async def test_in_provider_mode_meta_traceparent_names_the_exported_execute_tool_span(
    app: tuple[TracerProvider, InMemorySpanExporter, OtlpTracer], tmp_path: Path
) -> None:
    _, memory, tracer = app
    record = tmp_path / "record.jsonl"
    async with stdio(record) as server:
        model = ScriptedModel([ToolCall.of("c", "add", {"a": 2, "b": 2}), "four"])
        with capture_events() as events:
            await Agent("a", model, tools=[server], plugins=[tracer]).run("go")
    assert tracer.flush(5.0)
    (seen,) = calls_seen(record)
    assert seen["meta"]["traceparent"] == exported_tool_span(memory, "add")
    # the core's own span id for the call is another one: the provider picked the exported span's
    (end,) = [e for e in events.events if isinstance(e, ToolCallEnded)]
    assert seen["meta"]["traceparent"] != f"00-{end.trace_id}-{end.span_id}-01"
    assert "tracestate" not in seen["meta"]


async def test_in_provider_mode_over_http_the_header_names_it_too_with_the_tracestate(
    app: tuple[TracerProvider, InMemorySpanExporter, OtlpTracer], tmp_path: Path
) -> None:
    provider, memory, tracer = app
    record = tmp_path / "record.jsonl"
    process = HTTPServerProcess(tmp_path, record)
    process.start()
    caller = SpanContext(0xABC, 0xDEF, True, TraceFlags(TraceFlags.SAMPLED), TraceState.from_header([STATE]))
    try:
        async with MCPServerHTTP(process.url) as server:
            model = ScriptedModel([ToolCall.of("c", "echo", {"text": "x"}), "ok"])
            parent = trace_api.set_span_in_context(NonRecordingSpan(caller))
            with provider.get_tracer("app").start_as_current_span("job", context=parent):
                await Agent("a", model, tools=[server], plugins=[tracer]).run("go")
    finally:
        process.stop()
    assert tracer.flush(5.0)
    (seen,) = calls_seen(record)
    expected = exported_tool_span(memory, "echo")
    assert seen["meta"]["traceparent"] == seen["headers"]["traceparent"] == expected
    assert seen["meta"]["tracestate"] == seen["headers"]["tracestate"] == STATE


async def test_with_its_own_exporter_meta_traceparent_is_the_core_span_that_is_exported(
    make_tracer: MakeTracer, tmp_path: Path
) -> None:
    tracer, exporter = make_tracer(metrics=False)
    record = tmp_path / "record.jsonl"
    async with stdio(record) as server:
        model = ScriptedModel([ToolCall.of("c", "add", {"a": 2, "b": 2}), "four"])
        with capture_events() as events:
            await Agent("a", model, tools=[server], plugins=[tracer]).run("go")
    assert tracer.flush(5.0)
    (seen,) = calls_seen(record)
    (end,) = [e for e in events.events if isinstance(e, ToolCallEnded)]
    assert seen["meta"]["traceparent"] == f"00-{end.trace_id}-{end.span_id}-01"
    assert seen["meta"]["traceparent"] == exported_tool_span(exporter, "add")
