"""MCP tool calls in OTLP: the trace continues into the server. A real MCP server (the core's test server,
built on the SDK's MCPServer and instrumented with the OpenTelemetry SDK) and this process both export to
one OTLP/HTTP receiver on loopback; the server's spans are children of our ``execute_tool`` span."""

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

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tracedagent import Agent, ToolCall
from tracedagent.mcp import MCPServerStdio
from tracedagent.testing import ScriptedModel
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
