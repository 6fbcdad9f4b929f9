"""Every hook, one test named after each: it fires with the documented event and fields.

Hooks the core does not fire yet (interrupt, resume, checkpoint, breaker, retry, approval) are checked
through their spec and the dispatcher: a plugin implementing them registers and gets what is dispatched.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

import tracedagent
from tracedagent import (
    Agent,
    CheckpointSaved,
    CircuitStateChanged,
    ContextCompacted,
    DropOldest,
    ErrorInfo,
    Event,
    HandoffOccurred,
    Interruption,
    Message,
    ModelCallEnded,
    ModelCallStarted,
    PluginError,
    RetryScheduled,
    RunEnded,
    RunInterrupted,
    RunResumed,
    RunStarted,
    ToolCallEnded,
    ToolCallRequest,
    ToolCallStarted,
    Usage,
    hookimpl,
    hookspecs,
    tool,
)
from tracedagent._dispatch import DeciderFailed
from tracedagent._plugins import get_dispatcher
from tracedagent.exceptions import ModelError
from tracedagent.testing import FunctionModel, RecordingTracer, ScriptedModel, Step, capture_events

HEX32 = re.compile(r"[0-9a-f]{32}")
HEX16 = re.compile(r"[0-9a-f]{16}")


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def explode(reason: str) -> str:
    """Always fails."""
    raise ValueError(f"exploded: {reason}")


@tool(timeout=0.01)
async def hang() -> str:
    """Never answers."""
    await asyncio.Event().wait()
    return "unreachable"


def calc_model() -> ScriptedModel:
    return ScriptedModel(
        [
            Step(tool_calls=[("add", {"a": 1, "b": 2})], usage=Usage(10, 5, requests=1)),
            Step(text="It is 3.", usage=Usage(20, 4, cache_read_tokens=3, requests=1), finish_reason="stop"),
        ]
    )


@pytest.fixture
def events(fresh_registry: Any) -> Iterator[RecordingTracer]:
    with capture_events() as recorder:
        yield recorder


def assert_ids(event: Event) -> None:
    assert HEX32.fullmatch(event.trace_id)
    assert int(event.trace_id, 16) != 0
    assert HEX32.fullmatch(event.run_id)
    assert HEX16.fullmatch(event.span_id)
    assert int(event.span_id, 16) != 0
    if event.parent_span_id is not None:
        assert HEX16.fullmatch(event.parent_span_id)


def ids() -> dict[str, Any]:
    """The fields every event carries, with values that are not random (for dispatch tests)."""
    return {
        "run_id": "ab" * 16,
        "trace_id": "cd" * 16,
        "span_id": "ef" * 8,
        "parent_span_id": None,
        "agent": "a",
        "timestamp_ns": 1,
    }


def dispatched_via(hook: str, event: Event) -> list[Event]:
    """Register a plugin implementing only ``hook``; dispatch ``event``; return what it received."""
    received: list[Event] = []

    class Plugin:
        pass

    def impl(self: Any, event: Event) -> None:
        received.append(event)

    impl.__name__ = hook
    setattr(Plugin, hook, hookimpl(impl))
    name = tracedagent.register(Plugin(), f"only-{hook}")
    assert hook in next(p for p in tracedagent.list_plugins() if p.name == name).hooks
    get_dispatcher().emit_event(event)
    return received


def assert_spec(hook: str, event_class: type[Event]) -> None:
    spec_function = getattr(hookspecs, hook)
    options = spec_function.tracedagent_spec
    assert options["firstresult"] is False
    assert list(inspect.signature(spec_function).parameters) == ["event"]
    assert event_class.hook == hook
    assert hook in hookspecs.OBSERVER_HOOKS


# ------------------------------------------------------------------------------------ run hooks


async def test_on_run_start(events: RecordingTracer) -> None:
    before = time.time_ns()
    result = await Agent("calc", calc_model(), tools=[add]).run("1 + 2?", metadata={"user": "u1"})
    after = time.time_ns()

    [started] = events.of_type(RunStarted)
    assert events.hooks()[0] == "on_run_start"
    assert_ids(started)
    assert started.run_id == result.run_id
    assert started.trace_id == result.trace_id
    assert started.parent_span_id is None
    assert started.agent == "calc"
    assert (started.model, started.provider) == ("scripted", "scripted")
    assert started.input == (Message.user("1 + 2?"),)
    assert started.metadata == {"user": "u1"}
    assert before <= started.timestamp_ns <= after


async def test_on_run_start_in_a_tool_joins_the_tool_span(events: RecordingTracer) -> None:
    inner = Agent("inner", ScriptedModel(["inner answer"]))

    @tool
    async def ask_inner(question: str) -> str:
        """Ask the inner agent."""
        return (await inner.run(question)).output or ""

    outer = Agent(
        "outer", ScriptedModel([Step(tool_calls=[("ask_inner", {"question": "q"})]), "done"]), tools=[ask_inner]
    )
    result = await outer.run("go")

    outer_start, inner_start = events.of_type(RunStarted)
    [tool_start] = events.of_type(ToolCallStarted)
    assert inner_start.agent == "inner"
    assert inner_start.trace_id == outer_start.trace_id == result.trace_id
    assert inner_start.run_id != outer_start.run_id
    assert inner_start.parent_span_id == tool_start.span_id
    assert outer_start.parent_span_id is None


async def test_on_run_end(events: RecordingTracer) -> None:
    before = time.time_ns()
    result = await Agent("calc", calc_model(), tools=[add]).run("1 + 2?")
    after = time.time_ns()

    [started] = events.of_type(RunStarted)
    [ended] = events.of_type(RunEnded)
    assert events.hooks()[-1] == "on_run_end"
    assert_ids(ended)
    assert ended.span_id == started.span_id
    assert (ended.run_id, ended.trace_id, ended.parent_span_id) == (started.run_id, started.trace_id, None)
    assert ended.status == result.status == "completed"
    assert ended.error is None
    assert ended.output == result.output == "It is 3."
    assert ended.turns == 2
    assert ended.usage == Usage(30, 9, cache_read_tokens=3, requests=2)
    assert ended.usage == result.usage
    assert started.timestamp_ns <= ended.timestamp_ns <= after
    assert before <= started.timestamp_ns
    children = events.of_type(ModelCallEnded, ToolCallEnded)
    assert ended.duration_s > 0
    assert all(0 <= child.duration_s <= ended.duration_s for child in children)


async def test_on_run_end_when_the_run_fails(events: RecordingTracer) -> None:
    agent = Agent("failing", ScriptedModel([RuntimeError("provider down")]))
    with pytest.raises(ModelError) as raised:
        await agent.run("hi")

    [ended] = events.of_type(RunEnded)
    assert ended.status == "failed"
    assert ended.error == ErrorInfo("ModelError", str(raised.value))
    assert "provider down" in ended.error.message
    assert ended.output is None
    assert raised.value.result is not None
    assert raised.value.result.status == "failed"
    assert raised.value.result.run_id == ended.run_id


async def test_on_run_end_when_the_run_is_cancelled(events: RecordingTracer) -> None:
    called = asyncio.Event()

    async def never_answers(messages: Any, request: Any) -> str:
        called.set()
        await asyncio.Event().wait()
        return "unreachable"

    task = asyncio.ensure_future(Agent("slow", FunctionModel(never_answers)).run("hi"))
    await called.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    [model_end] = events.of_type(ModelCallEnded)
    [run_end] = events.of_type(RunEnded)
    assert (model_end.status, run_end.status) == ("cancelled", "cancelled")
    assert run_end.error is None
    assert events.unmatched() == []


# ---------------------------------------------------------------------------------- model hooks


async def test_on_model_call_start(events: RecordingTracer) -> None:
    model = calc_model()
    await Agent("calc", model, tools=[add]).run("1 + 2?")

    [run] = events.of_type(RunStarted)
    first, second = events.of_type(ModelCallStarted)
    for started in (first, second):
        assert_ids(started)
        assert started.parent_span_id == run.span_id
        assert (started.run_id, started.trace_id, started.agent) == (run.run_id, run.trace_id, "calc")
        assert (started.model, started.provider, started.purpose) == ("scripted", "scripted", "turn")
        assert started.tools == ("add",)
        assert started.span_id != run.span_id
    assert first.span_id != second.span_id
    assert (first.turn, second.turn) == (0, 1)
    assert first.messages == (Message.user("1 + 2?"),)
    assert len(second.messages) == 3
    assert second.messages[-1].role == "tool"
    assert second.messages[-1].content == "3"
    assert model.requests[0].span is not None
    assert model.requests[0].span.span_id == first.span_id


async def test_on_model_call_end(events: RecordingTracer) -> None:
    await Agent("calc", calc_model(), tools=[add]).run("1 + 2?")

    starts = events.of_type(ModelCallStarted)
    first, second = events.of_type(ModelCallEnded)
    for start, end in zip(starts, (first, second), strict=True):
        assert_ids(end)
        assert end.span_id == start.span_id
        assert end.parent_span_id == start.parent_span_id
        assert end.status == "ok"
        assert end.error is None
        assert start.timestamp_ns <= end.timestamp_ns
        assert end.time_to_first_token_s is not None
        assert 0 <= end.time_to_first_token_s <= end.duration_s
    assert first.usage == Usage(10, 5, requests=1)
    assert second.usage == Usage(20, 4, cache_read_tokens=3, requests=1)
    assert (first.finish_reason, second.finish_reason) == ("tool_calls", "stop")
    assert first.output is not None
    assert [c.name for c in first.output.tool_calls] == ["add"]
    assert second.output == Message.assistant("It is 3.")


async def test_on_model_call_end_when_the_model_fails(events: RecordingTracer) -> None:
    with pytest.raises(ModelError):
        await Agent("failing", ScriptedModel([Step(error=ConnectionError("reset"))])).run("hi")

    [end] = events.of_type(ModelCallEnded)
    assert end.status == "error"
    assert end.error is not None
    assert end.error.type == "ModelError"
    assert "ConnectionError" in end.error.message
    assert "reset" in end.error.message
    assert end.usage == Usage()
    assert end.output is None
    assert events.unmatched() == []


async def test_on_model_call_end_estimates_usage_the_model_does_not_report(events: RecordingTracer) -> None:
    from tracedagent import ModelResponse

    model = FunctionModel(lambda messages, request: ModelResponse(Message.assistant("an answer")))
    await Agent("estimating", model).run("a question")

    [end] = events.of_type(ModelCallEnded)
    assert end.usage.estimated is True
    assert end.usage.input_tokens > 0
    assert end.usage.output_tokens > 0
    [run_end] = events.of_type(RunEnded)
    assert run_end.usage.estimated is True


# ----------------------------------------------------------------------------------- tool hooks


async def test_on_tool_call_start(events: RecordingTracer) -> None:
    model = ScriptedModel([Step(tool_calls=[("add", {"a": 1, "b": 2}), ("add", {"a": 3, "b": 4})]), "3 and 7"])
    await Agent("calc", model, tools=[add]).run("sums")

    [run] = events.of_type(RunStarted)
    [model_start, _] = events.of_type(ModelCallStarted)
    starts = events.of_type(ToolCallStarted)
    calls = model.steps[0].calls()
    assert [s.call_id for s in sorted(starts, key=lambda s: s.arguments)] == [c.id for c in calls]
    for started in starts:
        assert_ids(started)
        assert started.tool == "add"
        assert started.parent_span_id == run.span_id
        assert started.span_id not in (run.span_id, model_start.span_id)
        assert (started.run_id, started.trace_id, started.agent) == (run.run_id, run.trace_id, "calc")
    assert sorted(s.arguments for s in starts) == ['{"a": 1, "b": 2}', '{"a": 3, "b": 4}']
    assert starts[0].span_id != starts[1].span_id


async def test_on_tool_call_end(events: RecordingTracer) -> None:
    await Agent("calc", calc_model(), tools=[add]).run("1 + 2?")

    [start] = events.of_type(ToolCallStarted)
    [end] = events.of_type(ToolCallEnded)
    assert_ids(end)
    assert (end.span_id, end.parent_span_id, end.call_id, end.tool) == (
        start.span_id,
        start.parent_span_id,
        start.call_id,
        "add",
    )
    assert end.status == "ok"
    assert end.error is None
    assert end.result == "3"
    assert end.duration_s >= 0
    assert start.timestamp_ns <= end.timestamp_ns
    hooks = events.hooks()
    assert hooks.index("on_tool_call_start") < hooks.index("on_tool_call_end")


@pytest.mark.parametrize(
    ("call", "status", "error_type"),
    [
        (("explode", {"reason": "x"}), "error", "ValueError"),
        (("hang", {}), "timeout", "ToolTimeout"),
        (("missing", {}), "error", "UnknownToolError"),
        (("add", {"a": "one"}), "error", "ToolArgumentsError"),
    ],
)
async def test_on_tool_call_end_statuses(
    events: RecordingTracer, call: tuple[str, dict[str, Any]], status: str, error_type: str
) -> None:
    model = ScriptedModel([Step(tool_calls=[call]), "recovered"])
    result = await Agent("tools", model, tools=[add, explode, hang]).run("go")

    assert result.output == "recovered"
    [end] = events.of_type(ToolCallEnded)
    assert end.status == status
    assert end.error is not None
    assert end.error.type == error_type
    assert end.result
    tool_message = result.messages[2]
    assert tool_message.role == "tool"
    assert tool_message.is_error is True
    assert tool_message.content == end.result
    assert events.unmatched() == []


# ----------------------------------------------------------------------------------- compaction


async def test_on_compaction(events: RecordingTracer) -> None:
    history: list[Message] = []
    for i in range(6):
        history += [Message.user(f"question {i} " + "x" * 200), Message.assistant(f"answer {i} " + "y" * 200)]
    agent = Agent("compacting", ScriptedModel(["ok"]), compaction=DropOldest(max_tokens=200))
    await agent.run("latest question", messages=history)

    assert_spec("on_compaction", ContextCompacted)
    [run] = events.of_type(RunStarted)
    [compacted] = events.of_type(ContextCompacted)
    [model_start] = events.of_type(ModelCallStarted)
    assert_ids(compacted)
    assert compacted.span_id == run.span_id
    assert compacted.run_id == run.run_id
    assert compacted.strategy == "drop_oldest"
    assert compacted.messages_before == 13
    assert 0 < compacted.messages_after < compacted.messages_before
    assert 0 < compacted.tokens_after <= 200 < compacted.tokens_before
    assert compacted.estimated is True
    assert len(model_start.messages) == compacted.messages_after
    assert events.hooks() == ["on_run_start", "on_compaction", "on_model_call_start", "on_model_call_end", "on_run_end"]


# ------------------------------------------------------------------------- hooks fired by later work


async def test_on_interrupt(fresh_registry: Any) -> None:
    assert_spec("on_interrupt", RunInterrupted)
    event = RunInterrupted(**ids(), interruptions=(Interruption("call_1", "delete", "{}", "needs approval"),))
    assert dispatched_via("on_interrupt", event) == [event]


async def test_on_resume(fresh_registry: Any) -> None:
    assert_spec("on_resume", RunResumed)
    fields = {f.name for f in dataclasses.fields(RunResumed)}
    assert {"previous_span_id", "waited_s"} <= fields
    event = RunResumed(**ids(), previous_span_id="12" * 8, waited_s=3.5)
    assert dispatched_via("on_resume", event) == [event]


async def test_on_checkpoint(fresh_registry: Any) -> None:
    assert_spec("on_checkpoint", CheckpointSaved)
    assert {"bytes", "duration_s"} <= {f.name for f in dataclasses.fields(CheckpointSaved)}
    event = CheckpointSaved(**ids(), bytes=512, duration_s=0.002, store="memory", step=1)
    assert dispatched_via("on_checkpoint", event) == [event]


async def test_on_circuit_change(fresh_registry: Any) -> None:
    assert_spec("on_circuit_change", CircuitStateChanged)
    assert {"tool", "old", "new"} <= {f.name for f in dataclasses.fields(CircuitStateChanged)}
    event = CircuitStateChanged(**ids(), tool="search", old="closed", new="open", reason="5 failures")
    assert dispatched_via("on_circuit_change", event) == [event]


async def test_on_retry(fresh_registry: Any) -> None:
    assert_spec("on_retry", RetryScheduled)
    assert {"target", "attempt", "delay_s", "error"} <= {f.name for f in dataclasses.fields(RetryScheduled)}
    event = RetryScheduled(
        **ids(), target="search", kind="tool", attempt=2, delay_s=0.5, error=ErrorInfo("TimeoutError", "slow")
    )
    assert dispatched_via("on_retry", event) == [event]


def test_every_observer_hook_has_an_event_class_and_a_spec() -> None:
    classes = [RunStarted, RunEnded, ModelCallStarted, ModelCallEnded, ToolCallStarted, ToolCallEnded]
    classes += [RunInterrupted, RunResumed, ContextCompacted, CheckpointSaved, CircuitStateChanged, RetryScheduled]
    classes += [HandoffOccurred]
    assert sorted(c.hook for c in classes) == sorted(hookspecs.OBSERVER_HOOKS)
    for cls in classes:
        assert list(inspect.signature(getattr(hookspecs, cls.hook)).parameters) == ["event"]
        event = cls(**ids())
        with pytest.raises(dataclasses.FrozenInstanceError):
            event.agent = "other"  # type: ignore[misc]
        assert not hasattr(event, "__dict__")
    for end in (RunEnded, ModelCallEnded, ToolCallEnded):
        assert {"duration_s", "status", "error"} <= {f.name for f in dataclasses.fields(end)}


# ------------------------------------------------------------------------------------- decider


def request() -> ToolCallRequest:
    return ToolCallRequest(
        tool="delete", call_id="call_1", arguments={}, raw_arguments="{}", run_id="ab" * 16, agent="a"
    )


async def test_approve_tool_call(fresh_registry: Any) -> None:
    spec = hookspecs.approve_tool_call
    assert spec.tracedagent_spec["firstresult"] is True
    assert list(inspect.signature(spec).parameters) == ["call"]
    seen: list[str] = []

    class Abstains:
        @hookimpl
        def approve_tool_call(self, call: ToolCallRequest) -> None:
            seen.append(f"abstains:{call.tool}")

    class Denies:
        @hookimpl
        def approve_tool_call(self, call: ToolCallRequest) -> str:
            seen.append("denies")
            return "deny"

    class Allows:
        @hookimpl
        def approve_tool_call(self, call: ToolCallRequest) -> str:
            seen.append("allows")
            return "allow"

    # pluggy calls the last registered first: Abstains, then Denies; Allows is never asked.
    for plugin in (Allows(), Denies(), Abstains()):
        tracedagent.register(plugin)
    assert await get_dispatcher().decide("approve_tool_call", call=request()) == "deny"
    assert seen == ["abstains:delete", "denies"]


async def test_approve_tool_call_with_no_decider_returns_none(fresh_registry: Any) -> None:
    assert await get_dispatcher().decide("approve_tool_call", call=request()) is None


async def test_approve_tool_call_may_return_an_awaitable(fresh_registry: Any) -> None:
    class AsksAPerson:
        @hookimpl
        async def approve_tool_call(self, call: ToolCallRequest) -> str:
            await asyncio.sleep(0)
            return "interrupt"

    class ReturnsAFuture:
        @hookimpl
        def approve_tool_call(self) -> asyncio.Future[Any]:
            future = asyncio.get_running_loop().create_future()
            future.set_result(None)
            return future

    tracedagent.register(AsksAPerson())
    tracedagent.register(ReturnsAFuture())
    assert await get_dispatcher().decide("approve_tool_call", call=request()) == "interrupt"


async def test_approve_tool_call_fails_closed_and_counts_a_raising_decider(
    fresh_registry: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A decider that raises (sync or async) is counted and logged once, and the decision fails closed:
    the dispatcher raises DeciderFailed naming it, never passing the call on to the next decider."""
    name = f"raising-{uuid.uuid4().hex[:8]}"
    async_name = f"async-raising-{uuid.uuid4().hex[:8]}"

    class Allows:
        @hookimpl
        def approve_tool_call(self, call: ToolCallRequest) -> str:
            return "allow"

    class Raises:
        @hookimpl
        def approve_tool_call(self, call: ToolCallRequest) -> str:
            raise RuntimeError("policy service down")

    class RaisesLater:
        @hookimpl
        async def approve_tool_call(self, call: ToolCallRequest) -> str:
            raise RuntimeError("policy service down too")

    tracedagent.register(Allows(), "allows")
    for plugin, plugin_name in ((Raises(), name), (RaisesLater(), async_name)):
        tracedagent.register(plugin, plugin_name)
        for _ in range(2):
            with pytest.raises(DeciderFailed, match=plugin_name) as failed:
                await get_dispatcher().decide("approve_tool_call", call=request())
            assert failed.value.plugin == plugin_name
            assert isinstance(failed.value.error, RuntimeError)
        tracedagent.unregister(plugin_name)
    assert await get_dispatcher().decide("approve_tool_call", call=request()) == "allow"
    errors = tracedagent.plugin_errors()
    assert errors[(name, "approve_tool_call")] == 2
    assert errors[(async_name, "approve_tool_call")] == 2
    logged = [r for r in caplog.records if name in r.getMessage() and "approve_tool_call" in r.getMessage()]
    assert len(logged) == 1


