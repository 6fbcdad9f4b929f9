"""Each stage is one span: one start and exactly one end on every exit path, the header written once,
and a tool that fails in any way (even with an exception that cannot be printed) never fails the run."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

import tracedagent
from tracedagent import (
    Agent,
    Event,
    Message,
    ModelCallEnded,
    ModelCallStarted,
    ModelError,
    RunEnded,
    RunResumed,
    RunStarted,
    SQLiteCheckpointStore,
    ToolCallEnded,
    ToolCallStarted,
    tool,
)
from tracedagent._dispatch import Dispatcher
from tracedagent._plugins import new_plugin_manager, register_checked
from tracedagent._span import Span, Stage
from tracedagent.testing import RecordingTracer, ScriptedModel, Step


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken too")


class NoText:
    """A tool result that is neither JSON nor printable."""

    def __str__(self) -> str:
        raise ValueError("no text")

    def __repr__(self) -> str:
        raise ValueError("no repr")


def one_call(name: str, **arguments: Any) -> ScriptedModel:
    return ScriptedModel([Step(tool_calls=[(name, arguments)]), "Done."])


def assert_one_end_each(tracer: RecordingTracer) -> None:
    assert tracer.unmatched() == []
    for start, end in ((RunStarted, RunEnded), (ModelCallStarted, ModelCallEnded), (ToolCallStarted, ToolCallEnded)):
        starts = [e.span_id for e in tracer.of_type(start)]
        ends = [e.span_id for e in tracer.of_type(end)]
        if start is RunStarted:
            continue  # a run's segments are checked by unmatched(): resumes open segments too
        assert sorted(starts) == sorted(ends), f"{start.__name__} and {end.__name__} differ"
        assert len(set(ends)) == len(ends), f"a {end.__name__} fired twice"


async def test_a_tool_raising_an_exception_whose_str_raises_ends_once_and_the_run_goes_on(
    tracer: RecordingTracer,
) -> None:
    @tool
    def broken() -> str:
        """Fails badly."""
        raise Unprintable()

    result = await Agent("a", one_call("broken"), tools=[broken]).run("go")

    assert result.status == "completed"
    assert result.output == "Done."
    (ended,) = tracer.of_type(ToolCallEnded)
    assert ended.status == "error"
    assert ended.error is not None
    assert ended.error.type == "Unprintable"
    tool_message = next(m for m in result.messages if m.role == "tool")
    assert tool_message.is_error
    assert "Unprintable" in (tool_message.content or "")
    assert_one_end_each(tracer)


async def test_a_tool_result_that_cannot_be_serialised_ends_once_and_the_run_goes_on(
    tracer: RecordingTracer,
) -> None:
    @tool
    def odd() -> Any:
        """Returns something odd."""
        return NoText()

    result = await Agent("a", one_call("odd"), tools=[odd]).run("go")

    assert result.status == "completed"
    (ended,) = tracer.of_type(ToolCallEnded)
    assert ended.status == "ok"
    assert "NoText" in ended.result
    assert_one_end_each(tracer)


async def test_a_model_failing_with_an_unprintable_error_fails_the_run_with_one_end_each(
    tracer: RecordingTracer,
) -> None:
    agent = Agent("a", ScriptedModel([Unprintable()]))
    with pytest.raises(ModelError, match="Unprintable") as failed:
        await agent.run("go")
    assert failed.value.result is not None
    assert failed.value.result.status == "failed"
    (model_end,) = tracer.of_type(ModelCallEnded)
    (run_end,) = tracer.of_type(RunEnded)
    assert model_end.status == "error"
    assert run_end.status == "failed"
    assert_one_end_each(tracer)


async def test_a_plugin_failing_in_the_tool_start_hook_does_not_stop_the_tool(tracer: RecordingTracer) -> None:
    class Breaks:
        @tracedagent.hookimpl
        def on_tool_call_start(self, event: Event) -> None:
            raise RuntimeError("boom")

    ran: list[int] = []

    @tool
    def work() -> str:
        """Works."""
        ran.append(1)
        return "ok"

    result = await Agent("a", one_call("work"), tools=[work], plugins=[Breaks()]).run("go")
    assert result.output == "Done."
    assert ran == [1]
    assert_one_end_each(tracer)


async def test_every_event_of_a_run_carries_the_header_of_its_span(tracer: RecordingTracer) -> None:
    @tool
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    result = await Agent("calc", one_call("add", a=1, b=2), tools=[add]).run("go")

    (run,) = tracer.of_type(RunStarted)
    for event in tracer.events:
        assert (event.run_id, event.trace_id, event.agent) == (result.run_id, result.trace_id, "calc")
        assert len(event.span_id) == 16
        assert event.timestamp_ns > 0
    for event in [*tracer.of_type(ModelCallStarted), *tracer.of_type(ToolCallEnded)]:
        assert event.parent_span_id == run.span_id


# --------------------------------------------------------------------------- the Stage on its own


def stage_dispatcher() -> tuple[Dispatcher, RecordingTracer]:
    recorder = RecordingTracer()
    pm = new_plugin_manager()
    register_checked(pm, recorder)
    return Dispatcher([pm]), recorder


def run_stage(body: Any) -> tuple[list[Event], list[Any]]:
    d, recorder = stage_dispatcher()
    streamed: list[Any] = []
    span = Span(d, "r" * 32, "t" * 32, "agent", None)
    escaped: BaseException | None = None
    try:
        with Stage(span, ToolCallStarted, ToolCallEnded, observer=streamed.append) as stage:
            assert stage.listened
            stage.start(("x", "c"), ())
            if body is not None:
                body(stage)
    except BaseException as exc:  # what the body raised goes on past the stage, unchanged
        escaped = exc
    assert (escaped is None) == (body is None)
    return recorder.events, streamed


def _raise(exc: BaseException) -> Any:
    def body(stage: Stage) -> None:
        raise exc

    return body


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (None, "ok", None),
        (_raise(ValueError("bad")), "error", "ValueError"),
        (_raise(Unprintable()), "error", "Unprintable"),
        (_raise(asyncio.CancelledError()), "cancelled", None),
        (_raise(KeyboardInterrupt()), "error", "KeyboardInterrupt"),
    ],
    ids=["ok", "error", "unprintable", "cancelled", "keyboard-interrupt"],
)
def test_a_stage_ends_exactly_once_on_every_exit(body: Any, status: str, error: str | None) -> None:
    events, streamed = run_stage(body)
    assert [type(e) for e in events] == [ToolCallStarted, ToolCallEnded]
    start, end = events
    assert streamed == events  # the observer (the run's stream) sees the same two events
    assert start.span_id == end.span_id
    assert isinstance(end, ToolCallEnded)
    assert end.status == status
    assert (end.error.type if end.error else None) == error
    assert end.duration_s >= 0
    assert (end.tool, end.call_id) == ("x", "c")


# Every pair of events a stage is made with (the run loop, the model step, the tool step), and the fields
# those events share: the end's fields must be the header, the shared ones, then status, error, duration_s.
STAGE_PAIRS = [
    (RunStarted, RunEnded, ()),
    (RunResumed, RunEnded, ()),
    (ModelCallStarted, ModelCallEnded, ("model", "provider", "turn", "purpose")),
    (ToolCallStarted, ToolCallEnded, ("tool", "call_id")),
]
HEADER = ["run_id", "trace_id", "span_id", "parent_span_id", "agent", "timestamp_ns"]


@pytest.mark.parametrize(("start", "end", "shared"), STAGE_PAIRS, ids=lambda v: getattr(v, "__name__", ""))
def test_each_stage_pair_has_the_layout_the_stage_builds(start: Any, end: Any, shared: tuple[str, ...]) -> None:
    start_fields = [f.name for f in dataclasses.fields(start)]
    end_fields = [f.name for f in dataclasses.fields(end)]
    assert start_fields[: 6 + len(shared)] == [*HEADER, *shared]
    assert end_fields[: 9 + len(shared)] == [*HEADER, *shared, "status", "error", "duration_s"]


def test_the_stages_events_carry_each_field_where_it_belongs() -> None:
    """A real run through every stage, each field checked by name: a value given in the wrong position
    would land under its neighbour's name."""
    recorder = RecordingTracer()

    @tool
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    model = ScriptedModel([Step(tool_calls=[("add", {"a": 1, "b": 2})]), "3"])
    agent = Agent("calc", model, tools=[add], plugins=[recorder])
    result = agent.run_sync("add 1 2", metadata={"k": "v"})
    events = recorder.events
    started = events[0]
    assert isinstance(started, RunStarted)
    assert (started.model, started.provider, started.metadata) == (model.name, model.provider, {"k": "v"})
    assert started.input[-1].content == "add 1 2"
    model_start, model_end = events[1], events[2]
    assert isinstance(model_start, ModelCallStarted)
    assert (model_start.model, model_start.turn, model_start.purpose) == (model.name, 0, "turn")
    assert model_start.tools == ("add",)
    assert model_start.messages[-1].content == "add 1 2"
    assert isinstance(model_end, ModelCallEnded)
    assert (model_end.model, model_end.provider) == (model.name, model.provider)
    assert (model_end.turn, model_end.purpose, model_end.status, model_end.error) == (0, "turn", "ok", None)
    assert model_end.duration_s >= 0
    assert model_end.output is not None
    assert model_end.output.tool_calls[0].name == "add"
    assert model_end.usage.requests == 1
    assert model_end.time_to_first_token_s is not None
    tool_start = next(e for e in events if isinstance(e, ToolCallStarted))
    tool_end = next(e for e in events if isinstance(e, ToolCallEnded))
    assert (tool_start.tool, tool_start.call_id) == ("add", tool_end.call_id)
    assert json.loads(tool_start.arguments) == {"a": 1, "b": 2}
    assert (tool_end.tool, tool_end.status, tool_end.error) == ("add", "ok", None)
    assert (tool_end.result, tool_end.reason) == ("3", None)
    ended = events[-1]
    assert isinstance(ended, RunEnded)
    assert (ended.status, ended.error, ended.turns, ended.output) == ("completed", None, 2, "3")
    assert ended.usage == result.usage
    assert ended.output_validation_failures == 0


