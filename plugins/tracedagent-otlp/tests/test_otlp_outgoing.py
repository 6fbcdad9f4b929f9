"""What leaves a run names the spans that are exported, and what is not exported is not held.

* Through the application's provider (``OtlpTracer(tracer_provider=...)``), which picks the span ids, a
  model request's ``traceparent`` names the exported ``chat`` span (not the core's span id, which no
  exported span has), and the run's ``tracestate`` goes with it (and on the exported spans). With the
  tracer's own exporter the core's ids are the exported ones.
* A run whose start never reaches the tracer (its trace is shed at admission, or the tracer is not one of
  the agent's plugins) leaves no root span held and nothing half exported.

The real OpenTelemetry SDK (in-memory exporter) and the loopback OpenAI-compatible server of the core's
tests. (MCP requests: test_otlp_mcp.py.)"""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import httpx
import pytest
from opentelemetry import trace as trace_api
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState
from otlp_support import MakeTracer, one, parent_id, span_id, trace_id

from tracedagent import Agent
from tracedagent.models import OpenAIChatModel
from tracedagent.serve import asgi_app
from tracedagent.testing import ScriptedModel
from tracedagent_otlp import OtlpTracer

ROOT_TESTS = Path(__file__).resolve().parents[3] / "tests"
sys.path.insert(0, str(ROOT_TESTS))
from serve_server import uvicorn_server  # noqa: E402
from wire_server import Reply, WireServer, wire_server  # noqa: E402

GUARD_S = 30.0  # a guard against hanging only
STATE = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
CALLER_TRACE, CALLER_SPAN = 0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331


def sse(name: str) -> Reply:
    text = (ROOT_TESTS / "transcripts" / "openai" / name).read_text(encoding="utf-8")
    return Reply(chunks=[block + "\n\n" for block in text.split("\n\n") if block])


@pytest.fixture
def server() -> Iterator[WireServer]:
    with wire_server() as s:
        yield s


@pytest.fixture
async def openai_model(server: WireServer) -> AsyncIterator[OpenAIChatModel]:
    model = OpenAIChatModel(
        "gpt-4o-mini", base_url=f"{server.url}/v1", api_key="sk-test", retry_initial_delay=0.001, retry_max_delay=0.01
    )
    yield model
    await model.aclose()


@pytest.fixture
def provider() -> Iterator[tuple[TracerProvider, InMemorySpanExporter, OtlpTracer]]:
    """The application's provider (not global) and a tracer sending through it."""
    memory = InMemorySpanExporter()
    app = TracerProvider(shutdown_on_exit=False)
    app.add_span_processor(SimpleSpanProcessor(memory))
    tracer = OtlpTracer(tracer_provider=app, metrics=False, interval_s=0.05)
    yield app, memory, tracer
    tracer.shutdown(5.0)


def caller_context(tracestate: str = STATE) -> object:
    caller = SpanContext(
        CALLER_TRACE, CALLER_SPAN, True, TraceFlags(TraceFlags.SAMPLED), TraceState.from_header([tracestate])
    )
    return trace_api.set_span_in_context(NonRecordingSpan(caller))


# ------------------------------------------------------------------------------ model requests


async def test_in_provider_mode_a_model_requests_traceparent_names_the_exported_chat_span(
    server: WireServer, openai_model: OpenAIChatModel, provider: tuple[TracerProvider, InMemorySpanExporter, OtlpTracer]
) -> None:
    _, memory, tracer = provider
    server.queue(Reply.json(503, {"error": {"message": "busy"}}), sse("text.sse"))
    result = await Agent("a", openai_model, plugins=[tracer]).run("hello")
    assert tracer.flush(5.0)
    chat = one(memory.get_finished_spans(), "chat gpt-4o-mini")
    expected = f"00-{trace_id(chat)}-{span_id(chat)}-01"
    assert [r.headers["traceparent"] for r in server.requests] == [expected, expected]  # the retry too
    assert trace_id(chat) == result.trace_id
    assert all("tracestate" not in r.headers for r in server.requests)


async def test_in_provider_mode_the_applications_tracestate_goes_out_and_on_the_spans(
    server: WireServer, openai_model: OpenAIChatModel, provider: tuple[TracerProvider, InMemorySpanExporter, OtlpTracer]
) -> None:
    app, memory, tracer = provider
    server.queue(sse("text.sse"))
    with app.get_tracer("the-app").start_as_current_span("POST /chat", context=caller_context()):  # type: ignore[arg-type]
        await Agent("a", openai_model, plugins=[tracer]).run("hello")
    assert tracer.flush(5.0)
    spans = memory.get_finished_spans()
    chat = one(spans, "chat gpt-4o-mini")
    (request,) = server.requests
    assert request.headers["traceparent"] == f"00-{trace_id(chat)}-{span_id(chat)}-01"
    assert request.headers["tracestate"] == STATE
    assert {s.context.trace_state.to_header() for s in spans if s.context is not None} == {STATE}