# ------------------------------------------------------------------------------- registration


async def test_a_hookimpl_without_arguments_works(events: RecordingTracer) -> None:
    calls: list[str] = []

    class Counter:
        @hookimpl
        def on_run_start(self) -> None:
            calls.append("start")

        @hookimpl
        def on_tool_call_end(self) -> None:
            calls.append("tool end")

    name = tracedagent.register(Counter(), f"no-arguments-{uuid.uuid4().hex[:8]}")
    await Agent("calc", calc_model(), tools=[add]).run("1 + 2?")
    assert calls == ["start", "tool end"]
    assert not [key for key in tracedagent.plugin_errors() if key[0] == name]


def test_a_misspelled_hook_fails_at_registration(fresh_registry: Any) -> None:
    class Misspelled:
        @hookimpl
        def on_run_strat(self, event: RunStarted) -> None:
            pass

    with pytest.raises(PluginError, match="on_run_strat"):
        tracedagent.register(Misspelled(), "misspelled")
    assert "misspelled" not in [p.name for p in tracedagent.list_plugins()]
    with pytest.raises(PluginError, match="on_run_strat"):
        Agent("a", ScriptedModel(["hi"]), plugins=[Misspelled()])


def test_a_wrong_argument_name_fails_at_registration(fresh_registry: Any) -> None:
    class WrongArgument:
        @hookimpl
        def on_run_end(self, evt: RunEnded) -> None:
            pass

    with pytest.raises(PluginError, match="evt"):
        tracedagent.register(WrongArgument(), "wrong-argument")
    with pytest.raises(PluginError, match="evt"):
        Agent("a", ScriptedModel(["hi"]), plugins=[WrongArgument()])


