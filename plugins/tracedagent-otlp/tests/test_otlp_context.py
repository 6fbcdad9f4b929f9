"""Trace context flows both ways: spans user code opens with the OpenTelemetry API nest under the
core's spans (async, sync-in-a-thread and concurrent tools, a model), the ``traceparent`` a model
request sends names the exported chat span, and the application's tracer provider gets the spans
through its own processors. The export itself is never traced."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace as trace_api
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased
from otlp_support import MakeTracer, answer, attrs, by_id, calls, named, one, parent_id, span_id, tool_results, trace_id

import tracedagent
from tracedagent import Agent, Message, ModelRequest, RetryScheduled, tool
from tracedagent.models import OpenAIChatModel
from tracedagent.testing import FunctionModel, ScriptedModel, Step, capture_events
from tracedagent_otlp import OtlpTracer
from tracedagent_otlp import names as N

ROOT_TESTS = Path(__file__).resolve().parents[3] / "tests"
sys.path.insert(0, str(ROOT_TESTS))
from wire_server import Reply, WireServer, wire_server  # noqa: E402


def user_tracer() -> trace_api.Tracer:
    # Looked up at each use: every test sets a global provider of its own.
    return trace_api.get_tracer("user.code")


@tool
async def async_tool(label: str) -> str:
    """Opens a span of its own, across an await."""
    with user_tracer().start_as_current_span(f"user {label}"):
        await asyncio.sleep(0.01)
        with user_tracer().start_as_current_span(f"user {label} inner"):
            await asyncio.sleep(0)
    return label


@tool
def sync_tool(label: str) -> str:
    """Runs in a worker thread and opens a span there."""
    with user_tracer().start_as_current_span(f"user {label}"):
        assert threading.current_thread() is not threading.main_thread()
    return label


def two_turn_model(*items: tuple[str, str, dict[str, Any]]) -> FunctionModel:
    def respond(messages: Sequence[Message], request: ModelRequest) -> Any:
        return calls(*items) if not tool_results(messages) else answer("done")

    return FunctionModel(respond)


def nested_under_tools(app_spans: Sequence[ReadableSpan], our_spans: Sequence[ReadableSpan]) -> dict[str, str]:
    """user span name -> the ``gen_ai.tool.call.id`` of the execute_tool span it nests under."""
    tools = {span_id(s): s for s in named(our_spans, "execute_tool")}
    found = {}
    for span in app_spans:
        if span.name.startswith("user ") and not span.name.endswith("inner"):
            found[span.name] = attrs(tools[parent_id(span) or ""])[N.GEN_AI_TOOL_CALL_ID]
    return found


async def test_a_user_span_in_an_async_tool_nests_under_its_execute_tool_span(
    app_provider: tuple[TracerProvider, InMemorySpanExporter], make_tracer: MakeTracer
) -> None:
    _, app_exporter = app_provider
    tracer, exporter = make_tracer()
    agent = Agent("a", two_turn_model(("c1", "async_tool", {"label": "one"})), tools=[async_tool], plugins=[tracer])
    result = await agent.run("go")
    assert tracer.flush(5.0)
    ours = exporter.get_finished_spans()
    user_spans = app_exporter.get_finished_spans()
    assert nested_under_tools(user_spans, ours) == {"user one": "c1"}
    outer = one(user_spans, "user one")
    assert parent_id(one(user_spans, "user one inner")) == span_id(outer)
    assert {trace_id(s) for s in user_spans} == {result.trace_id}
    # After the run nothing of the run is current any more.
    assert not trace_api.get_current_span().get_span_context().is_valid


async def test_a_user_span_in_a_sync_tool_run_in_a_thread_nests_under_its_execute_tool_span(
    app_provider: tuple[TracerProvider, InMemorySpanExporter], make_tracer: MakeTracer
) -> None:
    _, app_exporter = app_provider
    tracer, exporter = make_tracer()
    agent = Agent("a", two_turn_model(("c1", "sync_tool", {"label": "s"})), tools=[sync_tool], plugins=[tracer])
    await agent.run("go")
    assert tracer.flush(5.0)
    assert nested_under_tools(app_exporter.get_finished_spans(), exporter.get_finished_spans()) == {"user s": "c1"}


async def test_user_spans_in_concurrent_tools_each_nest_under_their_own_tool_span(
    app_provider: tuple[TracerProvider, InMemorySpanExporter], make_tracer: MakeTracer
) -> None:
    _, app_exporter = app_provider
    tracer, exporter = make_tracer()
    items = [(f"a{i}", "async_tool", {"label": f"a{i}"}) for i in range(4)]
    items += [(f"s{i}", "sync_tool", {"label": f"s{i}"}) for i in range(4)]
    agent = Agent("a", two_turn_model(*items), tools=[async_tool, sync_tool], plugins=[tracer])
    await asyncio.gather(agent.run("go"), agent.run("go again"))
    assert tracer.flush(5.0)
    ours = exporter.get_finished_spans()
    user_spans = app_exporter.get_finished_spans()
    assert len(named(user_spans, "user")) == 2 * (8 + 4)  # 8 outer, 4 inner per run
    tools = by_id(named(ours, "execute_tool"))
    for span in named(user_spans, "user"):
        if span.name.endswith("inner"):
            continue
        tool_span = tools[parent_id(span) or ""]
        label = span.name.removeprefix("user ")
        assert attrs(tool_span)[N.GEN_AI_TOOL_CALL_ID] == label
        assert trace_id(span) == trace_id(tool_span)


async def test_a_span_opened_by_a_model_nests_under_its_chat_span(
    app_provider: tuple[TracerProvider, InMemorySpanExporter], make_tracer: MakeTracer
) -> None:
    _, app_exporter = app_provider
    tracer, exporter = make_tracer()

    async def respond(messages: Sequence[Message], request: ModelRequest) -> str:
        with user_tracer().start_as_current_span("user model client"):
            await asyncio.sleep(0)
        return "hi"

    await Agent("a", FunctionModel(respond, name="m"), plugins=[tracer]).run("go")
    assert tracer.flush(5.0)
    chat = one(exporter.get_finished_spans(), "chat m")
    assert parent_id(one(app_exporter.get_finished_spans(), "user model client")) == span_id(chat)


# ----------------------------------------------------------------------------------- traceparent


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


def _sse(name: str) -> Reply:
    text = (ROOT_TESTS / "transcripts" / "openai" / name).read_text(encoding="utf-8")
    return Reply(chunks=[block + "\n\n" for block in text.split("\n\n") if block])


async def test_the_traceparent_a_model_request_sends_is_the_exported_chat_span(
    server: WireServer, openai_model: OpenAIChatModel, make_tracer: MakeTracer
) -> None:
    tracer, exporter = make_tracer()
    server.queue(Reply.json(503, {"error": {"message": "busy"}}), _sse("text.sse"))
    with capture_events() as events:
        await Agent("a", openai_model, plugins=[tracer]).run("hello")
    assert tracer.flush(5.0)
    chat = one(exporter.get_finished_spans(), "chat gpt-4o-mini")
    expected = f"00-{trace_id(chat)}-{span_id(chat)}-01"
    assert [r.headers["traceparent"] for r in server.requests] == [expected, expected]
    assert attrs(chat)[N.GEN_AI_RESPONSE_MODEL] == "gpt-4o-mini-2024-07-18"
    assert attrs(chat)[N.GEN_AI_PROVIDER_NAME] == "openai"
    # The retry of the first (503) attempt is an event of the same span.
    assert [e.name for e in chat.events] == [N.EVENT_RETRY]
    assert events.of_type(RetryScheduled)[0].span_id == span_id(chat)


# -------------------------------------------------------------------- the application's provider


class _Watch(SpanProcessor):
    """An application's processor that sees every span start and end, and the context it ran in."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.ended: list[str] = []

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.started.append(span.name)

    def on_end(self, span: ReadableSpan) -> None:
        self.ended.append(span.name)


