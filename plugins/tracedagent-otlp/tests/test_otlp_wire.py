"""The fast path for the stock OTLP exporters (``_wire``): the protobuf request it writes is, byte for byte,
what the SDK's ``encode_spans`` makes of the same spans, and the exporter still does everything else
(endpoint, headers, compression, its result). Any other exporter gets ``ReadableSpan`` objects."""

from __future__ import annotations

import asyncio
import gzip
import importlib.util
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http import trace_exporter as http_module
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind, Status, StatusCode, TraceFlags
from otlp_support import MakeTracer

import tracedagent
from tracedagent import Agent, DropOldest, InMemoryCheckpointStore, Message, ModelError, ModelRequest, tool
from tracedagent.resilience import CircuitBreaker, RetryPolicy
from tracedagent.testing import FunctionModel, ScriptedModel, Step
from tracedagent_otlp import OtlpTracer, _providers
from tracedagent_otlp import names as N
from tracedagent_otlp._http import OtlpHttpSender
from tracedagent_otlp._sinks import ExporterSink, SpanRecord, readable_span
from tracedagent_otlp._wire import EncodedBatch, FastPath, probe_records

SCOPE = InstrumentationScope(N.SCOPE_NAME, N.SCOPE_VERSION, N.SCHEMA_URL)
SAMPLED = TraceFlags(TraceFlags.SAMPLED)


def sdk_bytes(records: Sequence[SpanRecord], resource: Resource, scope: InstrumentationScope = SCOPE) -> bytes:
    data: bytes = encode_spans([readable_span(r, resource, scope) for r in records]).SerializePartialToString()
    return data


# ------------------------------------------------------------------------------- the bytes themselves


@pytest.mark.parametrize(
    "resource",
    [
        Resource.create({"service.name": "trip-desk", "n": 3, "ok": True, "tags": ("a", "b")}),
        Resource({}, "https://opentelemetry.io/schemas/1.30.0"),
        Resource.get_empty(),
    ],
)
@pytest.mark.parametrize(
    "scope", [SCOPE, InstrumentationScope("x"), InstrumentationScope("x", "1", None, {"scope.attr": "v"})]
)
def test_the_probe_spans_encode_to_the_sdk_encoders_bytes(resource: Resource, scope: InstrumentationScope) -> None:
    fast = FastPath(resource, scope)
    records = probe_records()
    assert fast.encode(records) == sdk_bytes(records, resource, scope)
    for record in records:  # one at a time too, with the caches filled
        assert fast.encode([record]) == sdk_bytes([record], resource, scope)
    assert fast.matches_the_sdk(records)


def record(attributes: dict[str, Any], **changes: Any) -> SpanRecord:
    fields: dict[str, Any] = {
        "name": "chat m",
        "kind": SpanKind.CLIENT,
        "trace_id": 0x0AF7651916CD43DD8448EB211C80319C,
        "span_id": 0xB7AD6B7169203331,
        "parent_id": 0x00F067AA0BA902B7,
        "attributes": attributes,
        "events": (),
        "links": (),
        "status": None,
        "start_ns": 1_700_000_000_000_000_000,
        "end_ns": 1_700_000_000_500_000_000,
        "remote": False,
    }
    fields.update(changes)
    return tuple(fields.values())  # type: ignore[return-value]


@pytest.mark.parametrize(
    "value",
    [
        "",
        "é" * 70,
        "x" * 200,
        "y" * 20_000,
        0,
        -1,
        (1 << 63) - 1,
        -(1 << 63),
        127,
        128,
        16_383,
        16_384,
        True,
        False,
        0.0,
        -0.0,
        float("inf"),
        float("nan"),
        1e-300,
        (),
        ("a",),
        (1, 2),
        (True, False),
        (0.5,),
        None,
        ["a", 1],
        {"k": {"nested": (1, "two")}},
        b"",
        b"\xff\x00",
    ],
)
def test_every_attribute_value_type_encodes_as_the_sdk_does(value: Any) -> None:
    resource = Resource.create({})
    fast = FastPath(resource, SCOPE)
    records = [
        record({"k": value}),
        record({"k": value}, events=[("e", {"k": value}, 5)]),
        record({}, status=Status(StatusCode.ERROR, "boom"), parent_id=None),
        record({"k": value}, remote=True),
    ]
    assert fast.encode(records) == sdk_bytes(records, resource)
    assert fast.encode(records) == sdk_bytes(records, resource)  # again, from the caches