async def test_per_agent_plugins_see_only_their_agent(fresh_registry: Any) -> None:
    own = RecordingTracer()
    everything = RecordingTracer()
    tracedagent.register(everything, "everything")
    mine = Agent("mine", ScriptedModel(["a"]), plugins=[own])
    other = Agent("other", ScriptedModel(["b"]))

    first = await mine.run("hi")
    second = await other.run("hi")

    assert {e.agent for e in own.events} == {"mine"}
    assert {e.run_id for e in own.events} == {first.run_id}
    assert own.hooks() == ["on_run_start", "on_model_call_start", "on_model_call_end", "on_run_end"]
    assert {e.run_id for e in everything.events} == {first.run_id, second.run_id}
    assert len(everything.events) == 8
    assert [e.agent for e in everything.of_type(RunStarted)] == ["mine", "other"]


async def test_per_agent_plugins_see_process_wide_changes_and_run_first(fresh_registry: Any) -> None:
    order: list[str] = []

    class Named:
        def __init__(self, name: str) -> None:
            self.name = name

        @hookimpl
        def on_run_start(self, event: RunStarted) -> None:
            order.append(self.name)

    agent = Agent("a", ScriptedModel(["x", "y"]), plugins=[Named("agent")])
    await agent.run("one")
    late = tracedagent.register(Named("global"))
    await agent.run("two")
    tracedagent.unregister(late)
    assert order == ["agent", "agent", "global"]