def test_in_provider_mode_a_served_requests_tracestate_goes_out_and_on_the_spans(
    server: WireServer, provider: tuple[TracerProvider, InMemorySpanExporter, OtlpTracer]
) -> None:
    """The caller is another process: its span is the run's remote parent, with the tracestate it sent."""
    _, memory, tracer = provider
    server.queue(sse("text.sse"))
    model = OpenAIChatModel("gpt-4o-mini", base_url=f"{server.url}/v1", api_key="sk-test")
    headers = {"traceparent": f"00-{CALLER_TRACE:032x}-{CALLER_SPAN:016x}-01", "tracestate": STATE}
    with uvicorn_server(asgi_app(Agent("a", model, plugins=[tracer]))) as running:
        r = httpx.post(running.url + "/v1/runs", json={"input": "hi"}, headers=headers, timeout=GUARD_S)
    assert r.status_code == 200, r.text
    assert tracer.flush(5.0)
    spans = memory.get_finished_spans()
    run, chat = one(spans, "invoke_agent a"), one(spans, "chat gpt-4o-mini")
    assert run.parent is not None
    assert (run.parent.span_id, run.parent.is_remote) == (CALLER_SPAN, True)
    assert {s.context.trace_state.to_header() for s in spans if s.context is not None} == {STATE}
    (request,) = server.requests
    assert request.headers["traceparent"] == f"00-{CALLER_TRACE:032x}-{span_id(chat)}-01"
    assert request.headers["tracestate"] == STATE


async def test_with_its_own_exporter_the_core_ids_are_sent_and_exported(
    server: WireServer, openai_model: OpenAIChatModel, make_tracer: MakeTracer
) -> None:
    tracer, exporter = make_tracer(metrics=False)
    server.queue(sse("text.sse"))
    with trace_api.get_tracer("x").start_as_current_span("unused"):  # a proxy tracer: no span, no effect
        result = await Agent("a", openai_model, plugins=[tracer]).run("hello")
    assert tracer.flush(5.0)
    chat = one(exporter.get_finished_spans(), "chat gpt-4o-mini")
    (request,) = server.requests
    assert request.headers["traceparent"] == f"00-{result.trace_id}-{span_id(chat)}-01"


# ---------------------------------------------------------------- runs that never reach the tracer


def held_roots(agent: str) -> int:
    """SDK spans of ``agent``'s runs started and never ended, still alive."""
    gc.collect()
    name = f"invoke_agent {agent}"
    return sum(1 for o in gc.get_objects() if isinstance(o, SdkSpan) and o.name == name and o.end_time is None)


class HeldExporter(SpanExporter):
    """The application's exporter, held in its first export until ``release`` is set: the tracer's worker
    (which ends the spans, so the provider's SimpleSpanProcessor exports them) is stuck, its queue fills,
    and new runs are shed."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.spans: list[ReadableSpan] = []
        self.lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.entered.set()
        if not self.release.wait(GUARD_S):
            return SpanExportResult.FAILURE
        with self.lock:
            self.spans.extend(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.release.set()


async def test_runs_shed_in_provider_mode_hold_no_root_span_and_export_nothing_broken() -> None:
    held = HeldExporter()
    app = TracerProvider(shutdown_on_exit=False)
    app.add_span_processor(SimpleSpanProcessor(held))
    tracer = OtlpTracer(tracer_provider=app, metrics=False, max_queue=40, max_batch=4, interval_s=0.01)
    agent = Agent("shed-me", ScriptedModel(["ok"], per_run=True), plugins=[tracer])
    sink = tracer._provider_sink
    assert sink is not None
    try:
        warm = await agent.run("warm")  # its spans hold the worker in the exporter
        assert held.entered.wait(GUARD_S)
        results = [await agent.run(f"q{i}") for i in range(30)]
        assert sink._root.get() is None  # the last run's root was taken or let go, not kept
        stats = tracer.stats()
        assert stats.traces_shed > 0
        assert stats.traces_broken == 0
        held.release.set()
        assert tracer.flush(GUARD_S)
    finally:
        held.release.set()
        tracer.shutdown(GUARD_S)
    stats = tracer.stats()
    assert held_roots("shed-me") == 0  # no root span of a shed run is alive
    by_trace: dict[str, list[ReadableSpan]] = defaultdict(list)
    for span in held.spans:
        by_trace[trace_id(span)].append(span)
    assert len(by_trace) == stats.traces_admitted == 31 - stats.traces_shed
    assert set(by_trace) <= {r.trace_id for r in [warm, *results]}
    for spans in by_trace.values():  # each admitted trace whole: the run and its chat, nothing alone
        assert sorted(s.name for s in spans) == ["chat scripted", "invoke_agent shed-me"]
        run = one(spans, "invoke_agent shed-me")
        assert run.parent is None
        assert parent_id(one(spans, "chat scripted")) == span_id(run)


async def test_runs_of_an_agent_without_the_tracer_hold_no_root_span(
    provider: tuple[TracerProvider, InMemorySpanExporter, OtlpTracer],
) -> None:
    """The tracer starts the root span of every run with no parent in the process (it cannot tell whose
    run it is); an agent that does not have it as a plugin never sends it the start event."""
    _, memory, tracer = provider
    other = Agent("untraced", ScriptedModel(["ok"], per_run=True))
    for _ in range(50):
        assert (await other.run("hi")).status == "completed"
    assert held_roots("untraced") <= 1  # the last one, in this task's context, until the next run here
    await asyncio.gather(*(other.run("hi") for _ in range(50)))  # each in a task of its own
    await asyncio.sleep(0)  # the loop lets go of the gathering future (and its tasks) at its next step
    assert held_roots("untraced") <= 1  # none of the tasks' roots: they went with the tasks' contexts
    assert tracer.flush(5.0)
    assert memory.get_finished_spans() == ()