async def test_the_application_provider_gets_the_spans_through_its_processors_with_its_own_ids(
    app_provider: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """The provider picks the span ids (nothing is set on it); the tree is the core's, each span carries
    the core's span id, and a span made inside a tool is the child of the exported tool span."""
    provider, app_exporter = app_provider
    watch = _Watch()
    provider.add_span_processor(watch)
    tracer = OtlpTracer(interval_s=0.05)
    try:
        assert tracer.destination == "the application's tracer provider"
        model = ScriptedModel([Step(tool_calls=[("async_tool", {"label": "x"})]), "ok"])
        with capture_events() as events:
            await Agent("a", model, tools=[async_tool], plugins=[tracer]).run("go")
        assert tracer.flush(5.0)
    finally:
        tracer.shutdown(5.0)
    spans = app_exporter.get_finished_spans()
    ours = [s for s in spans if not s.name.startswith("user")]
    assert sorted(s.name for s in ours) == [
        "chat scripted",
        "chat scripted",
        "execute_tool async_tool",
        "invoke_agent a",
    ]
    assert sorted(watch.started) == sorted(watch.ended) == sorted(s.name for s in spans)
    ends = {e.span_id: e for e in events.events if e.hook.endswith("_end")}
    core_ids = {attrs(s)[N.TD_SPAN_ID]: s for s in ours}
    assert set(core_ids) == set(ends)
    # the core's tree, in the provider's ids
    for core_id, span in core_ids.items():
        parent = ends[core_id].parent_span_id
        assert parent_id(span) == (None if parent is None else span_id(core_ids[parent]))
    assert len({trace_id(s) for s in ours}) == 1
    # a span opened in the tool is the child of the exported tool span (the one current in the tool)
    (user,) = [s for s in spans if s.name == "user x"]
    assert parent_id(user) == span_id(one(ours, "execute_tool async_tool"))


async def test_the_application_sampler_decides() -> None:
    app_exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_OFF, shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(app_exporter))
    tracer = OtlpTracer(tracer_provider=provider, interval_s=0.05)
    try:
        await Agent("a", ScriptedModel(["ok"]), plugins=[tracer]).run("go")
        assert tracer.flush(5.0)
    finally:
        tracer.shutdown(5.0)
    assert app_exporter.get_finished_spans() == ()