async def test_a_plugin_given_to_an_agent_and_registered_process_wide_gets_each_event_once(
    fresh_registry: Any,
) -> None:
    both = RecordingTracer()
    tracedagent.register(both, "both")
    await Agent("a", ScriptedModel(["x"]), plugins=[both]).run("hi")
    assert both.hooks() == ["on_run_start", "on_model_call_start", "on_model_call_end", "on_run_end"]


def test_unregister_stops_delivery(fresh_registry: Any) -> None:
    recorder = RecordingTracer()
    name = tracedagent.register(recorder)
    Agent("a", ScriptedModel(["x"])).run_sync("hi")
    tracedagent.unregister(name)
    Agent("b", ScriptedModel(["y"])).run_sync("hi")
    assert {e.agent for e in recorder.events} == {"a"}
    with pytest.raises(PluginError):
        tracedagent.unregister(name)


def test_hook_wrapper_is_refused_at_registration(fresh_registry: object) -> None:
    class Wrapper:
        @tracedagent.hookimpl(wrapper=True)
        def on_run_start(self, event: object) -> object:
            return (yield)

    with pytest.raises(tracedagent.PluginError, match="hook wrapper"):
        tracedagent.register(Wrapper())
    assert "Wrapper" not in [info.name for info in tracedagent.list_plugins()]
    with pytest.raises(tracedagent.PluginError, match="hook wrapper"):
        tracedagent.Agent("a", tracedagent.testing.ScriptedModel(["hi"]), plugins=[Wrapper()])