@pytest.mark.parametrize(
    "value",
    [object(), "\ud800 lone surrogate", 1 << 63, -(1 << 63) - 1, ("ok", object())],
    ids=["object", "surrogate", "int64-overflow", "int64-underflow", "bad-item"],
)
def test_a_value_the_fast_path_cannot_write_goes_to_the_sdks_encoder(value: Any) -> None:
    # The SDK logs the attribute and leaves it out; the batch falls back to it as a whole.
    resource = Resource.create({})
    fast = FastPath(resource, SCOPE)
    records = [record({"before": 1, "bad": value, "after": "x"}), record({"fine": True})]
    with pytest.raises((TypeError, ValueError, UnicodeEncodeError, OverflowError)):
        fast.encode(records)
    batch = fast.batch(records)
    assert batch.encoded() == sdk_bytes(records, resource)


def test_a_batch_is_a_sequence_of_readable_spans_and_keeps_its_request_for_a_retry() -> None:
    resource = Resource.create({})
    records = [record({"a": 1}), record({"b": "two"}, parent_id=None)]
    batch = FastPath(resource, SCOPE).batch(records)
    assert len(batch) == 2
    assert all(isinstance(span, ReadableSpan) for span in batch)
    assert batch[1].parent is None
    assert batch[0].attributes == {"a": 1}
    first = batch.encoded()
    assert batch.encoded() is first
    assert ExportTraceServiceRequest.FromString(first).resource_spans


# ------------------------------------------------------------------------------- which exporters


def test_only_the_plugins_own_exporter_gets_the_fast_path() -> None:
    resource = Resource.create({})
    own = OtlpHttpSender("http://127.0.0.1:9/v1/traces")
    assert ExporterSink(resource, ALWAYS_ON, SCOPE, own).fast is not None
    stock = OTLPSpanExporter(endpoint="http://127.0.0.1:9/v1/traces")
    for other in (InMemorySpanExporter(), stock, None):
        sink = ExporterSink(resource, ALWAYS_ON, SCOPE, other)
        assert sink.fast is None
        sink.emit("s", SpanKind.INTERNAL, 1, 2, None, SAMPLED, {"a": 1}, [], [], None, 1, 2)
        spans = sink.take()
        assert type(spans) is list
        assert isinstance(spans[0], ReadableSpan)


def test_no_other_librarys_module_is_changed() -> None:
    """The SDK exporter module's encode_spans is the SDK's, whatever the plugin builds."""
    before = http_module.encode_spans
    resource = Resource.create({})
    ExporterSink(resource, ALWAYS_ON, SCOPE, OtlpHttpSender("http://127.0.0.1:9/v1/traces"))
    ExporterSink(resource, ALWAYS_ON, SCOPE, OTLPSpanExporter(endpoint="http://127.0.0.1:9/v1/traces"))
    assert http_module.encode_spans is before is encode_spans


def test_no_fast_path_when_the_bytes_would_differ(monkeypatch: pytest.MonkeyPatch) -> None:
    resource = Resource.create({})
    exporter = OtlpHttpSender("http://127.0.0.1:9/v1/traces")
    monkeypatch.setattr(FastPath, "matches_the_sdk", lambda self, records: False)
    assert ExporterSink(resource, ALWAYS_ON, SCOPE, exporter).fast is None


# ------------------------------------------------------------------ real runs, real exporters, real bytes


@tool
async def add(a: int, b: int) -> int:
    """Add two numbers."""
    await asyncio.sleep(0)
    return a + b


@tool
def broken(x: int) -> int:
    """Always fails."""
    raise ValueError(f"cannot handle {x}")


@tool(needs_approval=True)
def transfer(amount: int) -> str:
    """Move money; a person approves."""
    return f"moved {amount}"


