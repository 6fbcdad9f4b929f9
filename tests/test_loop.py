"""The run loop: answers, tool turns, concurrency, limits, errors, usage, streaming, tools per turn, spans."""

from __future__ import annotations

import asyncio
import threading
from contextlib import aclosing

import pytest

import tracedagent
from tracedagent import (
    Agent,
    CharEstimate,
    FinalResult,
    MaxTurnsExceeded,
    Message,
    ModelCallEnded,
    ModelCallStarted,
    ModelError,
    ModelResponse,
    RunContext,
    RunEnded,
    RunStarted,
    TextDelta,
    ThinkingDelta,
    ToolCall,
    ToolCallEnded,
    ToolCallStarted,
    Usage,
    UsageUpdated,
    UserError,
    hookimpl,
    tool,
)
from tracedagent.testing import FunctionModel, RecordingTracer, ScriptedModel, Step

GUARD_S = 5.0  # only a guard, so that a regression fails instead of hanging; never asserted on


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


# ---------------------------------------------------------------------------------------- answers


async def test_final_answer_ends_the_run(tracer: RecordingTracer) -> None:
    model = ScriptedModel(["Hello there!"])
    result = await Agent("greeter", model).run("hi")

    assert result.output == "Hello there!"
    assert result.status == "completed"
    assert result.turns == 1
    assert result.messages == [Message.user("hi"), Message.assistant("Hello there!")]
    assert tracer.hooks() == ["on_run_start", "on_model_call_start", "on_model_call_end", "on_run_end"]
    (started,) = tracer.of_type(RunStarted)
    (ended,) = tracer.of_type(RunEnded)
    assert started.run_id == ended.run_id == result.run_id
    assert started.trace_id == ended.trace_id == result.trace_id
    assert started.span_id == ended.span_id
    assert started.parent_span_id is None
    assert started.input == (Message.user("hi"),)
    assert (ended.status, ended.output, ended.error, ended.turns) == ("completed", "Hello there!", None, 1)
    model.assert_all_used()


async def test_the_loop_repeats_until_the_model_answers(tracer: RecordingTracer) -> None:
    model = ScriptedModel(
        [
            Step(tool_calls=[("add", {"a": 1, "b": 2})]),
            Step(tool_calls=[("add", {"a": 3, "b": 4})]),
            "3 and 7",
        ]
    )
    result = await Agent("calc", model, tools=[add]).run("sums?")

    assert result.output == "3 and 7"
    assert result.turns == 3
    assert model.calls == 3
    assert [e.result for e in tracer.of_type(ToolCallEnded)] == ["3", "7"]
    assert [m.role for m in result.messages] == ["user", "assistant", "tool", "assistant", "tool", "assistant"]
    # each request carries everything said so far
    assert [len(r.messages) for r in model.requests] == [1, 3, 5]
    assert [e.turn for e in tracer.of_type(ModelCallStarted)] == [0, 1, 2]


async def test_tool_calls_of_one_turn_run_concurrently(tracer: RecordingTracer) -> None:
    # each tool waits for the other to have started: run one after the other, they would deadlock
    ping_started, pong_started = asyncio.Event(), asyncio.Event()

    @tool
    async def ping() -> str:
        ping_started.set()
        await pong_started.wait()
        return "ping"

    @tool
    async def pong() -> str:
        pong_started.set()
        await ping_started.wait()
        return "pong"

    model = ScriptedModel([Step(tool_calls=[("ping", {}), ("pong", {})]), "done"])
    async with asyncio.timeout(GUARD_S):
        result = await Agent("pair", model, tools=[ping, pong]).run("go")

    assert result.output == "done"
    assert sorted(e.result for e in tracer.of_type(ToolCallEnded)) == ["ping", "pong"]
    assert {e.status for e in tracer.of_type(ToolCallEnded)} == {"ok"}


