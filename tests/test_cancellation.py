"""Every start has exactly one end, whatever stops the run: an error or a cancellation at any await point.

Cancellation is synchronised with events set where the run is waiting, never with sleeps.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from tracedagent import (
    Agent,
    DropOldest,
    Message,
    ModelBehaviorError,
    ModelCallEnded,
    ModelCallStarted,
    ModelError,
    ModelRequest,
    RunContext,
    RunEnded,
    Summarize,
    TextDelta,
    ToolCall,
    ToolCallEnded,
    ToolCallStarted,
    hookimpl,
    tool,
)
from tracedagent.testing import FunctionModel, RecordingTracer, ScriptedModel, Step

GUARD_S = 5.0  # only a guard, so that a regression fails instead of hanging; never asserted on


def assert_one_end_per_start(tracer: RecordingTracer) -> None:
    assert tracer.unmatched() == []
    starts = Counter(e.span_id for e in tracer.events if e.hook.endswith("_start"))
    ends = Counter(e.span_id for e in tracer.events if e.hook.endswith("_end"))
    assert starts == ends
    assert set(ends.values()) == {1}


def statuses(tracer: RecordingTracer, kind: type[Any]) -> list[str]:
    return [e.status for e in tracer.of_type(kind)]


async def cancel_when(task: asyncio.Task[Any], reached: asyncio.Event) -> None:
    """Cancel ``task`` once it reached the awaited point, and check the caller gets CancelledError."""
    async with asyncio.timeout(GUARD_S):
        await reached.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


def long_history(n: int = 12) -> list[Message]:
    history: list[Message] = [Message.system("be brief")]
    for i in range(n):
        history += [Message.user(f"question {i} " * 20), Message.assistant(f"answer {i} " * 20)]
    return history


# ----------------------------------------------------------------------------------- cancellation


async def test_cancelled_during_the_model_stream(tracer: RecordingTracer) -> None:
    streaming = asyncio.Event()

    class Watch:
        @hookimpl
        def on_model_call_start(self) -> None:
            streaming.set()

    # a model that takes an hour to answer; the run is cancelled while it waits
    model = ScriptedModel([Step(text="late", delay=3600)])
    agent = Agent("slow-model", model, plugins=[Watch()])
    task = asyncio.create_task(agent.run("hi"))
    await cancel_when(task, streaming)

    assert statuses(tracer, ModelCallEnded) == ["cancelled"]
    assert statuses(tracer, RunEnded) == ["cancelled"]
    (ended,) = tracer.of_type(RunEnded)
    assert ended.error is None
    assert_one_end_per_start(tracer)


async def test_cancelled_between_two_deltas_of_the_model_stream(tracer: RecordingTracer) -> None:
    first_delta_sent = asyncio.Event()
    closed = asyncio.Event()

    class HalfStream:
        name = "half"
        provider = "test"

        async def stream(self, request: ModelRequest) -> AsyncIterator[Any]:
            try:
                yield TextDelta("Hel")
                first_delta_sent.set()
                await asyncio.Event().wait()
                yield TextDelta("lo")
            finally:
                closed.set()

    task = asyncio.create_task(Agent("half", HalfStream()).run("hi"))
    await cancel_when(task, first_delta_sent)

    assert closed.is_set()  # the provider's stream was closed
    (call_end,) = tracer.of_type(ModelCallEnded)
    assert call_end.status == "cancelled"
    assert call_end.time_to_first_token_s is not None
    assert statuses(tracer, RunEnded) == ["cancelled"]
    assert_one_end_per_start(tracer)


async def test_cancelled_during_a_sync_tool_in_its_thread(tracer: RecordingTracer) -> None:
    entered, release, finished = threading.Event(), threading.Event(), threading.Event()

    @tool
    def blocking() -> str:
        entered.set()
        release.wait(GUARD_S)
        finished.set()
        return "late"

    model = ScriptedModel([("blocking", {}), "never"])
    task = asyncio.create_task(Agent("sync-tool", model, tools=[blocking]).run("go"))
    try:
        assert await asyncio.to_thread(entered.wait, GUARD_S)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # the run ended without waiting for the thread
        assert not finished.is_set()
    finally:
        release.set()
    assert await asyncio.to_thread(finished.wait, GUARD_S)

    assert statuses(tracer, ToolCallEnded) == ["cancelled"]
    assert statuses(tracer, ModelCallEnded) == ["ok"]
    assert statuses(tracer, RunEnded) == ["cancelled"]
    assert model.calls == 1
    assert_one_end_per_start(tracer)


async def test_cancelled_during_an_async_tool(tracer: RecordingTracer) -> None:
    entered, tool_saw_cancel = asyncio.Event(), asyncio.Event()

    @tool
    async def waiting() -> str:
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            tool_saw_cancel.set()
            raise
        return "never"

    model = ScriptedModel([("waiting", {}), "never"])
    task = asyncio.create_task(Agent("async-tool", model, tools=[waiting]).run("go"))
    await cancel_when(task, entered)

    assert tool_saw_cancel.is_set()
    (end,) = tracer.of_type(ToolCallEnded)
    assert (end.status, end.error) == ("cancelled", None)
    assert statuses(tracer, RunEnded) == ["cancelled"]
    assert_one_end_per_start(tracer)


async def test_cancelled_during_a_tool_with_a_timeout_is_cancelled_not_timeout(tracer: RecordingTracer) -> None:
    entered = asyncio.Event()

    @tool(timeout=3600)
    async def waiting() -> str:
        entered.set()
        await asyncio.Event().wait()
        return "never"

    task = asyncio.create_task(Agent("a", ScriptedModel([("waiting", {})]), tools=[waiting]).run("go"))
    await cancel_when(task, entered)

    assert statuses(tracer, ToolCallEnded) == ["cancelled"]
    assert statuses(tracer, RunEnded) == ["cancelled"]
    assert_one_end_per_start(tracer)


async def test_cancelled_during_concurrent_tools_ends_every_one(tracer: RecordingTracer) -> None:
    names = ("first", "second", "third")
    entered: set[str] = set()
    all_entered = asyncio.Event()

    def make(name: str) -> Any:
        async def wait_forever() -> str:
            entered.add(name)
            if len(entered) == len(names):
                all_entered.set()
            await asyncio.Event().wait()
            return "never"

        return tool(wait_forever, name=name)

    # one tool already finished: it keeps its ok end; the others end cancelled
    @tool
    def quick() -> str:
        return "quick"

    calls = [ToolCall(f"c-{n}", n) for n in names] + [ToolCall("c-quick", "quick")]
    model = ScriptedModel([calls, "never"])
    agent = Agent("many", model, tools=[*(make(n) for n in names), quick])
    task = asyncio.create_task(agent.run("go"))
    await cancel_when(task, all_entered)

    ends = {e.call_id: e.status for e in tracer.of_type(ToolCallEnded)}
    assert ends["c-first"] == ends["c-second"] == ends["c-third"] == "cancelled"
    assert ends["c-quick"] in ("ok", "cancelled")  # it may or may not have finished; it ended exactly once
    assert len(tracer.of_type(ToolCallStarted)) == 4
    assert statuses(tracer, RunEnded) == ["cancelled"]
    assert_one_end_per_start(tracer)


async def test_cancelled_during_the_compaction_summary(tracer: RecordingTracer) -> None:
    summarising = asyncio.Event()

    async def answer(messages: Sequence[Message], request: ModelRequest) -> str:
        if request.purpose == "compaction":
            summarising.set()
            await asyncio.Event().wait()
        return "answer"

    agent = Agent("compacting", FunctionModel(answer), compaction=Summarize(max_tokens=200))
    task = asyncio.create_task(agent.run("and now?", messages=long_history()))
    await cancel_when(task, summarising)

    (started,) = tracer.of_type(ModelCallStarted)
    (ended,) = tracer.of_type(ModelCallEnded)
    assert (started.purpose, ended.purpose, ended.status) == ("compaction", "compaction", "cancelled")
    assert tracer.hooks().count("on_compaction") == 0
    assert statuses(tracer, RunEnded) == ["cancelled"]
    assert_one_end_per_start(tracer)


async def test_cancelled_between_turns(tracer: RecordingTracer) -> None:
    between = asyncio.Event()

    async def prepare(ctx: RunContext) -> None:
        if ctx.turn == 1:
            between.set()
            await asyncio.Event().wait()

    @tool
    def step() -> str:
        return "stepped"

    model = ScriptedModel([("step", {}), "never"])
    task = asyncio.create_task(Agent("turns", model, tools=[step], prepare_tools=prepare).run("go"))
    await cancel_when(task, between)

    assert statuses(tracer, ModelCallEnded) == ["ok"]
    assert statuses(tracer, ToolCallEnded) == ["ok"]
    (ended,) = tracer.of_type(RunEnded)
    assert (ended.status, ended.turns) == ("cancelled", 1)
    assert model.calls == 1
    assert_one_end_per_start(tracer)


async def test_cancelled_by_a_timeout_around_the_run(tracer: RecordingTracer) -> None:
    deadline: list[asyncio.Timeout] = []

    @tool
    async def hang() -> str:
        deadline[0].reschedule(asyncio.get_running_loop().time())  # time is up once the tool waits
        await asyncio.Event().wait()
        return "never"

    agent = Agent("bounded", ScriptedModel([("hang", {})]), tools=[hang])

    async def run_with_deadline() -> None:
        async with asyncio.timeout(None) as cm:
            deadline.append(cm)
            await agent.run("go")

    with pytest.raises(TimeoutError):
        await run_with_deadline()

    assert statuses(tracer, ToolCallEnded) == ["cancelled"]
    assert statuses(tracer, RunEnded) == ["cancelled"]
    assert_one_end_per_start(tracer)


async def test_cancelling_a_parent_run_ends_its_sub_agent_run(tracer: RecordingTracer) -> None:
    inner_waiting = asyncio.Event()

    @tool
    async def inner_hang() -> str:
        inner_waiting.set()
        await asyncio.Event().wait()
        return "never"

    inner = Agent("inner", ScriptedModel([("inner_hang", {})]), tools=[inner_hang])

    @tool
    async def delegate() -> str:
        return (await inner.run("go deeper")).output or ""

    outer = Agent("outer", ScriptedModel([("delegate", {})]), tools=[delegate])
    task = asyncio.create_task(outer.run("go"))
    await cancel_when(task, inner_waiting)

    assert sorted((e.agent, e.status) for e in tracer.of_type(RunEnded)) == [
        ("inner", "cancelled"),
        ("outer", "cancelled"),
    ]
    assert statuses(tracer, ToolCallEnded) == ["cancelled", "cancelled"]
    assert_one_end_per_start(tracer)


# ------------------------------------------------------------------------------------------ errors


async def test_an_error_in_the_model_call_ends_it_once(tracer: RecordingTracer) -> None:
    model = ScriptedModel([Step(error=ConnectionError("reset"))])
    with pytest.raises(ModelError):
        await Agent("a", model).run("hi")

    assert statuses(tracer, ModelCallEnded) == ["error"]
    assert statuses(tracer, RunEnded) == ["failed"]
    assert_one_end_per_start(tracer)


async def test_an_error_in_the_middle_of_the_stream_ends_the_call_once(tracer: RecordingTracer) -> None:
    class Broken:
        name = "broken"
        provider = "test"

        async def stream(self, request: ModelRequest) -> AsyncIterator[Any]:
            yield TextDelta("partial")
            raise OSError("connection lost")

    with pytest.raises(ModelError, match="connection lost") as caught:
        await Agent("a", Broken()).run("hi")

    assert isinstance(caught.value.__cause__, OSError)
    (call_end,) = tracer.of_type(ModelCallEnded)
    assert call_end.status == "error"
    assert call_end.error is not None
    assert "connection lost" in call_end.error.message
    assert statuses(tracer, RunEnded) == ["failed"]
    assert_one_end_per_start(tracer)


async def test_a_stream_without_a_response_is_a_model_behavior_error(tracer: RecordingTracer) -> None:
    class NoResponse:
        name = "mute"
        provider = "test"

        async def stream(self, request: ModelRequest) -> AsyncIterator[Any]:
            yield TextDelta("I forgot to finish")

    with pytest.raises(ModelBehaviorError, match="without a response"):
        await Agent("a", NoResponse()).run("hi")

    (call_end,) = tracer.of_type(ModelCallEnded)
    assert call_end.status == "error"
    assert call_end.error is not None
    assert call_end.error.type == "ModelBehaviorError"
    assert statuses(tracer, RunEnded) == ["failed"]
    assert_one_end_per_start(tracer)


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_an_error_in_a_tool_ends_it_once_and_the_run_goes_on(tracer: RecordingTracer, kind: str) -> None:
    def broken_sync() -> str:
        raise ValueError("bad input")

    async def broken_async() -> str:
        raise ValueError("bad input")

    broken = tool(broken_sync if kind == "sync" else broken_async, name="broken")
    model = ScriptedModel([("broken", {}), "recovered"])
    result = await Agent("a", model, tools=[broken]).run("go")

    assert result.output == "recovered"
    (end,) = tracer.of_type(ToolCallEnded)
    assert end.status == "error"
    assert end.error is not None
    assert (end.error.type, end.error.message) == ("ValueError", "bad input")
    tool_message = model.requests[1].messages[-1]
    assert tool_message.is_error
    assert "ValueError: bad input" in (tool_message.content or "")
    assert statuses(tracer, RunEnded) == ["completed"]
    assert_one_end_per_start(tracer)


async def test_one_failing_tool_among_concurrent_ones(tracer: RecordingTracer) -> None:
    @tool
    async def good() -> str:
        return "good"

    @tool
    async def bad() -> str:
        raise RuntimeError("nope")

    model = ScriptedModel([[ToolCall("g", "good"), ToolCall("b", "bad")], "done"])
    await Agent("a", model, tools=[good, bad]).run("go")

    assert {e.call_id: e.status for e in tracer.of_type(ToolCallEnded)} == {"g": "ok", "b": "error"}
    assert [m.is_error for m in model.requests[1].messages if m.role == "tool"] == [False, True]
    assert_one_end_per_start(tracer)


async def test_an_error_in_the_compaction_summary_fails_the_run_once(tracer: RecordingTracer) -> None:
    def answer(messages: Sequence[Message], request: ModelRequest) -> str:
        if request.purpose == "compaction":
            raise RuntimeError("summariser down")
        return "answer"

    agent = Agent("compacting", FunctionModel(answer), compaction=Summarize(max_tokens=200))
    with pytest.raises(ModelError, match="summariser down"):
        await agent.run("and now?", messages=long_history())

    (ended,) = tracer.of_type(ModelCallEnded)
    assert (ended.purpose, ended.status) == ("compaction", "error")
    assert tracer.hooks().count("on_compaction") == 0
    assert statuses(tracer, RunEnded) == ["failed"]
    assert_one_end_per_start(tracer)


async def test_an_error_in_a_compaction_strategy_fails_the_run_once(tracer: RecordingTracer) -> None:
    class Exploding(DropOldest):
        async def compact(self, messages: list[Message], context: Any) -> list[Message] | None:
            raise LookupError("strategy bug")

    agent = Agent("a", ScriptedModel(["never"]), compaction=Exploding(max_tokens=10))
    with pytest.raises(LookupError, match="strategy bug"):
        await agent.run("hi")

    (ended,) = tracer.of_type(RunEnded)
    assert ended.status == "failed"
    assert ended.error is not None
    assert ended.error.type == "LookupError"
    assert tracer.of_type(ModelCallStarted) == []
    assert_one_end_per_start(tracer)


async def test_an_error_between_turns_fails_the_run_once(tracer: RecordingTracer) -> None:
    def prepare(ctx: RunContext) -> None:
        if ctx.turn == 1:
            raise KeyError("prepare failed")

    @tool
    def step() -> str:
        return "stepped"

    model = ScriptedModel([("step", {}), "never"])
    with pytest.raises(KeyError):
        await Agent("a", model, tools=[step], prepare_tools=prepare).run("go")

    (ended,) = tracer.of_type(RunEnded)
    assert (ended.status, ended.turns) == ("failed", 1)
    assert ended.error is not None
    assert ended.error.type == "KeyError"
    assert_one_end_per_start(tracer)


async def test_a_raising_hook_does_not_break_the_pairing(tracer: RecordingTracer) -> None:
    class Broken:
        @hookimpl
        def on_tool_call_start(self) -> None:
            raise RuntimeError("plugin bug")

        @hookimpl
        def on_model_call_end(self) -> None:
            raise RuntimeError("plugin bug")

    @tool
    def step() -> str:
        return "stepped"

    model = ScriptedModel([("step", {}), "done"])
    result = await Agent("a", model, tools=[step], plugins=[Broken()]).run("go")

    assert result.output == "done"
    assert statuses(tracer, ToolCallEnded) == ["ok"]
    assert statuses(tracer, ModelCallEnded) == ["ok", "ok"]
    assert_one_end_per_start(tracer)
