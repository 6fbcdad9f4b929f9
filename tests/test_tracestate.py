"""The W3C ``tracestate`` of the trace a run joins goes with the run (issue 17; issue 19, point 4): from an
application's OpenTelemetry span or a served request's header, into the span the stages make current and
model HTTP requests (the loopback OpenAI-compatible server), and across a checkpoint and resume. Without
one, nothing extra is sent. (MCP requests: tests/test_mcp_tracestate.py.) The real OpenTelemetry SDK, no
tracedagent plugin: the core's own behaviour."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState
from serve_server import uvicorn_server
from wire_server import Reply, WireServer, wire_server

from tracedagent import Agent, Checkpoint, Message, ModelCallStarted, SQLiteCheckpointStore, ToolCallEnded, tool
from tracedagent.models import OpenAIChatModel
from tracedagent.serve import asgi_app
from tracedagent.serve._tap import parent_from, tracestate_from
from tracedagent.testing import RecordingTracer

TRANSCRIPTS = Path(__file__).parent / "transcripts" / "openai"
CALLER_TRACE = 0x0AF7651916CD43DD8448EB211C80319C
CALLER_SPAN = 0xB7AD6B7169203331
STATE = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"


def sse(name: str) -> Reply:
    text = (TRANSCRIPTS / name).read_text(encoding="utf-8")
    return Reply(chunks=[block + "\n\n" for block in text.split("\n\n") if block])


@pytest.fixture
def app() -> tuple[trace.Tracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("the-app"), exporter


def incoming(tracestate: str | None = STATE) -> Any:
    """The context of a request that came in with ``traceparent`` and ``tracestate``: what an
    instrumented web framework makes the parent of its request span."""
    state = TraceState.from_header([tracestate]) if tracestate else None
    caller = NonRecordingSpan(SpanContext(CALLER_TRACE, CALLER_SPAN, True, TraceFlags(TraceFlags.SAMPLED), state))
    return trace.set_span_in_context(caller)


@pytest.fixture
def server() -> Iterator[WireServer]:
    with wire_server() as s:
        yield s


@pytest.fixture
async def model(server: WireServer) -> AsyncIterator[OpenAIChatModel]:
    m = OpenAIChatModel("gpt-4o-mini", base_url=f"{server.url}/v1", api_key="sk-test", retry_initial_delay=0.001)
    yield m
    await m.aclose()


def seen_here(seen: list[tuple[str, str]]) -> None:
    """What instrumentation inside a tool sees: the current span's id and tracestate."""
    ctx = trace.get_current_span().get_span_context()
    seen.append((f"{ctx.span_id:016x}", ctx.trace_state.to_header()))


# ------------------------------------------------------------------------- an application's span


async def test_a_run_in_a_span_with_tracestate_sends_it_to_the_model_and_inside_its_stages(
    tracer: RecordingTracer, app: tuple[trace.Tracer, InMemorySpanExporter], server: WireServer, model: OpenAIChatModel
) -> None:
    app_tracer, _ = app
    seen_in_tool: list[tuple[str, str]] = []
    server.queue(sse("tool_calls.sse"), sse("tool_answer.sse"))

    @tool
    def get_weather(city: str) -> str:
        """The weather."""
        seen_here(seen_in_tool)
        return "sunny"

    with app_tracer.start_as_current_span("POST /chat", context=incoming()) as request:
        assert request.get_span_context().trace_state.to_header() == STATE  # the SDK carries it to the child
        result = await Agent("desk", model, tools=[get_weather]).run("weather?")
    assert result.trace_id == f"{CALLER_TRACE:032x}"
    starts = tracer.of_type(ModelCallStarted)
    assert [r.headers.get("tracestate") for r in server.requests] == [STATE, STATE]
    assert [r.headers["traceparent"] for r in server.requests] == [f"00-{s.trace_id}-{s.span_id}-01" for s in starts]
    # The non-recording span each tool's stage makes current carries it, for what opens inside.
    tool_spans = {e.span_id for e in tracer.of_type(ToolCallEnded)}
    assert {span for span, _ in seen_in_tool} == tool_spans
    assert {state for _, state in seen_in_tool} == {STATE}