async def test_tool_results_keep_the_models_order_when_they_finish_in_reverse(tracer: RecordingTracer) -> None:
    fast_done = asyncio.Event()

    @tool
    async def slow() -> str:
        await fast_done.wait()
        return "slow result"

    @tool
    async def fast() -> str:
        fast_done.set()
        return "fast result"

    model = ScriptedModel([[ToolCall("c-slow", "slow"), ToolCall("c-fast", "fast")], "done"])
    async with asyncio.timeout(GUARD_S):
        await Agent("order", model, tools=[slow, fast]).run("go")

    # they finished fast first...
    assert [e.call_id for e in tracer.of_type(ToolCallEnded)] == ["c-fast", "c-slow"]
    # ...yet the model gets the results in the order it asked for them
    results = [m for m in model.requests[1].messages if m.role == "tool"]
    assert [(m.tool_call_id, m.name, m.content) for m in results] == [
        ("c-slow", "slow", "slow result"),
        ("c-fast", "fast", "fast result"),
    ]


# ----------------------------------------------------------------------------------------- limits


async def test_max_turns_raises_with_the_runs_state(tracer: RecordingTracer) -> None:
    model = ScriptedModel([("add", {"a": 1, "b": 1}), ("add", {"a": 2, "b": 2}), "never reached"])
    agent = Agent("looper", model, tools=[add], max_turns=2)

    with pytest.raises(MaxTurnsExceeded, match="max_turns=2") as caught:
        await agent.run("loop")

    result = caught.value.result
    assert result is not None
    assert result.status == "failed"
    assert result.output is None
    assert result.turns == 2
    assert [m.role for m in result.messages] == ["user", "assistant", "tool", "assistant", "tool"]
    assert model.calls == 2
    (ended,) = tracer.of_type(RunEnded)
    assert result.run_id == ended.run_id
    assert ended.status == "failed"
    assert ended.error is not None
    assert ended.error.type == "MaxTurnsExceeded"
    assert tracer.unmatched() == []


async def test_model_error_fails_the_run_with_its_cause(tracer: RecordingTracer) -> None:
    boom = RuntimeError("provider exploded")
    model = ScriptedModel([Step(error=boom)])

    with pytest.raises(ModelError, match="provider exploded") as caught:
        await Agent("fragile", model).run("hi")

    assert caught.value.__cause__ is boom
    assert caught.value.result is not None
    assert caught.value.result.status == "failed"
    (call_end,) = tracer.of_type(ModelCallEnded)
    assert call_end.status == "error"
    assert call_end.error is not None
    assert call_end.error.type == "ModelError"
    (ended,) = tracer.of_type(RunEnded)
    assert ended.status == "failed"
    assert ended.error is not None
    assert ended.error.type == "ModelError"
    assert ended.run_id == caught.value.result.run_id


# ----------------------------------------------------------------------------------- conversation


async def test_messages_continue_a_conversation() -> None:
    model = ScriptedModel(["Hi Ann.", "Your name is Ann."])
    agent = Agent("memory", model)
    first = await agent.run("My name is Ann.")
    second = await agent.run("What is my name?", messages=first.messages)

    assert list(model.requests[1].messages) == [*first.messages, Message.user("What is my name?")]
    assert second.messages == [
        Message.user("My name is Ann."),
        Message.assistant("Hi Ann."),
        Message.user("What is my name?"),
        Message.assistant("Your name is Ann."),
    ]
    assert second.run_id != first.run_id
    # the first result is not changed by the second run
    assert len(first.messages) == 2


# ------------------------------------------------------------------------------------------ usage


async def test_usage_is_reported_per_call_and_summed_per_run(tracer: RecordingTracer) -> None:
    u1 = Usage(input_tokens=10, output_tokens=5, requests=1)
    u2 = Usage(input_tokens=30, output_tokens=7, cache_read_tokens=4, reasoning_tokens=2, requests=1)
    model = ScriptedModel([Step(tool_calls=[("add", {"a": 1, "b": 2})], usage=u1), Step(text="3", usage=u2)])
    result = await Agent("counter", model, tools=[add]).run("1+2")

    assert [e.usage for e in tracer.of_type(ModelCallEnded)] == [u1, u2]
    assert result.usage == Usage(40, 12, 4, 2, 2)
    assert result.usage.estimated is False
    (ended,) = tracer.of_type(RunEnded)
    assert ended.usage == result.usage