# ---------------------------------------------------------------------- the export is not traced


class _Spy(SpanExporter):
    """Records, for each export, whether OpenTelemetry instrumentation is suppressed on that thread."""

    def __init__(self) -> None:
        self.seen: list[tuple[bool, bool, str]] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        suppressed = bool(otel_context.get_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY))
        self.seen.append((suppressed, tracedagent.is_exporting(), threading.current_thread().name))
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


async def test_the_exporter_runs_on_the_worker_with_instrumentation_suppressed(make_tracer: MakeTracer) -> None:
    spy = _Spy()
    tracer, _ = make_tracer(span_exporter=spy)
    await Agent("a", ScriptedModel(["ok"]), plugins=[tracer]).run("go")
    assert tracer.flush(5.0)
    assert spy.seen
    assert {seen[:2] for seen in spy.seen} == {(True, True)}
    # on the exporter's own thread: retries and a slow collector never hold the worker building spans
    assert {seen[2] for seen in spy.seen} == {"tracedagent-otlp-sender"}
    assert not otel_context.get_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY)


def test_the_context_inside_a_tool_comes_from_the_core_with_or_without_this_tracer(
    app_provider: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """The plugin no longer bridges contexts in its hooks: the core makes each stage's span current for
    OpenTelemetry (tests/test_trace_context.py), so a user span nests under the tool's span with no
    OTLP tracer at all."""
    _, app_exporter = app_provider
    agent = Agent("a", two_turn_model(("c1", "sync_tool", {"label": "s"})), tools=[sync_tool])
    result = agent.run_sync("go")
    (user,) = app_exporter.get_finished_spans()
    assert trace_id(user) == result.trace_id
    assert user.parent is not None


async def test_a_sampled_out_trace_is_dropped_whole_by_a_parent_based_ratio_sampler() -> None:
    app_exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.5)), shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(app_exporter))
    tracer = OtlpTracer(tracer_provider=provider, interval_s=0.05)
    try:
        agent = Agent("a", two_turn_model(("c1", "async_tool", {"label": "x"})), tools=[async_tool], plugins=[tracer])
        results = await asyncio.gather(*(agent.run(f"q{i}") for i in range(24)))
        assert tracer.flush(5.0)
    finally:
        tracer.shutdown(5.0)
    kept: dict[str, list[str]] = {}
    for span in app_exporter.get_finished_spans():
        if not span.name.startswith("user"):
            kept.setdefault(trace_id(span), []).append(span.name.split(" ")[0])
    assert 0 < len(kept) < len(results)  # 2 * 0.5**24 odds of failing by chance
    for names in kept.values():
        assert sorted(names) == ["chat", "chat", "execute_tool", "invoke_agent"]


def test_spans_reach_an_application_provider_that_shuts_down_at_exit() -> None:
    # The provider is made after tracedagent was imported, so its exit handler runs before tracedagent's;
    # the tracer hands over its last spans before that.
    code = """if True:
        import tracedagent
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

        class Print(SpanExporter):
            stopped = False
            def export(self, spans):
                if not self.stopped:
                    print(*(s.name for s in spans), sep="\\n", flush=True)
                return SpanExportResult.SUCCESS
            def shutdown(self):
                self.stopped = True

        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(Print()))
        trace.set_tracer_provider(provider)
        from tracedagent.testing import ScriptedModel
        tracedagent.Agent("exiting", ScriptedModel(["ok"])).run_sync("go")
    """
    env = {**os.environ, "TRACEDAGENT_PLUGINS": "otlp", "TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD": "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.split()) == ["chat", "exiting", "invoke_agent", "scripted"]
