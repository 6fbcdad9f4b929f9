"""Through the application's own tracer provider (``OtlpTracer(tracer_provider=app_provider)`` or the
global one) the spans that are exported are the spans that are current while each stage runs, so:

* a span user code opens inside a tool is the child of the exported ``execute_tool`` span;
* a span a model's code opens (an instrumented HTTP client) is the child of the exported ``chat`` span;
* a run inside a tool (a sub-agent) is the child of the exported ``execute_tool`` span;
* a run inside an application span is its child, in its trace, and ``RunResult.trace_id`` is that trace;
* a run with no parent is a root whose exported trace id is ``RunResult.trace_id`` and every event's.

With the real OpenTelemetry SDK and an in-memory exporter on the application's provider."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from opentelemetry import trace as trace_api
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from otlp_support import answer, attrs, calls, one, parent_id, span_id, tool_results, trace_id

from tracedagent import Agent, Message, ModelRequest, RunResult, tool
from tracedagent.testing import FunctionModel, ScriptedModel, capture_events
from tracedagent_otlp import OtlpTracer
from tracedagent_otlp import names as N

HOW = ["tracer_provider=", "the global provider"]


@pytest.fixture(params=HOW)
def app(request: pytest.FixtureRequest) -> Iterator[tuple[TracerProvider, InMemorySpanExporter, OtlpTracer]]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    if request.param == "the global provider":
        trace_api.set_tracer_provider(provider)
        tracer = OtlpTracer(metrics=False, interval_s=0.05)
        assert tracer.destination == "the application's tracer provider"
    else:
        tracer = OtlpTracer(tracer_provider=provider, metrics=False, interval_s=0.05)
    yield provider, memory, tracer
    tracer.shutdown(5.0)


def app_tracer(provider: TracerProvider) -> trace_api.Tracer:
    return provider.get_tracer("the-app")


def agents(provider: TracerProvider, tracer: OtlpTracer) -> Agent:
    """``lead`` calls ``lookup`` (which opens a span) and ``delegate`` (which runs ``helper``); its model
    opens a span of its own in each call, as an instrumented HTTP client would."""
    user = app_tracer(provider)

    @tool
    def lookup(key: str) -> str:
        """Look a key up."""
        with user.start_as_current_span("SELECT"):
            return f"{key}=1"

    helper = Agent("helper", ScriptedModel(["helped"], per_run=True), plugins=[tracer])

    @tool
    async def delegate(task: str) -> str:
        """Hand a task to the helper agent."""
        return (await helper.run(task)).output or ""

    async def respond(messages: Sequence[Message], request: ModelRequest) -> Any:
        with user.start_as_current_span("POST /v1/chat/completions"):
            if tool_results(messages):
                return answer("done")
            return calls(("c1", "lookup", {"key": "k"}), ("c2", "delegate", {"task": "t"}))

    return Agent("lead", FunctionModel(respond), tools=[lookup, delegate], plugins=[tracer])


def check_nesting(spans: Sequence[ReadableSpan], result: RunResult) -> ReadableSpan:
    """Every span in the run's trace, each user span under the exported span current where it was made."""
    lead = one(spans, "invoke_agent lead")
    assert {trace_id(s) for s in spans if s.name != "request"} == {result.trace_id}
    assert parent_id(one(spans, "SELECT")) == span_id(one(spans, "execute_tool lookup"))
    assert parent_id(one(spans, "invoke_agent helper")) == span_id(one(spans, "execute_tool delegate"))
    chats = {span_id(s) for s in spans if s.name == "chat function"}
    http = [s for s in spans if s.name == "POST /v1/chat/completions"]
    assert len(chats) == len(http) == 2
    assert {parent_id(s) for s in http} == chats
    for name in ("execute_tool lookup", "execute_tool delegate", "chat function"):
        assert {parent_id(s) for s in spans if s.name == name} == {span_id(lead)}
    return lead


async def test_spans_made_inside_a_run_in_an_application_span_nest_under_the_exported_spans(
    app: tuple[TracerProvider, InMemorySpanExporter, OtlpTracer],
) -> None:
    provider, memory, tracer = app
    agent = agents(provider, tracer)
    with capture_events() as events, app_tracer(provider).start_as_current_span("request") as request:
        result = await agent.run("go")
    assert tracer.flush(5.0)
    spans = memory.get_finished_spans()
    lead = check_nesting(spans, result)
    ids = request.get_span_context()
    assert result.trace_id == f"{ids.trace_id:032x}"
    assert parent_id(lead) == f"{ids.span_id:016x}"
    assert lead.parent is not None
    assert not lead.parent.is_remote  # the application's span, as it was current: not a remote parent
    assert {e.trace_id for e in events.events} == {result.trace_id}


async def test_a_run_with_no_parent_is_exported_in_its_own_trace_id(
    app: tuple[TracerProvider, InMemorySpanExporter, OtlpTracer],
) -> None:
    provider, memory, tracer = app
    agent = agents(provider, tracer)
    assert not trace_api.get_current_span().get_span_context().is_valid
    with capture_events() as events:
        result = await agent.run("go")
    assert tracer.flush(5.0)
    spans = memory.get_finished_spans()
    lead = check_nesting(spans, result)
    assert lead.parent is None
    assert {e.trace_id for e in events.events} == {result.trace_id}
    # the trace id the provider gave the root is the run's own: no other trace id to look up
    assert not any(N.TD_TRACE_ID in attrs(s) for s in spans)
    (started,) = [e for e in events.events if e.hook == "on_run_start" and e.agent == "lead"]
    assert started.parent_span_id is None


async def test_after_the_run_the_context_is_the_applications_again(
    app: tuple[TracerProvider, InMemorySpanExporter, OtlpTracer],
) -> None:
    provider, _, tracer = app
    agent = agents(provider, tracer)
    with app_tracer(provider).start_as_current_span("request") as request:
        await agent.run("go")
        assert trace_api.get_current_span() is request
    assert not trace_api.get_current_span().get_span_context().is_valid


def test_a_start_hook_called_outside_a_stage_leaves_no_span_current(
    app: tuple[TracerProvider, InMemorySpanExporter, OtlpTracer],
) -> None:
    """The tool start hook makes the span current over the core's; called on its own (a test driving the
    hooks, an engine) its end hook puts the context back."""
    from tracedagent import ToolCallEnded, ToolCallStarted

    _, _, tracer = app
    head: dict[str, Any] = {"run_id": "r", "trace_id": "ab" * 16, "agent": "a", "span_id": "cd" * 8}
    tracer.on_tool_call_start(ToolCallStarted(**head, parent_span_id=None, timestamp_ns=1, tool="t", call_id="c"))
    assert trace_api.get_current_span().get_span_context().is_valid
    tracer.on_tool_call_end(ToolCallEnded(**head, parent_span_id=None, timestamp_ns=2, tool="t", call_id="c"))
    assert not trace_api.get_current_span().get_span_context().is_valid