async def test_usage_is_estimated_when_the_model_reports_none(tracer: RecordingTracer) -> None:
    answer = Message.assistant("an answer of a few words")
    model = FunctionModel(lambda messages, request: ModelResponse(answer, usage=None))
    result = await Agent("quiet", model).run("a question")

    (call_end,) = tracer.of_type(ModelCallEnded)
    estimate = CharEstimate()
    assert call_end.usage.estimated is True
    assert call_end.usage.input_tokens == estimate.count([Message.user("a question")])
    assert call_end.usage.output_tokens == estimate.count([answer])
    assert call_end.usage.requests == 1
    assert result.usage.estimated is True
    assert result.usage == call_end.usage


# --------------------------------------------------------------------------------------- run_sync


def test_run_sync_runs_the_agent() -> None:
    model = ScriptedModel([("add", {"a": 2, "b": 3}), "5"])
    result = Agent("sync", model, tools=[add]).run_sync("2+3")
    assert result.output == "5"
    assert result.status == "completed"
    assert model.calls == 2


async def test_run_sync_refuses_inside_a_running_loop() -> None:
    model = ScriptedModel(["unused"])
    with pytest.raises(UserError, match="running event loop"):
        Agent("sync", model).run_sync("hi")
    assert model.calls == 0


# ----------------------------------------------------------------------------------------- stream


async def test_stream_yields_the_run_as_it_happens() -> None:
    model = ScriptedModel(
        [
            Step(tool_calls=[ToolCall.of("c1", "add", {"a": 1, "b": 2})], thinking="I should add."),
            Step(text="It is 3.", chunks=3),
        ]
    )
    events = [e async for e in Agent("streamer", model, tools=[add]).stream("1+2?")]

    assert [type(e) for e in events] == [
        ThinkingDelta,
        UsageUpdated,
        ToolCallStarted,
        ToolCallEnded,
        TextDelta,
        TextDelta,
        TextDelta,
        UsageUpdated,
        FinalResult,
    ]
    assert events[0] == ThinkingDelta("I should add.")
    assert (events[2].tool, events[2].call_id, events[3].result, events[3].status) == ("add", "c1", "3", "ok")
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "It is 3."
    final = events[-1]
    assert isinstance(final, FinalResult)
    assert final.result.output == "It is 3."
    assert final.result.status == "completed"
    updates = [e for e in events if isinstance(e, UsageUpdated)]
    assert updates[0].total == updates[0].usage
    assert updates[1].total == updates[0].usage + updates[1].usage == final.result.usage


async def test_stream_raises_the_runs_error() -> None:
    model = ScriptedModel([Step(error=RuntimeError("down"))])
    with pytest.raises(ModelError, match="down"):
        async for _ in Agent("streamer", model).stream("hi"):
            pass


async def test_closing_the_stream_early_cancels_the_run(tracer: RecordingTracer) -> None:
    cancelled = asyncio.Event()

    @tool
    async def wait_forever() -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "unreachable"

    model = ScriptedModel([("wait_forever", {}), "never"])
    async with aclosing(Agent("streamer", model, tools=[wait_forever]).stream("go")) as stream:
        async for event in stream:
            if isinstance(event, ToolCallStarted):
                break

    assert cancelled.is_set()
    (ended,) = tracer.of_type(RunEnded)
    assert ended.status == "cancelled"
    assert [e.status for e in tracer.of_type(ToolCallEnded)] == ["cancelled"]
    assert tracer.unmatched() == []


async def test_breaking_out_of_the_stream_cancels_the_run(fresh_registry: object) -> None:
    # A plain `break` (no aclosing): the generator is finalised when dropped, which cancels the run.
    ended: list[RunEnded] = []
    run_over = asyncio.Event()

    class Watcher:
        @hookimpl
        def on_run_end(self, event: RunEnded) -> None:
            ended.append(event)
            run_over.set()

    @tool
    async def wait_forever() -> str:
        await asyncio.Event().wait()
        return "unreachable"

    model = ScriptedModel([("wait_forever", {}), "never"])
    agent = Agent("streamer", model, tools=[wait_forever], plugins=[Watcher()])

    async def consume() -> None:
        async for event in agent.stream("go"):
            if isinstance(event, ToolCallStarted):
                break

    await consume()
    async with asyncio.timeout(GUARD_S):
        await run_over.wait()
    assert [e.status for e in ended] == ["cancelled"]