async def every_kind_of_run(plugins: list[Any]) -> None:
    """Runs that make every span, attribute, span event, link and status the builder makes."""
    await Agent(
        "calc", ScriptedModel([Step(tool_calls=[("add", {"a": 1, "b": 2})]), "3"]), tools=[add], plugins=plugins
    ).run("1 + 2?")
    await Agent(
        "a", ScriptedModel([Step(tool_calls=[("broken", {"x": 4})]), "sorry"]), tools=[broken], plugins=plugins
    ).run("go")
    with pytest.raises(ModelError):
        await Agent("a", ScriptedModel([Step(error=ModelError("upstream said no"))]), plugins=plugins).run("go")
    bank = Agent(
        "bank",
        ScriptedModel([Step(tool_calls=[{"id": "t1", "name": "transfer", "arguments": {"amount": 5}}]), "moved"]),
        tools=[transfer],
        plugins=plugins,
    )
    paused = await bank.run("move 5")
    await bank.resume(paused.run_id, {"t1": True})
    history = [Message.user("earlier question " * 40), Message.assistant("earlier answer " * 40)] * 3
    compacting = Agent(
        "a",
        ScriptedModel(["ok"]),
        compaction=DropOldest(max_tokens=120),
        checkpoints=InMemoryCheckpointStore(),
        checkpoint_every="step",
        plugins=plugins,
    )
    await compacting.run("now", messages=history)

    @tool(breaker=CircuitBreaker(failure_threshold=1, reset_timeout=60))
    def fragile() -> str:
        """Fails, and opens its breaker."""
        raise ConnectionError("down")

    @tool(retries=RetryPolicy(attempts=2, initial_delay=0.001, max_delay=0.002))
    def flaky() -> str:
        """Always slow."""
        raise TimeoutError("slow")

    model = ScriptedModel([Step(tool_calls=[("fragile", {}), ("flaky", {})]), "ok"])
    await Agent("a", model, tools=[fragile, flaky], plugins=plugins).run("go")

    def model_fn(messages: Sequence[Message], request: ModelRequest) -> Any:
        assert request.on_retry is not None
        request.on_retry(1, 0.5, ConnectionError("reset"))
        return "ok"

    await Agent("a", FunctionModel(model_fn, name="gpt-x", provider="openai"), plugins=plugins).run("go")


