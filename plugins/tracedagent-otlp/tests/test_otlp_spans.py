"""The spans of a run: names, kinds, parents, the core's own ids and times, attributes, span events,
status and links, exported through the SDK to an in-memory exporter."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode
from otlp_support import (
    MakeTracer,
    answer,
    attrs,
    by_id,
    calls,
    event_names,
    named,
    one,
    parent_id,
    span_id,
    tool_results,
    trace_id,
)

from tracedagent import (
    Agent,
    DropOldest,
    InMemoryCheckpointStore,
    Message,
    ModelCallEnded,
    ModelError,
    ModelRequest,
    RunEnded,
    RunResumed,
    RunStarted,
    ToolCallEnded,
    ToolCallStarted,
    Usage,
    hookimpl,
    tool,
)
from tracedagent.resilience import CircuitBreaker, RetryPolicy
from tracedagent.testing import FunctionModel, ScriptedModel, Step, capture_events
from tracedagent_otlp import names as N


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


def calc_model() -> ScriptedModel:
    return ScriptedModel([Step(tool_calls=[("add", {"a": 1, "b": 2})]), "It is 3."])


async def test_a_run_is_an_invoke_agent_span_with_chat_and_execute_tool_children(make_tracer: MakeTracer) -> None:
    tracer, exporter = make_tracer()
    result = await Agent("calc", calc_model(), tools=[add], plugins=[tracer]).run("1 + 2?")
    assert tracer.flush(5.0)
    spans = exporter.get_finished_spans()
    assert sorted(s.name for s in spans) == ["chat scripted", "chat scripted", "execute_tool add", "invoke_agent calc"]
    run = one(spans, "invoke_agent calc")
    tool_span = one(spans, "execute_tool add")
    assert run.kind is SpanKind.INTERNAL
    assert parent_id(run) is None
    assert tool_span.kind is SpanKind.INTERNAL
    for chat in named(spans, "chat"):
        assert chat.kind is SpanKind.CLIENT
    for child in [*named(spans, "chat"), tool_span]:
        assert parent_id(child) == span_id(run)
    assert {trace_id(s) for s in spans} == {result.trace_id}
    assert run.instrumentation_scope is not None
    assert run.instrumentation_scope.name == N.SCOPE_NAME
    assert run.instrumentation_scope.schema_url == N.SCHEMA_URL


async def test_exported_spans_carry_the_core_events_ids_and_timestamps(make_tracer: MakeTracer) -> None:
    tracer, exporter = make_tracer()
    with capture_events() as events:
        await Agent("calc", calc_model(), tools=[add], plugins=[tracer]).run("1 + 2?")
    assert tracer.flush(5.0)
    spans = by_id(exporter.get_finished_spans())
    starts = {e.span_id: e for e in events.events if e.hook.endswith("_start")}
    ends = [e for e in events.events if e.hook.endswith("_end")]
    assert len(ends) == len(spans) == 4
    for end in ends:
        span = spans[end.span_id]
        assert trace_id(span) == end.trace_id
        assert parent_id(span) == end.parent_span_id
        assert span.start_time == starts[end.span_id].timestamp_ns
        assert span.end_time == end.timestamp_ns


async def test_model_call_attributes_follow_the_genai_conventions(make_tracer: MakeTracer) -> None:
    usage = Usage(120, 30, cache_read_tokens=100, reasoning_tokens=12, requests=1)
    model = FunctionModel(lambda m, r: answer("hi", usage, "stop", "gpt-x-2025-01-01"), name="gpt-x", provider="openai")
    tracer, exporter = make_tracer()
    result = await Agent("greeter", model, plugins=[tracer]).run("hello")
    assert tracer.flush(5.0)
    chat = one(exporter.get_finished_spans(), "chat gpt-x")
    a = attrs(chat)
    assert a[N.GEN_AI_OPERATION_NAME] == "chat"
    assert a[N.GEN_AI_PROVIDER_NAME] == "openai"
    assert a[N.GEN_AI_REQUEST_MODEL] == "gpt-x"
    assert a[N.GEN_AI_RESPONSE_MODEL] == "gpt-x-2025-01-01"
    assert a[N.GEN_AI_USAGE_INPUT_TOKENS] == 120
    assert a[N.GEN_AI_USAGE_OUTPUT_TOKENS] == 30
    assert a[N.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 100
    assert a[N.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] == 12
    assert a[N.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)
    assert a[N.GEN_AI_CONVERSATION_ID] == result.run_id
    assert a[N.OPENINFERENCE_SPAN_KIND] == "LLM"
    assert a[N.OI_LLM_TOKEN_COUNT_TOTAL] == 150
    assert N.GEN_AI_USAGE_COST not in a  # genai-prices has no price for gpt-x
    assert N.ERROR_TYPE not in a
    assert chat.status.status_code is StatusCode.UNSET
    run = attrs(one(exporter.get_finished_spans(), "invoke_agent greeter"))
    assert run[N.GEN_AI_OPERATION_NAME] == "invoke_agent"
    assert run[N.GEN_AI_AGENT_NAME] == "greeter"
    assert run[N.GEN_AI_CONVERSATION_ID] == result.run_id
    assert run[N.GEN_AI_PROVIDER_NAME] == "openai"
    assert run[N.GEN_AI_REQUEST_MODEL] == "gpt-x"
    assert run[N.OPENINFERENCE_SPAN_KIND] == "AGENT"
    # The run's totals under names of its own: a backend adding up a trace's gen_ai usage counts each call once.
    assert N.GEN_AI_USAGE_INPUT_TOKENS not in run
    assert (run[N.TD_USAGE_INPUT_TOKENS], run[N.TD_USAGE_OUTPUT_TOKENS], run[N.TD_USAGE_REQUESTS]) == (120, 30, 1)


async def test_tool_call_attributes(make_tracer: MakeTracer) -> None:
    tracer, exporter = make_tracer()
    model = ScriptedModel([Step(tool_calls=[{"id": "call-7", "name": "add", "arguments": {"a": 1, "b": 2}}]), "3"])
    await Agent("calc", model, tools=[add], plugins=[tracer]).run("1 + 2?")
    assert tracer.flush(5.0)
    a = attrs(one(exporter.get_finished_spans(), "execute_tool add"))
    assert a[N.GEN_AI_OPERATION_NAME] == "execute_tool"
    assert a[N.GEN_AI_TOOL_NAME] == "add"
    assert a[N.GEN_AI_TOOL_CALL_ID] == "call-7"
    assert a[N.OPENINFERENCE_SPAN_KIND] == "TOOL"
    assert a[N.TD_STATUS] == "ok"


async def test_a_sub_agent_run_in_a_tool_nests_under_that_tool_span(make_tracer: MakeTracer) -> None:
    tracer, exporter = make_tracer()
    inner = Agent("researcher", ScriptedModel(["found it"], per_run=True), plugins=[tracer])

    @tool
    async def research(topic: str) -> str:
        """Ask the researcher."""
        return (await inner.run(topic)).output or ""

    outer = Agent(
        "lead",
        ScriptedModel([Step(tool_calls=[("research", {"topic": "otters"})]), "done"]),
        tools=[research],
        plugins=[tracer],
    )
    result = await outer.run("go")
    assert tracer.flush(5.0)
    spans = exporter.get_finished_spans()
    tool_span = one(spans, "execute_tool research")
    sub = one(spans, "invoke_agent researcher")
    assert parent_id(sub) == span_id(tool_span)
    assert trace_id(sub) == result.trace_id
    assert parent_id(one(spans, "invoke_agent lead")) is None
    sub_chat = [s for s in named(spans, "chat") if parent_id(s) == span_id(sub)]
    assert len(sub_chat) == 1


async def test_a_failing_tool_is_an_error_with_its_type_and_no_message_without_content(make_tracer: MakeTracer) -> None:
    tracer, exporter = make_tracer()
    model = ScriptedModel([Step(tool_calls=[("broken", {"x": 4})]), "sorry"])
    await Agent("a", model, tools=[broken], plugins=[tracer]).run("go")
    assert tracer.flush(5.0)
    spans = exporter.get_finished_spans()
    failed = one(spans, "execute_tool broken")
    assert failed.status.status_code is StatusCode.ERROR
    assert attrs(failed)[N.ERROR_TYPE] == "ValueError"
    assert attrs(failed)[N.TD_STATUS] == "error"
    assert "cannot handle" not in (failed.status.description or "")
    # The model was told and answered: the run itself did not fail.
    assert one(spans, "invoke_agent a").status.status_code is StatusCode.UNSET


async def test_a_failing_model_fails_the_chat_span_and_the_run(make_tracer: MakeTracer) -> None:
    tracer, exporter = make_tracer()
    model = ScriptedModel([Step(error=ModelError("upstream said no"))])
    with pytest.raises(ModelError):
        await Agent("a", model, plugins=[tracer]).run("go")
    assert tracer.flush(5.0)
    spans = exporter.get_finished_spans()
    for span in (one(spans, "chat scripted"), one(spans, "invoke_agent a")):
        assert span.status.status_code is StatusCode.ERROR
        assert attrs(span)[N.ERROR_TYPE] == "ModelError"
    assert attrs(one(spans, "invoke_agent a"))[N.TD_STATUS] == "failed"


async def test_a_cancelled_run_is_not_an_error_and_says_it_was_cancelled(make_tracer: MakeTracer) -> None:
    tracer, exporter = make_tracer()
    reached = asyncio.Event()

    @tool
    async def wait_forever() -> str:
        """Never returns."""
        reached.set()
        await asyncio.Event().wait()
        return ""

    agent = Agent("a", ScriptedModel([Step(tool_calls=[("wait_forever", {})])]), tools=[wait_forever], plugins=[tracer])
    task = asyncio.create_task(agent.run("go"))
    async with asyncio.timeout(5.0):
        await reached.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert tracer.flush(5.0)
    spans = exporter.get_finished_spans()
    for span in (one(spans, "execute_tool wait_forever"), one(spans, "invoke_agent a")):
        assert span.status.status_code is StatusCode.UNSET
        assert attrs(span)[N.TD_CANCELLED] is True
        assert N.ERROR_TYPE not in attrs(span)


class _Deny:
    @hookimpl
    def approve_tool_call(self) -> str:
        return "deny"


async def test_a_denied_tool_call_is_not_an_error(make_tracer: MakeTracer) -> None:
    tracer, exporter = make_tracer()
    model = ScriptedModel([Step(tool_calls=[("transfer", {"amount": 5})]), "not allowed"])
    await Agent("bank", model, tools=[transfer], plugins=[tracer, _Deny()]).run("move 5")
    assert tracer.flush(5.0)
    span = one(exporter.get_finished_spans(), "execute_tool transfer")
    assert span.status.status_code is StatusCode.UNSET
    assert attrs(span)[N.TD_STATUS] == "denied"
    assert N.ERROR_TYPE not in attrs(span)


async def test_an_interrupted_run_resumes_in_the_same_trace_linked_to_the_paused_segment(
    make_tracer: MakeTracer,
) -> None:
    tracer, exporter = make_tracer()
    model = ScriptedModel([Step(tool_calls=[{"id": "t1", "name": "transfer", "arguments": {"amount": 5}}]), "moved"])
    agent = Agent("bank", model, tools=[transfer], plugins=[tracer])
    with capture_events() as events:
        paused = await agent.run("move 5")
        assert paused.status == "interrupted"
        done = await agent.resume(paused.run_id, {"t1": True})
    assert done.status == "completed"
    assert done.trace_id == paused.trace_id
    assert tracer.flush(5.0)
    spans = exporter.get_finished_spans()
    segments = named(spans, "invoke_agent bank")
    assert len(segments) == 2
    first, second = sorted(segments, key=lambda s: s.start_time or 0)
    assert {trace_id(first), trace_id(second)} == {paused.trace_id}
    # The paused segment: not an error, says why it stopped, and carries the interrupt as a span event.
    assert first.status.status_code is StatusCode.UNSET
    assert attrs(first)[N.TD_STATUS] == "interrupted"
    interrupt = next(e for e in first.events if e.name == N.EVENT_INTERRUPT)
    assert dict(interrupt.attributes or {})[N.TD_INTERRUPTION_TOOLS] == ("transfer",)
    # The resumed segment: the resume event's span, linked to the paused one.
    resumed = events.of_type(RunResumed)[0]
    assert span_id(second) == resumed.span_id
    assert attrs(second)[N.TD_RESUMED] is True
    assert [f"{link.context.span_id:016x}" for link in second.links] == [span_id(first)]
    assert [f"{link.context.trace_id:032x}" for link in second.links] == [paused.trace_id]
    assert N.EVENT_RESUME in event_names(second)
    assert attrs(second)[N.GEN_AI_REQUEST_MODEL] == "scripted"  # remembered from the run's start
    assert parent_id(one(spans, "execute_tool transfer")) == span_id(second)


async def test_compaction_and_checkpoints_are_span_events_of_the_run_segment(make_tracer: MakeTracer) -> None:
    tracer, exporter = make_tracer()
    history = [Message.user("earlier question " * 40), Message.assistant("earlier answer " * 40)] * 3
    agent = Agent(
        "a",
        ScriptedModel(["ok"]),
        compaction=DropOldest(max_tokens=120),
        checkpoints=InMemoryCheckpointStore(),
        checkpoint_every="step",
        plugins=[tracer],
    )
    await agent.run("now", messages=history)
    assert tracer.flush(5.0)
    run = one(exporter.get_finished_spans(), "invoke_agent a")
    names = event_names(run)
    assert N.EVENT_COMPACTION in names
    assert N.EVENT_CHECKPOINT in names
    compaction = dict(next(e for e in run.events if e.name == N.EVENT_COMPACTION).attributes or {})
    assert compaction[N.TD_STRATEGY] == "drop_oldest"
    assert compaction[N.TD_TOKENS_AFTER] < compaction[N.TD_TOKENS_BEFORE]
    checkpoint = dict(next(e for e in run.events if e.name == N.EVENT_CHECKPOINT).attributes or {})
    assert checkpoint[N.TD_CHECKPOINT_BYTES] > 0


async def test_breaker_changes_and_retries_are_span_events_of_the_tool_span(make_tracer: MakeTracer) -> None:
    tracer, exporter = make_tracer()
    attempts = {"n": 0}

    @tool(breaker=CircuitBreaker(failure_threshold=1, reset_timeout=60))
    def fragile() -> str:
        """Fails once, and opens its breaker."""
        raise ConnectionError("down")

    @tool(retries=RetryPolicy(attempts=3, initial_delay=0.001, max_delay=0.002))
    def flaky() -> str:
        """Fails the first time."""
        attempts["n"] += 1
        if attempts["n"] == 1:
            raise TimeoutError("slow")
        return "fine"

    model = ScriptedModel([Step(tool_calls=[("fragile", {}), ("flaky", {})]), "ok"])
    await Agent("a", model, tools=[fragile, flaky], plugins=[tracer]).run("go")
    assert tracer.flush(5.0)
    spans = exporter.get_finished_spans()
    fragile_span = one(spans, "execute_tool fragile")
    change = next(e for e in fragile_span.events if e.name == N.EVENT_CIRCUIT_CHANGE)
    assert dict(change.attributes or {})[N.TD_CIRCUIT_NEW] == "open"
    flaky_span = one(spans, "execute_tool flaky")
    retry = next(e for e in flaky_span.events if e.name == N.EVENT_RETRY)
    retry_attrs = dict(retry.attributes or {})
    assert retry_attrs[N.TD_RETRY_ATTEMPT] == 1
    assert retry_attrs[N.ERROR_TYPE] == "TimeoutError"
    assert flaky_span.status.status_code is StatusCode.UNSET


async def test_a_model_retry_is_a_span_event_of_the_chat_span(make_tracer: MakeTracer) -> None:
    tracer, exporter = make_tracer()

    def model_fn(messages: Sequence[Message], request: ModelRequest) -> Any:
        assert request.on_retry is not None
        request.on_retry(1, 0.5, ConnectionError("reset"))
        return "ok"

    await Agent("a", FunctionModel(model_fn), plugins=[tracer]).run("go")
    assert tracer.flush(5.0)
    chat = one(exporter.get_finished_spans(), "chat function")
    assert event_names(chat) == [N.EVENT_RETRY]


async def test_concurrent_tools_each_get_a_span_under_the_run(make_tracer: MakeTracer) -> None:
    tracer, exporter = make_tracer()

    def model_fn(messages: Sequence[Message], request: ModelRequest) -> Any:
        if not tool_results(messages):
            return calls(*((f"c{i}", "add", {"a": i, "b": 1}) for i in range(5)))
        return answer("sums done")

    await Agent("a", FunctionModel(model_fn), tools=[add], plugins=[tracer]).run("go")
    assert tracer.flush(5.0)
    spans = exporter.get_finished_spans()
    run = one(spans, "invoke_agent a")
    tools = named(spans, "execute_tool")
    assert sorted(attrs(s)[N.GEN_AI_TOOL_CALL_ID] for s in tools) == [f"c{i}" for i in range(5)]
    assert {parent_id(s) for s in tools} == {span_id(run)}


# ---------------------------------------------------------------------- pending starts and orphans


def _events(trace: str = "ab" * 16) -> tuple[ToolCallStarted, ToolCallEnded]:
    common: dict[str, Any] = {"run_id": "r1", "trace_id": trace, "parent_span_id": "1" * 16, "agent": "a"}
    start = ToolCallStarted(span_id="2" * 16, timestamp_ns=1_000_000_000, tool="t", call_id="c", **common)
    end = ToolCallEnded(span_id="2" * 16, timestamp_ns=3_000_000_000, tool="t", call_id="c", duration_s=2.0, **common)
    return start, end


def test_a_start_without_its_end_stays_pending_across_flushes(make_tracer: MakeTracer) -> None:
    tracer, exporter = make_tracer()
    start, end = _events()
    tracer.on_tool_call_start(start)
    assert tracer.flush(5.0)
    assert exporter.get_finished_spans() == ()
    assert tracer.pending == 1
    tracer.on_tool_call_end(end)
    assert tracer.flush(5.0)
    (span,) = exporter.get_finished_spans()
    assert (span.start_time, span.end_time) == (1_000_000_000, 3_000_000_000)
    assert tracer.pending == 0


def test_pending_starts_are_bounded_and_the_oldest_dropped(make_tracer: MakeTracer) -> None:
    tracer, _ = make_tracer(max_pending=3)
    start, _end = _events()
    for i in range(5):
        tracer.on_run_start(
            RunStarted(
                run_id=f"r{i}",
                trace_id=start.trace_id,
                span_id=f"{i + 1:016x}",
                parent_span_id=None,
                agent="a",
                timestamp_ns=1,
            )
        )
    assert tracer.flush(5.0)
    assert tracer.pending == 3


def test_an_end_whose_start_was_lost_still_makes_its_span(make_tracer: MakeTracer) -> None:
    tracer, exporter = make_tracer()
    _start, end = _events()
    tracer.on_tool_call_end(end)
    assert tracer.flush(5.0)
    (span,) = exporter.get_finished_spans()
    assert span.name == "execute_tool t"
    assert (span.start_time, span.end_time) == (1_000_000_000, 3_000_000_000)
    assert parent_id(span) == "1" * 16


def test_a_model_call_end_alone_makes_a_chat_span(make_tracer: MakeTracer) -> None:
    tracer, exporter = make_tracer()
    tracer.on_model_call_end(
        ModelCallEnded(
            run_id="r",
            trace_id="cd" * 16,
            span_id="3" * 16,
            parent_span_id="4" * 16,
            agent="a",
            timestamp_ns=5,
            model="m",
            provider="p",
            duration_s=0.0,
        )
    )
    tracer.on_run_end(
        RunEnded(run_id="r", trace_id="cd" * 16, span_id="4" * 16, parent_span_id=None, agent="a", timestamp_ns=6)
    )
    assert tracer.flush(5.0)
    assert sorted(s.name for s in exporter.get_finished_spans()) == ["chat m", "invoke_agent a"]