# ---------------------------------------------------------------------------------- tools per turn


async def test_prepare_tools_changes_the_tools_between_turns() -> None:
    @tool
    def extra() -> str:
        """Only offered from the second turn on."""
        return "extra"

    async def prepare(ctx: RunContext) -> None:
        if ctx.turn == 1:
            ctx.remove_tool("add")
            ctx.add_tool(extra)

    model = ScriptedModel([("add", {"a": 1, "b": 1}), ("extra", {}), "done"])
    agent = Agent("shifty", model, tools=[add], prepare_tools=prepare)
    result = await agent.run("go")

    assert [[spec.name for spec in r.tools] for r in model.requests] == [["add"], ["extra"], ["extra"]]
    assert result.messages[-2] == Message.tool(result.messages[-3].tool_calls[0].id, "extra", "extra")
    # the change was for that run only
    assert list(agent.tools) == ["add"]


async def test_a_sync_prepare_tools_works_too(tracer: RecordingTracer) -> None:
    def prepare(ctx: RunContext) -> None:
        if ctx.turn == 0:
            ctx.remove_tool("add")

    model = ScriptedModel(["no tools"])
    await Agent("shifty", model, tools=[add], prepare_tools=prepare).run("go")
    assert model.requests[0].tools == ()
    (started,) = tracer.of_type(ModelCallStarted)
    assert started.tools == ()


async def test_a_tool_can_add_and_remove_tools_through_the_run_context(tracer: RecordingTracer) -> None:
    @tool
    def secret() -> str:
        return "the secret"

    @tool
    def unlock(ctx: RunContext) -> str:
        ctx.add_tool(secret)
        ctx.remove_tool("unlock")
        return "unlocked"

    model = ScriptedModel([("unlock", {}), ("secret", {}), "done"])
    agent = Agent("vault", model, tools=[unlock])
    await agent.run("open")

    assert [[spec.name for spec in r.tools] for r in model.requests] == [["unlock"], ["secret"], ["secret"]]
    assert [e.tools for e in tracer.of_type(ModelCallStarted)] == [("unlock",), ("secret",), ("secret",)]
    assert [(e.tool, e.status, e.result) for e in tracer.of_type(ToolCallEnded)] == [
        ("unlock", "ok", "unlocked"),
        ("secret", "ok", "the secret"),
    ]
    assert list(agent.tools) == ["unlock"]


async def test_run_context_rejects_what_it_cannot_do() -> None:
    seen: list[str] = []

    @tool
    def misuse(ctx: RunContext) -> str:
        for attempt in (lambda: ctx.remove_tool("nope"), lambda: ctx.add_tool(len)):  # type: ignore[arg-type]
            try:
                attempt()
            except UserError as exc:
                seen.append(type(exc).__name__)
        return "ok"

    await Agent("a", ScriptedModel([("misuse", {}), "done"]), tools=[misuse]).run("go")
    assert seen == ["UserError", "UserError"]


# ------------------------------------------------------------------------------------------ spans