class _Collector:
    """An OTLP/HTTP receiver on loopback that keeps every request it is sent."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector() -> Iterator[_Collector]:
    c = _Collector()
    yield c
    c.close()


def expected_spans(memory: InMemorySpanExporter) -> tuple[ExportTraceServiceRequest, list[PbSpan]]:
    request = encode_spans(memory.get_finished_spans())
    (resource_spans,) = request.resource_spans
    (scope_spans,) = resource_spans.scope_spans
    return request, list(scope_spans.spans)


def received_spans(requests: Sequence[ExportTraceServiceRequest], expected: ExportTraceServiceRequest) -> list[PbSpan]:
    (want,) = expected.resource_spans
    spans: list[PbSpan] = []
    for request in requests:
        (got,) = request.resource_spans
        assert got.resource == want.resource
        assert got.schema_url == want.schema_url
        (scope_spans,) = got.scope_spans
        assert scope_spans.scope == want.scope_spans[0].scope
        assert scope_spans.schema_url == want.scope_spans[0].schema_url
        spans.extend(scope_spans.spans)
    return spans


@pytest.mark.parametrize("content", [False, True])
@pytest.mark.parametrize("exporter_kind", ["own", "own from OTEL_*", "the SDK's, passed in"])
async def test_runs_reach_an_http_collector_as_the_sdk_encoder_would_send_them(
    make_tracer: MakeTracer,
    collector: _Collector,
    content: bool,
    exporter_kind: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exporter: Any
    if exporter_kind == "own":
        exporter = OtlpHttpSender(collector.url, headers={"x-team": "agents"}, compression="gzip")
    elif exporter_kind == "own from OTEL_*":
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", collector.url)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-team=agents")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
        exporter = _providers.span_exporter_from_env(os.environ)
        assert isinstance(exporter, OtlpHttpSender)
    else:
        exporter = OTLPSpanExporter(endpoint=collector.url, headers={"x-team": "agents"}, compression=Compression.Gzip)
    fast, _ = make_tracer(span_exporter=exporter, capture_content=content, metrics=False)
    reference, memory = make_tracer(capture_content=content, metrics=False)
    assert fast._collector is not None
    assert (fast._collector.fast is not None) == isinstance(exporter, OtlpHttpSender)
    assert reference._collector is not None
    assert reference._collector.fast is None
    await every_kind_of_run([fast, reference])
    assert fast.flush(10.0)
    assert reference.flush(10.0)
    assert fast.spans_failed == 0
    assert fast.spans_exported == len(memory.get_finished_spans()) > 20
    requests = []
    for headers, body in collector.requests:
        assert headers["x-team"] == "agents"
        assert headers["content-encoding"] == "gzip"
        assert headers["content-type"] == "application/x-protobuf"
        requests.append(ExportTraceServiceRequest.FromString(gzip.decompress(body)))
    expected, spans = expected_spans(memory)
    got = received_spans(requests, expected)
    assert [s.SerializeToString() for s in got] == [s.SerializeToString() for s in spans]
    kinds = {s.kind for s in got}
    assert kinds == {PbSpan.SPAN_KIND_INTERNAL, PbSpan.SPAN_KIND_CLIENT}
    assert any(s.links for s in got)
    assert any(s.events for s in got)
    assert any(s.status.code == 2 for s in got)


async def test_a_priced_chat_span_reaches_the_collector_with_its_cost(
    make_tracer: MakeTracer, collector: _Collector
) -> None:
    pytest.importorskip("genai_prices")
    tracer, _ = make_tracer(span_exporter=OTLPSpanExporter(endpoint=collector.url), metrics=False)
    usage = tracedagent.Usage(2000, 500, cache_read_tokens=1000, requests=1)
    priced = ScriptedModel([Step("hi", usage=usage)], name="gpt-4o-mini", provider="openai")
    unpriced = ScriptedModel([Step("hi", usage=usage)], name="no-such-model", provider="openai")
    result = await Agent("a", priced, plugins=[tracer]).run("go")
    await Agent("b", unpriced, plugins=[tracer]).run("go")
    assert tracer.flush(10.0)
    spans = [
        span
        for _, body in collector.requests
        for resource_spans in ExportTraceServiceRequest.FromString(body).resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]
    chats = {s.name: {a.key: a.value for a in s.attributes} for s in spans if s.name.startswith("chat ")}
    assert result.usage.cost_usd is not None
    assert result.usage.cost_usd > 0
    assert chats["chat gpt-4o-mini"][N.GEN_AI_USAGE_COST].double_value == result.usage.cost_usd
    assert N.GEN_AI_USAGE_COST not in chats["chat no-such-model"]
    # the run span carries no cost: a backend adding up a trace counts each call once
    runs = [{a.key for a in s.attributes} for s in spans if s.name.startswith("invoke_agent ")]
    assert runs
    assert all(N.GEN_AI_USAGE_COST not in keys for keys in runs)


def test_a_collector_that_refuses_is_a_failed_export_as_before(make_tracer: MakeTracer) -> None:
    class Refusing(_Collector):
        pass

    c = Refusing()
    c.close()  # nothing listens any more: connection refused
    exporter = OtlpHttpSender(c.url, timeout=0.5)
    tracer, _ = make_tracer(span_exporter=exporter, metrics=False)
    assert tracer._collector is not None
    assert tracer._collector.fast is not None
    sink = tracer._collector
    sink.emit("s", SpanKind.INTERNAL, 1, 2, None, SAMPLED, {"a": 1}, [], [], None, 1, 2)
    batch = sink.take()
    assert isinstance(batch, EncodedBatch)
    assert exporter.export(batch) is SpanExportResult.FAILURE
    assert exporter.failures == 1
    assert "refused" in str(exporter.last_error)


@pytest.mark.skipif(
    importlib.util.find_spec("opentelemetry.exporter.otlp.proto.grpc") is None, reason="no OTLP gRPC exporter"
)
async def test_runs_reach_a_grpc_collector_as_the_sdk_encoder_would_send_them(make_tracer: MakeTracer) -> None:
    import grpc
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

    received: list[ExportTraceServiceRequest] = []

    class Service(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request: ExportTraceServiceRequest, context: Any) -> ExportTraceServiceResponse:
            received.append(request)
            return ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        exporter = GrpcExporter(endpoint=f"127.0.0.1:{port}", insecure=True)
        fast, _ = make_tracer(span_exporter=exporter, capture_content=True, metrics=False)
        reference, memory = make_tracer(capture_content=True, metrics=False)
        assert fast._collector is not None
        assert fast._collector.fast is None  # the SDK's exporter, passed in: the SDK's encoder
        await every_kind_of_run([fast, reference])
        assert fast.flush(10.0)
        assert reference.flush(10.0)
        assert fast.spans_failed == 0
        expected, spans = expected_spans(memory)
        got = received_spans(received, expected)
        assert len(spans) > 20
        assert [s.SerializeToString() for s in got] == [s.SerializeToString() for s in spans]
    finally:
        server.stop(None)


def test_the_plugins_own_exporter_from_the_environment_gets_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    tracer = OtlpTracer(metrics=False)
    try:
        assert tracer._collector is not None
        assert tracer._collector.fast is not None
    finally:
        tracer.shutdown(0.1)


@pytest.mark.parametrize("value", ["false", "0", "off", "No"])
def test_the_fast_encoder_can_be_turned_off(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("TRACEDAGENT_OTLP_FAST_ENCODER", value)
    tracer = OtlpTracer(metrics=False)
    try:
        assert tracer._collector is not None
        assert tracer._collector.fast is None
    finally:
        tracer.shutdown(0.1)


def test_a_bad_fast_encoder_setting_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("TRACEDAGENT_OTLP_FAST_ENCODER", "maybe")
    with pytest.raises(tracedagent.ConfigurationError, match="TRACEDAGENT_OTLP_FAST_ENCODER='maybe'"):
        OtlpTracer(metrics=False)