async def test_without_tracestate_no_header_is_sent(
    app: tuple[trace.Tracer, InMemorySpanExporter], server: WireServer, model: OpenAIChatModel
) -> None:
    app_tracer, _ = app
    server.queue(sse("text.sse"), sse("text.sse"))
    with app_tracer.start_as_current_span("POST /chat", context=incoming(None)):
        await Agent("desk", model).run("hi")
    await Agent("desk", model).run("hi")  # and with no parent at all
    assert [("tracestate" in r.headers, "traceparent" in r.headers) for r in server.requests] == [(False, True)] * 2


async def test_the_tracestate_survives_a_checkpoint_and_a_resume_elsewhere(
    app: tuple[trace.Tracer, InMemorySpanExporter], server: WireServer, model: OpenAIChatModel, tmp_path: Path
) -> None:
    app_tracer, _ = app
    store = SQLiteCheckpointStore(tmp_path / "runs.db")

    @tool(needs_approval=True)
    def get_weather(city: str) -> str:
        """The weather."""
        return "sunny"

    server.queue(sse("tool_calls.sse"), sse("tool_answer.sse"))
    with app_tracer.start_as_current_span("POST /chat", context=incoming()):
        paused = await Agent("desk", model, tools=[get_weather], checkpoints=store).run("weather?")
    assert paused.status == "interrupted"
    saved = await store.load(paused.run_id)
    assert saved is not None
    assert saved.tracestate == STATE
    # Resumed by another agent object (another process would read the same record), outside any span.
    other = Agent("desk", model, tools=[get_weather], checkpoints=store)
    resumed = await other.resume(paused.run_id, {p.id: True for p in paused.interruptions})
    assert resumed.status == "completed"
    assert [r.headers.get("tracestate") for r in server.requests] == [STATE, STATE]


def test_a_record_written_before_tracestate_was_kept_still_resumes() -> None:
    state = Checkpoint("r1", "ab" * 16, "desk", messages=[Message.user("hi")], tracestate=STATE)
    assert Checkpoint.decode("r1", state.encode()).tracestate == STATE
    record = json.loads(state.encode())
    del record["tracestate"]
    assert Checkpoint.decode("r1", json.dumps(record).encode()).tracestate is None


# --------------------------------------------------------------------------------- a served request


def test_a_served_request_keeps_the_callers_tracestate_for_the_run(server: WireServer) -> None:
    server.queue(sse("text.sse"), sse("text.sse"))
    model = OpenAIChatModel("gpt-4o-mini", base_url=f"{server.url}/v1", api_key="sk-test")
    traceparent = f"00-{CALLER_TRACE:032x}-{CALLER_SPAN:016x}-01"
    with uvicorn_server(asgi_app(Agent("desk", model))) as running:
        # Two tracestate headers are one list (W3C): joined in order.
        headers = [("traceparent", traceparent), ("tracestate", "congo=t61rcWkgMzE"), ("tracestate", "rojo=1")]
        r = httpx.post(running.url + "/v1/runs", json={"input": "hi"}, headers=headers)
        assert r.status_code == 200, r.text
        bad = [("traceparent", traceparent), ("tracestate", "Not A=Valid,,member")]
        r = httpx.post(running.url + "/v1/runs", json={"input": "hi"}, headers=bad)
        assert r.status_code == 200, r.text
    first, second = server.requests
    assert first.headers["traceparent"].split("-")[1] == f"{CALLER_TRACE:032x}"
    assert first.headers["tracestate"] == "congo=t61rcWkgMzE,rojo=1"
    assert "tracestate" not in second.headers  # an invalid tracestate is not propagated


@pytest.mark.parametrize(
    ("header", "kept"),
    [
        (None, None),
        ("", None),
        (" ,  ", None),
        ("congo=t61rcWkgMzE", "congo=t61rcWkgMzE"),
        (" congo=1 ,, rojo=00f067aa0ba902b7\t", "congo=1,rojo=00f067aa0ba902b7"),
        ("tenant@vendor=x", "tenant@vendor=x"),
        ("Upper=1", None),
        ("a=1,a=2", None),
        ("a=", None),
        ("a=b=c", None),
        (",".join(f"k{i}=v" for i in range(33)), None),
    ],
)
def test_tracestate_headers_are_validated(header: str | None, kept: str | None) -> None:
    assert tracestate_from(header) == kept
    parent = parent_from(f"00-{CALLER_TRACE:032x}-{CALLER_SPAN:016x}-01", header)
    assert parent is not None
    assert parent.tracestate == kept
    assert parent_from("garbage", header) is None