def test_a_stage_makes_its_span_current_and_restores_the_outer_one() -> None:
    span = Span(Dispatcher([]), "r" * 32, "t" * 32, "agent", None)
    assert tracedagent.current_span() is None
    with Stage(span, ToolCallStarted, ToolCallEnded) as stage:
        assert not stage.listened  # no plugin implements the tool hooks here
        assert tracedagent.current_span() == span.context
    assert tracedagent.current_span() is None


# --------------------------------------------------------------------------------- bounded output


async def test_a_huge_tool_result_reaches_the_model_truncated_and_keeps_checkpoints_small(
    tracer: RecordingTracer, tmp_path: Path
) -> None:
    @tool
    def dump() -> str:
        """Dumps a lot."""
        return "x" * 50_000_000

    @tool(max_result_chars=1_000)
    def small() -> str:
        """Dumps a little too much."""
        return "y" * 5_000

    model = ScriptedModel([Step(tool_calls=[("dump", {}), ("small", {})]), "Done."])
    store = SQLiteCheckpointStore(tmp_path / "runs.db")
    result = await Agent("a", model, tools=[dump, small], checkpoints=store, max_result_chars=20_000).run("go")

    results = {m.name: m.content or "" for m in result.messages if m.role == "tool"}
    assert len(results["dump"]) == 20_000
    assert results["dump"].startswith("x" * 1000)
    assert "truncated: this tool result has 50,000,000 characters; the first 20,000 are shown" in results["dump"]
    assert len(results["small"]) == 1_000
    assert "the first 1,000 are shown" in results["small"]
    assert max(e.bytes for e in tracer.of_type(tracedagent.CheckpointSaved)) < 100_000
    assert {len(e.result) for e in tracer.of_type(ToolCallEnded)} == {20_000, 1_000}
    assert all(len(m.content or "") <= 20_000 for m in model.requests[-1].messages)


async def test_a_huge_error_message_is_bounded_too(tracer: RecordingTracer) -> None:
    @tool
    def explode() -> str:
        """Explodes verbosely."""
        raise RuntimeError("e" * 10_000_000)

    result = await Agent("a", one_call("explode"), tools=[explode], max_result_chars=5_000).run("go")
    (message,) = [m for m in result.messages if m.role == "tool"]
    assert message.is_error
    assert len(message.content or "") == 5_000
    assert "this error message has" in (message.content or "")
    (ended,) = tracer.of_type(ToolCallEnded)
    assert ended.error is not None
    assert len(ended.error.message) <= 4_000
    assert len(json.dumps(Message.tool("c", "explode", message.content or "").to_dict())) < 6_000


def test_max_result_chars_is_checked() -> None:
    with pytest.raises(tracedagent.ToolDefinitionError, match="max_result_chars"):
        tool(name="x", max_result_chars=0)(lambda: "x")
    with pytest.raises(tracedagent.ConfigurationError, match="max_result_chars"):
        Agent("a", ScriptedModel(["x"]), max_result_chars=-1)