async def test_a_sub_agent_run_inside_a_tool_nests_under_the_tool_span(tracer: RecordingTracer) -> None:
    inner = Agent("inner", ScriptedModel(["inner answer"]))

    @tool
    async def delegate(question: str) -> str:
        return (await inner.run(question)).output or ""

    outer = Agent("outer", ScriptedModel([("delegate", {"question": "why?"}), "outer answer"]), tools=[delegate])
    result = await outer.run("go")

    assert result.output == "outer answer"
    outer_start, inner_start = tracer.of_type(RunStarted)
    (tool_start,) = tracer.of_type(ToolCallStarted)
    assert (outer_start.agent, inner_start.agent) == ("outer", "inner")
    assert inner_start.trace_id == outer_start.trace_id == result.trace_id
    assert inner_start.parent_span_id == tool_start.span_id
    assert inner_start.run_id != outer_start.run_id
    inner_ends = [e for e in tracer.of_type(RunEnded) if e.agent == "inner"]
    assert [(e.parent_span_id, e.status) for e in inner_ends] == [(tool_start.span_id, "completed")]
    assert tracer.format_span_tree() == "\n".join(
        [
            "run outer [completed]",
            "  model scripted:scripted [ok]",
            "  tool delegate [ok]",
            "    run inner [completed]",
            "      model scripted:scripted [ok]",
            "  model scripted:scripted [ok]",
        ]
    )
    assert tracer.unmatched() == []


async def test_a_run_outside_any_span_starts_a_new_trace(tracer: RecordingTracer) -> None:
    agent = Agent("a", ScriptedModel(["one", "two"]))
    first = await agent.run("hi")
    second = await agent.run("hi")
    assert first.trace_id != second.trace_id
    assert [e.parent_span_id for e in tracer.of_type(RunStarted)] == [None, None]
    assert tracedagent.current_span() is None


async def test_current_span_inside_a_tool_is_the_tool_call_span(tracer: RecordingTracer) -> None:
    seen: dict[str, tuple[tracedagent.SpanContext | None, int]] = {}

    @tool
    async def async_probe() -> str:
        seen["async_probe"] = (tracedagent.current_span(), threading.get_ident())
        return "ok"

    @tool
    def sync_probe() -> str:
        seen["sync_probe"] = (tracedagent.current_span(), threading.get_ident())
        return "ok"

    model = ScriptedModel([[ToolCall("a", "async_probe"), ToolCall("s", "sync_probe")], "done"])
    await Agent("probe", model, tools=[async_probe, sync_probe]).run("go")

    starts = {e.tool: e for e in tracer.of_type(ToolCallStarted)}
    assert set(seen) == {"async_probe", "sync_probe"}
    for name, (span, _) in seen.items():
        assert span is not None
        assert (span.trace_id, span.span_id) == (starts[name].trace_id, starts[name].span_id)
    # the sync tool ran on a worker thread, the async one on the loop's
    assert seen["sync_probe"][1] != threading.get_ident()
    assert seen["async_probe"][1] == threading.get_ident()
    assert tracedagent.current_span() is None


async def test_the_model_request_carries_the_model_call_span(tracer: RecordingTracer) -> None:
    model = ScriptedModel(["hi"])
    await Agent("a", model).run("hi")
    (started,) = tracer.of_type(ModelCallStarted)
    span = model.requests[0].span
    assert span is not None
    assert (span.trace_id, span.span_id) == (started.trace_id, started.span_id)
    assert span.traceparent == f"00-{started.trace_id}-{started.span_id}-01"
    (run_start,) = tracer.of_type(RunStarted)
    assert started.parent_span_id == run_start.span_id


# ----------------------------------------------------------------------------------- run context


async def test_a_run_context_parameter_receives_the_run_and_is_hidden_from_the_model() -> None:
    seen: list[tuple[RunContext, int]] = []

    @tool
    def whoami(context: RunContext, suffix: str) -> str:
        """Say who is asking.

        Args:
            suffix: appended to the answer.
        """
        seen.append((context, context.turn))
        return f"{context.agent_name}:{context.deps}{suffix}"

    assert set(whoami.parameters["properties"]) == {"suffix"}
    assert whoami.parameters["required"] == ["suffix"]

    model = ScriptedModel([("whoami", {"suffix": "!"}), "done"])
    result = await Agent("me", model, tools=[whoami]).run("who?", deps="deps", metadata={"k": "v"})

    ((ctx, turn),) = seen
    assert isinstance(ctx, RunContext)
    assert ctx.run_id == result.run_id
    assert ctx.trace_id == result.trace_id
    assert ctx.metadata == {"k": "v"}
    assert turn == 1
    assert result.messages[2].content == "me:deps!"
