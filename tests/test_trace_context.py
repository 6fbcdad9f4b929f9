"""A run joins the application's OpenTelemetry trace, and hands its context to what it calls (issue 17):
with the real OpenTelemetry SDK and no tracedagent plugin, so this is the core's own behaviour."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry import baggage, context, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from tracedagent import Agent, RunStarted, ToolCallStarted, tool
from tracedagent.testing import RecordingTracer, ScriptedModel, Step


@pytest.fixture
def app() -> tuple[trace.Tracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("the-app"), exporter


def seen_in_tool() -> tuple[list[dict[str, Any]], Any]:
    seen: list[dict[str, Any]] = []

    @tool
    def look() -> str:
        """Look around."""
        ctx = trace.get_current_span().get_span_context()
        seen.append(
            {
                "trace_id": f"{ctx.trace_id:032x}",
                "span_id": f"{ctx.span_id:016x}",
                "agent": baggage.get_baggage("gen_ai.agent.name"),
                "conversation": baggage.get_baggage("gen_ai.conversation.id"),
            }
        )
        return "a room"

    return seen, look


def one_call(name: str = "look") -> ScriptedModel:
    return ScriptedModel([Step(tool_calls=[(name, {})]), "Done."])


async def test_a_run_inside_an_application_span_is_its_child(
    tracer: RecordingTracer, app: tuple[trace.Tracer, InMemorySpanExporter]
) -> None:
    app_tracer, _ = app
    _, look = seen_in_tool()
    with app_tracer.start_as_current_span("POST /chat") as request:
        result = await Agent("desk", one_call(), tools=[look]).run("hi")
        assert trace.get_current_span() is request  # the run leaves the application's context as it was
    ids = request.get_span_context()
    (started,) = tracer.of_type(RunStarted)
    assert result.trace_id == started.trace_id == f"{ids.trace_id:032x}"
    assert started.parent_span_id == f"{ids.span_id:016x}"
    assert {e.trace_id for e in tracer.events} == {result.trace_id}


async def test_spans_opened_inside_a_tool_nest_under_the_tools_span_with_the_runs_baggage(
    tracer: RecordingTracer, app: tuple[trace.Tracer, InMemorySpanExporter]
) -> None:
    app_tracer, exporter = app
    seen, _ = seen_in_tool()

    @tool
    def query() -> str:
        """Query the database."""
        with app_tracer.start_as_current_span("SELECT"):
            seen.append({"agent": baggage.get_baggage("gen_ai.agent.name")})
        return "rows"

    result = await Agent("desk", one_call("query"), tools=[query]).run("hi", session_id="conv-7")
    (tool_span,) = tracer.of_type(ToolCallStarted)
    (select,) = [s for s in exporter.get_finished_spans() if s.name == "SELECT"]
    assert f"{select.context.trace_id:032x}" == result.trace_id
    assert select.parent is not None
    assert f"{select.parent.span_id:016x}" == tool_span.span_id
    assert seen == [{"agent": "desk"}]


async def test_a_tool_sees_its_span_and_the_agent_and_conversation_as_baggage(tracer: RecordingTracer) -> None:
    seen, look = seen_in_tool()
    result = await Agent("desk", one_call(), tools=[look]).run("hi", session_id="conv-1")
    (tool_span,) = tracer.of_type(ToolCallStarted)
    assert seen == [
        {"trace_id": result.trace_id, "span_id": tool_span.span_id, "agent": "desk", "conversation": "conv-1"}
    ]
    assert baggage.get_baggage("gen_ai.agent.name") is None  # only during the run


async def test_without_a_session_there_is_no_conversation_baggage(tracer: RecordingTracer) -> None:
    seen, look = seen_in_tool()
    await Agent("desk", one_call(), tools=[look]).run("hi")
    assert seen[0]["agent"] == "desk"
    assert seen[0]["conversation"] is None


@pytest.mark.parametrize("kind", ["invalid", "unsampled", "sdk-unsampled"])
async def test_a_current_span_that_cannot_be_joined_gives_a_new_trace(tracer: RecordingTracer, kind: str) -> None:
    if kind == "sdk-unsampled":
        span: Any = TracerProvider(sampler=ALWAYS_OFF).get_tracer("x").start_span("dropped")
    elif kind == "unsampled":
        span = NonRecordingSpan(SpanContext(0xABC, 0xDEF, False, TraceFlags(TraceFlags.DEFAULT)))
    else:
        span = trace.INVALID_SPAN
    token = context.attach(trace.set_span_in_context(span))
    try:
        result = await Agent("desk", ScriptedModel(["ok"])).run("hi")
    finally:
        context.detach(token)
    (started,) = tracer.of_type(RunStarted)
    assert result.status == "completed"
    assert started.parent_span_id is None
    assert result.trace_id != f"{0xABC:032x}"


async def test_a_run_inside_another_runs_tool_stays_the_tools_child(
    tracer: RecordingTracer, app: tuple[trace.Tracer, InMemorySpanExporter]
) -> None:
    app_tracer, _ = app
    inner = Agent("inner", ScriptedModel(["inner done"]))

    @tool
    async def delegate() -> str:
        """Ask the inner agent."""
        return (await inner.run("go")).output or ""

    with app_tracer.start_as_current_span("job"):
        outer = await Agent("outer", one_call("delegate"), tools=[delegate]).run("hi")
    (tool_span,) = tracer.of_type(ToolCallStarted)
    inner_start = next(e for e in tracer.of_type(RunStarted) if e.agent == "inner")
    assert inner_start.trace_id == outer.trace_id
    assert inner_start.parent_span_id == tool_span.span_id
