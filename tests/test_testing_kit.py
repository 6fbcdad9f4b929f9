"""The test kit users rely on: ScriptedModel, FunctionModel, RecordingTracer and capture_events()."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

import tracedagent
from tracedagent import (
    Agent,
    ConfigurationError,
    DropOldest,
    Message,
    ModelCallStarted,
    ModelError,
    ModelRequest,
    ModelResponse,
    RunEnded,
    RunStarted,
    TextDelta,
    ThinkingDelta,
    ToolCall,
    ToolCallEnded,
    ToolCallStarted,
    Usage,
    tool,
)
from tracedagent.testing import FunctionModel, RecordingTracer, ScriptedModel, ScriptExhausted, Step, capture_events


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool
def explode() -> str:
    """Always fails."""
    raise ValueError("exploded")


@pytest.fixture
def events(fresh_registry: Any) -> Iterator[RecordingTracer]:
    with capture_events() as recorder:
        yield recorder


async def play(model: Any, messages: Sequence[Message] = (Message.user("hi"),), **request: Any) -> list[Any]:
    """Every part a model streams for one request."""
    return [part async for part in model.stream(ModelRequest(list(messages), **request))]


# -------------------------------------------------------------------------------- ScriptedModel


async def test_scripted_text() -> None:
    model = ScriptedModel(["Hello there."])
    result = await Agent("a", model).run("hi")
    assert result.output == "Hello there."
    assert result.status == "completed"
    assert model.calls == 1
    model.assert_all_used()


async def test_scripted_chunks_and_thinking() -> None:
    parts = await play(ScriptedModel([Step(text="abcdefghij", chunks=3, thinking="hmm")]))
    assert parts[0] == ThinkingDelta("hmm")
    deltas = [p.text for p in parts if isinstance(p, TextDelta)]
    assert len(deltas) == 3
    assert "".join(deltas) == "abcdefghij"
    response = parts[-1]
    assert isinstance(response, ModelResponse)
    assert response.message == Message("assistant", "abcdefghij", thinking="hmm")
    assert response.finish_reason == "stop"
    assert sum(isinstance(p, ModelResponse) for p in parts) == 1


async def test_scripted_chunks_reach_agent_stream() -> None:
    agent = Agent("a", ScriptedModel([Step(text="one two three", chunks=3)]))
    deltas = [e.text async for e in agent.stream("hi") if isinstance(e, TextDelta)]
    assert len(deltas) == 3
    assert "".join(deltas) == "one two three"


async def test_scripted_tool_calls(events: RecordingTracer) -> None:
    model = ScriptedModel(
        [
            Step(tool_calls=[("add", {"a": 1, "b": 2}), ToolCall("my-id", "add", '{"a": 5, "b": 5}')]),
            Step(tool_calls=[{"name": "add", "arguments": {"a": 0, "b": 0}}]),
            "3, 10 and 0",
        ]
    )
    result = await Agent("calc", model, tools=[add]).run("sums")

    first_calls = model.steps[0].calls()
    assert first_calls[1].id == "my-id"
    assert first_calls[0].id != first_calls[1].id
    assert json.loads(first_calls[0].arguments) == {"a": 1, "b": 2}
    assert [m.content for m in result.messages if m.role == "tool"] == ["3", "10", "0"]
    assert [e.call_id for e in events.of_type(ToolCallEnded)][-1] == model.steps[1].calls()[0].id
    assert result.output == "3, 10 and 0"
    assert [r.tools[0].name for r in model.requests] == ["add"] * 3
    model.assert_all_used()


async def test_scripted_usage() -> None:
    model = ScriptedModel([Step(text="x", usage=Usage(7, 3, reasoning_tokens=2, requests=1))])
    result = await Agent("a", model).run("hi")
    assert result.usage == Usage(7, 3, reasoning_tokens=2, requests=1)
    assert result.usage.estimated is False


async def test_scripted_usage_is_estimated_from_text_when_not_given() -> None:
    short = await Agent("a", ScriptedModel(["ok"])).run("hi")
    long = await Agent("a", ScriptedModel(["ok " * 100])).run("hi " * 100)
    assert short.usage.requests == 1
    assert 0 < short.usage.input_tokens < long.usage.input_tokens
    assert 0 < short.usage.output_tokens < long.usage.output_tokens


async def test_scripted_errors(events: RecordingTracer) -> None:
    boom = ConnectionError("connection reset")
    for script in ([boom], [Step(error=boom)]):
        with pytest.raises(ModelError, match="connection reset") as raised:
            await Agent("a", ScriptedModel(script)).run("hi")
        assert raised.value.__cause__ is boom
        assert raised.value.result is not None
        assert raised.value.result.status == "failed"
    assert [e.status for e in events.of_type(RunEnded)] == ["failed", "failed"]


async def test_scripted_delay_is_awaited_and_cancellable(events: RecordingTracer) -> None:
    task = asyncio.ensure_future(Agent("a", ScriptedModel([Step(text="late", delay=3600)])).run("hi"))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not task.done()
    assert len(events.of_type(ModelCallStarted)) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert events.unmatched() == []


async def test_scripted_short_delay_still_answers() -> None:
    result = await Agent("a", ScriptedModel([Step(text="soon", delay=0.001)])).run("hi")
    assert result.output == "soon"


def test_step_validation_and_shorthands() -> None:
    with pytest.raises(ConfigurationError):
        Step(text="x", delay=-1)
    with pytest.raises(ConfigurationError):
        Step(text="x", chunks=0)
    with pytest.raises(ConfigurationError):
        Step(tool_calls=["not a call"])  # type: ignore[list-item]
    with pytest.raises(ConfigurationError):
        ScriptedModel([42])  # type: ignore[list-item]
    error = ValueError("x")
    assert Step.of("text").text == "text"
    assert Step.of(error).error is error
    assert [c.name for c in Step.of(("add", {"a": 1})).calls()] == ["add"]
    assert [c.name for c in Step.of([("add", {}), ("sub", {})]).calls()] == ["add", "sub"]
    assert Step.of(ToolCall("i", "add")).calls() == (ToolCall("i", "add"),)


async def test_per_run_scripts_replay_for_each_run() -> None:
    model = ScriptedModel([Step(tool_calls=[("add", {"a": 1, "b": 1})]), "2"], per_run=True)
    agent = Agent("a", model, tools=[add])
    results = await asyncio.gather(*(agent.run(f"run {i}") for i in range(3)))
    assert [r.output for r in results] == ["2", "2", "2"]
    assert model.calls == 6
    model.assert_all_used()


async def test_without_per_run_a_script_is_shared() -> None:
    model = ScriptedModel(["first", "second"])
    agent = Agent("a", model)
    assert [(await agent.run("x")).output for _ in range(2)] == ["first", "second"]


async def test_assert_all_used_fails_on_unplayed_steps() -> None:
    model = ScriptedModel(["one", "two", "three"])
    await Agent("a", model).run("hi")
    with pytest.raises(AssertionError, match="2 of 3 steps never played"):
        model.assert_all_used()


async def test_assert_all_used_per_run() -> None:
    model = ScriptedModel([Step(tool_calls=[("add", {"a": 1, "b": 1})]), "2"], per_run=True)
    with pytest.raises(AssertionError, match="no run called it"):
        model.assert_all_used()
    await Agent("a", model, tools=[add]).run("hi")
    model.assert_all_used()
    short = ScriptedModel(["one", "two"], per_run=True)
    await Agent("b", short).run("hi")
    with pytest.raises(AssertionError, match="runs that used fewer"):
        short.assert_all_used()


async def test_over_calling_a_script_fails_the_run_with_model_error(events: RecordingTracer) -> None:
    model = ScriptedModel([Step(tool_calls=[("add", {"a": 1, "b": 1})])])
    with pytest.raises(ModelError, match="called 2 times but has 1 steps") as raised:
        await Agent("a", model, tools=[add]).run("hi")
    assert isinstance(raised.value.__cause__, ScriptExhausted)
    assert isinstance(raised.value.__cause__, AssertionError)
    assert raised.value.result is not None
    assert raised.value.result.turns == 1
    [end] = events.of_type(RunEnded)
    assert end.status == "failed"
    assert events.unmatched() == []


# -------------------------------------------------------------------------------- FunctionModel


async def test_function_model_sync_returning_text() -> None:
    seen: list[tuple[int, str | None]] = []

    def answer(messages: Sequence[Message], request: ModelRequest) -> str:
        seen.append((len(messages), request.instructions))
        return f"you said {messages[-1].content}"

    result = await Agent("a", FunctionModel(answer), instructions="be brief").run("hello")
    assert result.output == "you said hello"
    assert seen == [(1, "be brief")]
    assert result.usage.requests == 1


async def test_function_model_async_returning_a_message() -> None:
    async def answer(messages: Sequence[Message], request: ModelRequest) -> Message:
        await asyncio.sleep(0)
        return Message.assistant("from a coroutine")

    result = await Agent("a", FunctionModel(answer)).run("hello")
    assert result.output == "from a coroutine"


async def test_function_model_tool_calls_then_text(events: RecordingTracer) -> None:
    def answer(messages: Sequence[Message], request: ModelRequest) -> list[ToolCall] | str:
        if messages[-1].role == "tool":
            return f"the sum is {messages[-1].content}"
        assert [spec.name for spec in request.tools] == ["add"]
        return [ToolCall.of("c1", "add", {"a": 20, "b": 22})]

    result = await Agent("a", FunctionModel(answer, name="fn-model", provider="fn"), tools=[add]).run("add")
    assert result.output == "the sum is 42"
    started = events.of_type(ModelCallStarted)
    assert [(s.model, s.provider) for s in started] == [("fn-model", "fn")] * 2
    [tool_start] = events.of_type(ToolCallStarted)
    assert tool_start.call_id == "c1"


async def test_function_model_returning_a_model_response() -> None:
    def answer(messages: Sequence[Message], request: ModelRequest) -> ModelResponse:
        return ModelResponse(Message.assistant("done"), Usage(1, 2, requests=1), "length", "fn-2025")

    parts = await play(FunctionModel(answer))
    assert parts[0] == TextDelta("done")
    assert parts[-1] == ModelResponse(Message.assistant("done"), Usage(1, 2, requests=1), "length", "fn-2025")
    result = await Agent("a", FunctionModel(answer)).run("hi")
    assert result.usage == Usage(1, 2, requests=1)


async def test_function_model_raising_fails_the_run() -> None:
    def answer(messages: Sequence[Message], request: ModelRequest) -> str:
        raise TimeoutError("upstream timed out")

    with pytest.raises(ModelError, match="upstream timed out"):
        await Agent("a", FunctionModel(answer)).run("hi")


# ------------------------------------------------------------------------------ RecordingTracer


def make_start(run_id: str, span_id: str, agent: str = "a", n: int = 0) -> RunStarted:
    return RunStarted(
        run_id=run_id, trace_id="t" * 32, span_id=span_id, parent_span_id=None, agent=agent, timestamp_ns=n
    )


def test_recording_tracer_is_thread_safe_and_keeps_each_threads_order() -> None:
    tracer = RecordingTracer()
    threads, per_thread = 8, 500
    barrier = threading.Barrier(threads)

    def record(t: int) -> None:
        barrier.wait()
        for n in range(per_thread):
            tracer.on_run_start(make_start(f"run{t}", f"{n:016x}", n=n))

    workers = [threading.Thread(target=record, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert len(tracer) == threads * per_thread
    for t in range(threads):
        assert [e.timestamp_ns for e in tracer.for_run(f"run{t}")] == list(range(per_thread))


def test_recording_tracer_reading() -> None:
    tracer = RecordingTracer()
    start = make_start("r1", "1" * 16)
    other = make_start("r2", "2" * 16, agent="b")
    end = RunEnded(run_id="r1", trace_id="t" * 32, span_id="1" * 16, parent_span_id=None, agent="a", timestamp_ns=2)
    tracer.on_run_start(start)
    tracer.on_run_start(other)
    tracer.on_run_end(end)

    assert tracer.events == [start, other, end]
    assert list(tracer) == [start, other, end]
    assert tracer.hooks() == ["on_run_start", "on_run_start", "on_run_end"]
    assert tracer.of_type(RunEnded) == [end]
    assert tracer.of_type(RunStarted, RunEnded) == [start, other, end]
    assert tracer.for_run("r1") == [start, end]
    assert tracer.unmatched() == [other]
    tracer.events.clear()  # a copy: the recording is not changed
    assert len(tracer) == 3
    tracer.clear()
    assert tracer.events == []


async def test_span_tree_snapshot(events: RecordingTracer) -> None:
    inner = Agent("inner", ScriptedModel(["inner answer"]))

    @tool
    async def ask_inner(question: str) -> str:
        """Ask the inner agent."""
        return (await inner.run(question)).output or ""

    history = [Message.user("old " * 100), Message.assistant("older " * 100)] * 3
    outer = Agent(
        "outer",
        ScriptedModel(
            [
                Step(tool_calls=[("ask_inner", {"question": "q"})]),
                Step(tool_calls=[("explode", {})]),
                "done",
            ]
        ),
        tools=[ask_inner, explode],
        compaction=DropOldest(max_tokens=150),
    )
    result = await outer.run("go", messages=history)

    assert events.format_span_tree() == (
        "run outer [completed] {compaction}\n"
        "  model scripted:scripted [ok]\n"
        "  tool ask_inner [ok]\n"
        "    run inner [completed]\n"
        "      model scripted:scripted [ok]\n"
        "  model scripted:scripted [ok]\n"
        "  tool explode [error]\n"
        "  model scripted:scripted [ok]"
    )
    # Filtered to the outer run, the inner run (another run_id in the same trace) is left out.
    assert events.format_span_tree(run_id=result.run_id) == (
        "run outer [completed] {compaction}\n"
        "  model scripted:scripted [ok]\n"
        "  tool ask_inner [ok]\n"
        "  model scripted:scripted [ok]\n"
        "  tool explode [error]\n"
        "  model scripted:scripted [ok]"
    )
    [root] = events.span_tree(run_id=result.run_id)
    assert root["span"] == "run"
    assert root["name"] == "outer"
    assert root["status"] == "completed"
    assert root["events"] == ["compaction"]
    assert [(c["span"], c["name"], c["status"]) for c in root["children"]] == [
        ("model", "scripted:scripted", "ok"),
        ("tool", "ask_inner", "ok"),
        ("model", "scripted:scripted", "ok"),
        ("tool", "explode", "error"),
        ("model", "scripted:scripted", "ok"),
    ]
    assert root["children"][1]["children"] == []  # the inner run belongs to another run_id


async def test_span_tree_of_a_failed_and_of_a_running_run(events: RecordingTracer) -> None:
    with pytest.raises(ModelError):
        await Agent("broken", ScriptedModel([RuntimeError("down")])).run("hi")
    assert events.format_span_tree() == "run broken [failed]\n  model scripted:scripted [error]"

    events.clear()
    task = asyncio.ensure_future(Agent("slow", ScriptedModel([Step(text="x", delay=3600)])).run("hi"))
    for _ in range(20):
        await asyncio.sleep(0)
    assert events.format_span_tree() == "run slow [None]\n  model scripted:scripted [None]"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert events.format_span_tree() == "run slow [cancelled]\n  model scripted:scripted [cancelled]"


# ------------------------------------------------------------------------------- capture_events


def names() -> set[str]:
    return {p.name for p in tracedagent.list_plugins()}


def test_capture_events_records_and_restores(fresh_registry: Any) -> None:
    before = names()
    with capture_events() as recorded:
        assert names() - before == {"recording"}
        Agent("inside", ScriptedModel(["x"])).run_sync("hi")
    assert names() == before
    Agent("outside", ScriptedModel(["y"])).run_sync("hi")
    assert {e.agent for e in recorded.events} == {"inside"}
    assert recorded.hooks() == ["on_run_start", "on_model_call_start", "on_model_call_end", "on_run_end"]


def test_capture_events_restores_when_the_block_raises(fresh_registry: Any) -> None:
    before = names()
    with pytest.raises(RuntimeError, match="in the block"), capture_events():
        raise RuntimeError("in the block")
    assert names() == before


def test_capture_events_nests(fresh_registry: Any) -> None:
    with capture_events() as outer:
        Agent("one", ScriptedModel(["x"])).run_sync("hi")
        with capture_events() as inner:
            Agent("two", ScriptedModel(["y"])).run_sync("hi")
        Agent("three", ScriptedModel(["z"])).run_sync("hi")
    assert [e.agent for e in outer.of_type(RunStarted)] == ["one", "two", "three"]
    assert [e.agent for e in inner.of_type(RunStarted)] == ["two"]
    assert "recording" not in names()
    assert "recording-2" not in names()


def test_the_event_log_plugin_records_another_process_and_says_what_it_needs(tmp_path: Path) -> None:
    script = (
        "from tracedagent import Agent\n"
        "from tracedagent.testing import ScriptedModel\n"
        "print(Agent('a', ScriptedModel(['hi'])).run_sync('hello').output)\n"
    )
    log = tmp_path / "events.jsonl"
    env = {**os.environ, "TRACEDAGENT_PLUGINS": "tracedagent.testing.event_log", "TRACEDAGENT_EVENT_LOG": str(log)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, "hi"), done.stderr
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(x["hook"], x["type"]) for x in lines] == [
        ("on_run_start", "RunStarted"),
        ("on_model_call_start", "ModelCallStarted"),
        ("on_model_call_end", "ModelCallEnded"),
        ("on_run_end", "RunEnded"),
    ]
    assert len({x["pid"] for x in lines}) == 1
    assert lines[0]["pid"] != os.getpid()  # the child's
    assert lines[-1]["status"] == "completed"
    assert lines[-1]["usage"]["requests"] == 1

    env.pop("TRACEDAGENT_EVENT_LOG")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "TRACEDAGENT_EVENT_LOG" in done.stderr
    assert "set it to a path" in done.stderr
