"""Bad input, everywhere it comes in: tool arguments, model output, checkpoint records, configuration.

Each one ends in a valid call, a graceful recovery, or a clear typed error naming what was wrong (a
``ToolArgumentsError`` the model can act on, a ``ModelBehaviorError`` / ``ModelStreamError``, a
``CheckpointError``, a ``ConfigurationError`` naming the setting), never an exception from deep inside a
library, and never a run that loses what it did.

Extends, without repeating: ``test_tools.py`` (the ``add`` tool against arbitrary JSON, nested models,
Annotated constraints), ``test_model_openai.py`` / ``test_model_anthropic.py`` (corrupted and split
transcripts), ``test_checkpoints.py`` (truncated, corrupted and newer records), ``test_model_http.py``
and the plugins' tests (each setting's own parser).
"""

from __future__ import annotations

import asyncio
import enum
import json
import math
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wire_server import Reply, WireServer, wire_server

import tracedagent
from tracedagent import (
    Agent,
    CheckpointError,
    ConfigurationError,
    InMemoryCheckpointStore,
    Message,
    ModelBehaviorError,
    ModelCallEnded,
    ModelResponse,
    ModelStreamError,
    RunContext,
    RunEnded,
    SQLiteCheckpointStore,
    Tool,
    ToolArgumentsError,
    ToolCall,
    ToolCallEnded,
    ToolCallStarted,
    Usage,
    _export,
    tool,
)
from tracedagent.models import AnthropicModel, OpenAIChatModel
from tracedagent.resilience import CircuitBreaker
from tracedagent.testing import FunctionModel, RecordingTracer, ScriptedModel, Step

GUARD_S = 10.0  # only a guard against hanging; never asserted on
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
RUNS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)


# =============================================================================== tool arguments


class Item(pydantic.BaseModel):
    name: str
    qty: Annotated[int, pydantic.Field(ge=1, le=99)]


class Address(pydantic.BaseModel):
    city: str
    zip: Annotated[str, pydantic.Field(pattern=r"^[0-9]{5}$")]


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


@tool
def plain(a: int, b: str = "x", c: float | None = None, flag: bool = False) -> str:
    """Plain scalars, some with defaults."""
    return "ok"


@tool
def order(items: list[Item], address: Address | None = None) -> str:
    """Nested models, a list of them and an optional one."""
    return "ok"


@tool
def choose(mode: Literal["fast", "slow"], level: Color = Color.RED) -> str:
    """A Literal and an Enum."""
    return "ok"


@tool
def constrained(
    slug: Annotated[str, pydantic.Field(min_length=1, max_length=10, pattern=r"^[a-z]+$")],
    ratio: Annotated[float, pydantic.Field(gt=0, le=1)],
    tags: Annotated[list[str], pydantic.Field(max_length=3)] = [],  # noqa: B006 (pydantic copies defaults)
) -> str:
    """Annotated constraints on a string, a number and a list."""
    return "ok"


@tool
def shaped(counts: dict[str, int], pair: tuple[int, int]) -> str:
    """A mapping and a fixed-size tuple."""
    return "ok"


@tool
def contextual(ctx: RunContext, n: int) -> str:
    """A run context the model never sees, and one argument."""
    return "ok"


def valid(name: str, values: dict[str, Any]) -> None:
    """What a validated call of each tool must hold."""
    if name == "plain":
        assert type(values["a"]) is int
        assert isinstance(values["b"], str)
        assert values["c"] is None or isinstance(values["c"], float)
        assert type(values["flag"]) is bool
    elif name == "order":
        assert all(isinstance(i, Item) and 1 <= i.qty <= 99 for i in values["items"])
        assert values["address"] is None or len(values["address"].zip) == 5
    elif name == "choose":
        assert values["mode"] in ("fast", "slow")
        assert isinstance(values["level"], Color)
    elif name == "constrained":
        assert 1 <= len(values["slug"]) <= 10
        assert values["slug"].isascii()
        assert values["slug"].isalpha()
        assert values["slug"].islower()
        assert 0 < values["ratio"] <= 1
        assert len(values["tags"]) <= 3
    elif name == "shaped":
        assert all(isinstance(k, str) and type(v) is int for k, v in values["counts"].items())
        assert isinstance(values["pair"], tuple)
        assert len(values["pair"]) == 2
    else:
        assert type(values["n"]) is int


TOOLS: dict[str, Tool] = {t.name: t for t in (plain, order, choose, constrained, shaped, contextual)}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
# Values shaped like what the tools take, so many examples are valid or nearly so.
near_values = st.one_of(
    json_values,
    st.sampled_from(["fast", "slow", "red", "green", "abc", "ABC", "12345", "", "a" * 11]),
    st.floats(min_value=-2, max_value=2),
    st.lists(st.fixed_dictionaries({"name": st.text(max_size=5), "qty": st.integers(-5, 120)}), max_size=3),
    st.fixed_dictionaries({"city": st.text(max_size=5), "zip": st.sampled_from(["12345", "1234", "abcde"])}),
    st.lists(st.integers(), min_size=1, max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers() | st.text(max_size=3), max_size=3),
)


@st.composite
def arguments_for(draw: st.DrawFn, name: str) -> str:
    """Arguments a model might send the tool: any text, any JSON, or an object over the tool's own fields
    (and a stray one) with values of any kind."""
    fields = [*TOOLS[name].parameters["properties"], "stray"]
    kind = draw(st.sampled_from(["text", "json", "object", "object"]))
    if kind == "text":
        return draw(st.text(max_size=40))
    if kind == "json":
        return json.dumps(draw(json_values))
    chosen = draw(st.lists(st.sampled_from(fields), unique=True))
    return json.dumps({field: draw(near_values) for field in chosen}, allow_nan=True)


@pytest.mark.parametrize("name", sorted(TOOLS))
@FAST
@given(data=st.data())
def test_arguments_validate_or_raise_a_tool_arguments_error(name: str, data: st.DataObject) -> None:
    tool_ = TOOLS[name]
    arguments = data.draw(arguments_for(name))
    try:
        values = tool_.validate(arguments)
    except ToolArgumentsError as exc:  # anything else fails the test
        message, refused = str(exc), exc.tool
        assert refused == name
        assert message.startswith(f"tool {name!r}: ")
        assert "invalid arguments (" in message or "not valid JSON" in message
        assert "Traceback" not in message
        assert "pydantic" not in message.lower()  # the model gets the problem, not the library's links
        return
    assert set(values) == set(tool_.parameters["properties"])  # never the run context, never a stray key
    valid(name, values)


def test_the_strategies_reach_both_outcomes_for_every_tool() -> None:
    """The property above is only as good as its examples: each tool must see valid and invalid calls."""
    seen: dict[str, set[str]] = {name: set() for name in TOOLS}

    @settings(max_examples=150, deadline=None, database=None)
    @given(data=st.data())
    def probe(data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(TOOLS)))
        try:
            TOOLS[name].validate(data.draw(arguments_for(name)))
            seen[name].add("valid")
        except ToolArgumentsError:
            seen[name].add("refused")

    probe()
    for name, valid_arguments in {
        "plain": '{"a": 1}',
        "order": '{"items": [{"name": "x", "qty": 1}]}',
        "choose": '{"mode": "fast"}',
        "constrained": '{"slug": "abc", "ratio": 0.5}',
        "shaped": '{"counts": {}, "pair": [1, 2]}',
        "contextual": '{"n": 1}',
    }.items():
        valid(name, TOOLS[name].validate(valid_arguments))
        seen[name].add("valid")
    assert all(outcomes == {"valid", "refused"} for outcomes in seen.values()), seen


@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}", id="nested-100k-deep"),
        pytest.param('{"a": 1, "b": "\\ud800"}', id="lone-surrogate-escape"),
        pytest.param('{"a": 123456789012345678901234567890}', id="int-past-64-bits"),
        pytest.param('{"a": 1, "b": "' + "x" * 5_000_000 + '"}', id="5MB-string"),
        pytest.param("\x00" * 1000, id="nul-bytes"),
    ],
)
def test_extreme_arguments(arguments: str) -> None:
    try:
        values = plain.validate(arguments)
    except ToolArgumentsError as exc:
        message = str(exc)
        assert message.startswith("tool 'plain': ")
        return
    valid("plain", values)


@RUNS
@given(arguments=arguments_for("constrained"))
def test_a_run_goes_on_whatever_the_arguments(arguments: str) -> None:
    """Through the loop: the call runs or the model is told what was wrong, the run completes, and bad
    arguments never count against the tool's breaker (one failure would open it)."""
    guarded = Tool(
        constrained.function,
        name="constrained",
        breaker=CircuitBreaker(failure_threshold=1, reset_timeout=3600),
    )
    recorder = RecordingTracer()
    model = ScriptedModel([[ToolCall("c1", "constrained", arguments), ToolCall("c2", "constrained", arguments)], "ok"])
    result = asyncio.run(Agent("args", model, tools=[guarded], plugins=[recorder]).run("go"))

    assert (result.status, result.output) == ("completed", "ok")
    ends = recorder.of_type(ToolCallEnded)
    assert len(ends) == 2
    assert recorder.unmatched() == []
    for end in ends:
        assert (end.status, end.error.type if end.error else None) in (("ok", None), ("error", "ToolArgumentsError"))
    assert guarded.breaker is not None
    assert guarded.breaker.state == "closed"
    tool_messages = [m for m in model.requests[1].messages if m.role == "tool"]
    assert [m.tool_call_id for m in tool_messages] == ["c1", "c2"]


# ================================================================================= model output


@tool
def echo(x: int) -> str:
    """Echo a number."""
    return f"echo {x}"


def answers(first: Any) -> FunctionModel:
    """A model that gives ``first`` and then lists the tool results it got."""

    def answer(messages: Sequence[Message], request: Any) -> Any:
        if not any(m.role == "tool" for m in messages):
            return first
        return json.dumps([[m.tool_call_id, m.content] for m in messages if m.role == "tool"])

    return FunctionModel(answer)


def call(id: Any, name: Any, arguments: Any = '{"x": 1}') -> ToolCall:
    return ToolCall(id, name, arguments)


def reply(*calls: ToolCall, content: Any = None, usage: Any = Usage(1, 1, requests=1)) -> ModelResponse:
    return ModelResponse(Message("assistant", content, tuple(calls)), usage, "tool_calls" if calls else "stop")


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        pytest.param(
            reply(call("c1", "echo"), call("c1", "echo", '{"x": 2}')), ["echo 1", "echo 2"], id="repeated-ids"
        ),
        pytest.param(reply(call("", "echo"), call("", "echo", '{"x": 2}')), ["echo 1", "echo 2"], id="empty-ids"),
        pytest.param(reply(call("c1", "echo", {"x": 3})), ["echo 3"], id="arguments-as-a-dict"),
        pytest.param(reply(call("c1", "echo", None)), ["Field required"], id="arguments-none"),
        pytest.param(reply(call(None, "echo")), ["echo 1"], id="id-none"),
        pytest.param(
            ModelResponse(Message("assistant", None, [call("c1", "echo")]), None, None),
            ["echo 1"],
            id="calls-as-a-list",
        ),
        pytest.param(reply(call("c1", "no_such_tool")), ["there is no tool 'no_such_tool'"], id="unknown-tool"),
        pytest.param(reply(call("c1", "echo", "{not json")), ["Invalid JSON"], id="broken-json"),
        pytest.param(reply(call("c1", "echo", "")), ["Field required"], id="empty-arguments"),
        pytest.param(reply(content=""), [], id="empty-answer"),
        pytest.param(reply(content=None), [], id="none-content"),
        pytest.param(reply(call("c1", None)), ModelBehaviorError, id="call-without-a-name"),
        pytest.param(reply(call("c1", "")), ModelBehaviorError, id="call-with-an-empty-name"),
        pytest.param(reply(content=5), ModelBehaviorError, id="content-not-text"),
        pytest.param(reply(content="hi", usage="lots"), ModelBehaviorError, id="usage-not-usage"),
        pytest.param(ModelResponse(None, None, None), ModelBehaviorError, id="no-message"),  # type: ignore[arg-type]
        pytest.param(
            ModelResponse(Message("assistant", None, (("echo", {"x": 1}),)), None, None),  # type: ignore[arg-type]
            ModelBehaviorError,
            id="call-not-a-tool-call",
        ),
        pytest.param(reply(call("c1", "echo", {"x": {1, 2}})), ModelBehaviorError, id="arguments-not-json"),
    ],
)
async def test_what_a_model_answers_is_recovered_or_a_clear_error(
    tracer: RecordingTracer, answer: ModelResponse, outcome: Any
) -> None:
    class Custom:
        name, provider = "custom", "test"

        async def stream(self, request: Any) -> AsyncIterator[Any]:
            await asyncio.sleep(0)
            if not any(m.role == "tool" for m in request.messages) and request.messages[-1].role == "user":
                yield answer
                return
            results = [[m.tool_call_id, m.content] for m in request.messages if m.role == "tool"]
            yield ModelResponse(Message.assistant(json.dumps(results)), Usage(1, 1, requests=1), "stop")

    agent = Agent("custom", Custom(), tools=[echo])
    if isinstance(outcome, type):
        with pytest.raises(outcome) as caught:
            await agent.run("go")
        assert str(caught.value).startswith("model test:custom")  # names the model and says what is wrong
        assert [e.status for e in tracer.of_type(ModelCallEnded)] == ["error"]
        assert [e.status for e in tracer.of_type(RunEnded)] == ["failed"]
    else:
        result = await agent.run("go")
        assert result.status == "completed"
        if not outcome:  # an empty answer is an empty output, not an error
            assert result.output == ""
        else:
            got = json.loads(result.output or "[]")
            assert len(got) == len(outcome)
            assert len({call_id for call_id, _ in got}) == len(got)  # every call kept its own result
            for (_, content), expected in zip(got, outcome, strict=True):
                assert expected in content
            started = [e.call_id for e in tracer.of_type(ToolCallStarted)]
            assert sorted(started) == sorted(call_id for call_id, _ in got)
    assert tracer.unmatched() == []


tool_calls = st.builds(
    ToolCall,
    st.sampled_from(["", "c1", "c1", "c2", "call_x"]),
    st.sampled_from(["echo", "echo", "unknown"]),
    st.one_of(st.text(max_size=12), st.just('{"x": 4}'), st.none(), st.dictionaries(st.just("x"), st.integers())),
)


@RUNS
@given(calls=st.lists(tool_calls, max_size=6), content=st.none() | st.text(max_size=20))
def test_any_answer_of_tool_calls_gets_one_result_per_call(calls: list[ToolCall], content: str | None) -> None:
    recorder = RecordingTracer()
    model = answers(ModelResponse(Message("assistant", content, tuple(calls)), None, None))
    result = asyncio.run(Agent("any", model, tools=[echo], plugins=[recorder]).run("go"))

    assert result.status == "completed"
    assert recorder.unmatched() == []
    if not calls:
        assert result.output == (content or "")
        return
    got = json.loads(result.output or "[]")
    assert len(got) == len(calls)  # nothing lost: one result per call asked for
    assert len({call_id for call_id, _ in got}) == len(calls)  # each answering its own call
    assert [e.call_id for e in recorder.of_type(ToolCallStarted)] == [call_id for call_id, _ in got]


# --------------------------------------------------------------------------- on the wire, huge and odd


def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
    return "data: " + json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}) + "\n\n"


DONE = "data: [DONE]\n\n"


@pytest.fixture
def server() -> Any:
    with wire_server() as running:
        yield running


async def openai_run(server: WireServer, *replies: Reply, tools: Sequence[Tool] = ()) -> Any:
    model = OpenAIChatModel("gpt-test", base_url=f"{server.url}/v1", api_key="sk-test", max_retries=0)
    server.queue(*replies)
    try:
        async with asyncio.timeout(GUARD_S * 3):
            return await Agent("wire", model, tools=tools).run("go")
    finally:
        await model.aclose()


async def test_a_thousand_tool_calls_in_one_turn(server: WireServer, tracer: RecordingTracer) -> None:
    calls = [
        chunk({"tool_calls": [{"index": i, "id": f"c{i}", "function": {"name": "echo", "arguments": f'{{"x": {i}}}'}}]})
        for i in range(1000)
    ]
    result = await openai_run(
        server,
        Reply(chunks=[*calls, chunk({}, "tool_calls"), DONE]),
        Reply(chunks=[chunk({"content": "ok"}, "stop"), DONE]),
        tools=[echo],
    )
    assert (result.status, result.output) == ("completed", "ok")
    ends = tracer.of_type(ToolCallEnded)
    assert len(ends) == 1000
    assert {e.status for e in ends} == {"ok"}
    assert tracer.unmatched() == []
    sent = [m for m in server.requests[1].body["messages"] if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in sent] == [f"c{i}" for i in range(1000)]
    assert [m["content"] for m in sent] == [f"echo {i}" for i in range(1000)]


@pytest.mark.parametrize("pieces", [1, 5000], ids=["one-chunk", "5000-chunks"])
async def test_a_five_megabyte_answer(server: WireServer, tracer: RecordingTracer, pieces: int) -> None:
    size = 5_000_000
    part = "x" * (size // pieces)
    result = await openai_run(
        server, Reply(chunks=[*(chunk({"content": part}) for _ in range(pieces)), chunk({}, "stop"), DONE])
    )
    assert result.status == "completed"
    assert len(result.output or "") == size
    (end,) = tracer.of_type(ModelCallEnded)
    assert end.status == "ok"


@pytest.mark.parametrize(
    ("chunks", "output"),
    [
        pytest.param([chunk({}, "stop"), DONE], "", id="no-content"),
        pytest.param([chunk({"content": None}, "stop"), DONE], "", id="null-content"),
        pytest.param([chunk({"content": ""}, "stop"), DONE], "", id="empty-content"),
        pytest.param([DONE], "", id="only-done"),
        pytest.param([], ModelStreamError, id="empty-body"),
        pytest.param(["data: " + "[" * 100_000 + "]" * 100_000 + "\n\n"], ModelStreamError, id="nested-100k-deep"),
        pytest.param(['data: {"error": ' + "{" * 5000 + "}" * 5000 + "}\n\n"], ModelStreamError, id="nested-error"),
    ],
)
async def test_empty_and_odd_openai_answers(
    server: WireServer, tracer: RecordingTracer, chunks: list[str], output: Any
) -> None:
    if isinstance(output, type):
        with pytest.raises(output):
            await openai_run(server, Reply(chunks=chunks))
        assert [e.status for e in tracer.of_type(RunEnded)] == ["failed"]
    else:
        result = await openai_run(server, Reply(chunks=chunks))
        assert (result.status, result.output) == ("completed", output)
    assert tracer.unmatched() == []


async def test_a_deeply_nested_anthropic_event_is_a_stream_error(server: WireServer, tracer: RecordingTracer) -> None:
    model = AnthropicModel("claude-test", base_url=server.url, api_key="sk-ant-test", max_retries=0)
    server.queue(Reply(chunks=["event: message_start\ndata: " + "[" * 100_000 + "]" * 100_000 + "\n\n"]))
    try:
        with pytest.raises(ModelStreamError, match="not valid JSON"):
            await Agent("wire", model).run("go")
    finally:
        await model.aclose()
    assert tracer.unmatched() == []


# =================================================================================== checkpoints


@tool(needs_approval=True)
def deploy(version: str) -> str:
    """Deploy a version."""
    return f"deployed {version}"


def deploy_agent(store: Any, *script: Any) -> Agent:
    steps = script or (Step(tool_calls=[("deploy", {"version": "1.2"})]), "deployed 1.2")
    return Agent("ops", ScriptedModel(list(steps)), tools=[deploy], checkpoints=store)


async def paused_in(path: Path) -> Any:
    store = SQLiteCheckpointStore(path)
    paused = await deploy_agent(store).run("deploy 1.2")
    assert paused.status == "interrupted"
    store.close()
    with sqlite3.connect(path) as db:  # everything in the main file, so the damage below is the whole story
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return paused


async def test_a_damaged_sqlite_page_is_a_checkpoint_error_and_the_file_is_kept(
    tmp_path: Path, tracer: RecordingTracer
) -> None:
    path = tmp_path / "runs.db"
    paused = await paused_in(path)
    data = bytearray(path.read_bytes())
    page = 4096
    data[page:] = b"\xff" * (len(data) - page)  # every page after the first: the tables' contents
    path.write_bytes(bytes(data))
    tracer.clear()

    resumer = deploy_agent(SQLiteCheckpointStore(path), "deployed 1.2")
    with pytest.raises(CheckpointError) as caught:
        await resumer.resume(paused.run_id, {paused.interruptions[0].id: True})

    assert str(path) in str(caught.value)
    assert paused.run_id in str(caught.value)
    assert caught.value.run_id == paused.run_id
    assert path.read_bytes() == bytes(data)  # nothing written over the evidence
    assert tracer.events == []  # nothing ran
    assert resumer.model.calls == 0  # type: ignore[attr-defined]


async def test_a_record_rewritten_as_text_still_resumes(tmp_path: Path, tracer: RecordingTracer) -> None:
    path = tmp_path / "runs.db"
    paused = await paused_in(path)
    with sqlite3.connect(path) as db:  # what an export and re-import through the sqlite3 shell can do
        db.execute("UPDATE checkpoints SET data = CAST(data AS TEXT)")
        assert db.execute("SELECT typeof(data) FROM checkpoints").fetchone() == ("text",)

    done = await deploy_agent(SQLiteCheckpointStore(path), "deployed 1.2").resume(
        paused.run_id, {paused.interruptions[0].id: True}
    )
    assert (done.status, done.output) == ("completed", "deployed 1.2")


async def test_a_store_that_cannot_be_created_fails_the_run_with_a_checkpoint_error(
    tmp_path: Path, tracer: RecordingTracer
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    path = blocker / "runs.db"
    agent = deploy_agent(path)

    with pytest.raises(CheckpointError, match="cannot be created") as caught:
        await agent.run("deploy 1.2")

    assert str(path) in str(caught.value)
    assert "TRACEDAGENT_CHECKPOINTS" in str(caught.value)
    (ended,) = tracer.of_type(RunEnded)
    assert (ended.status, ended.error.type if ended.error else None) == ("failed", "CheckpointError")
    assert tracer.unmatched() == []


@pytest.mark.parametrize(
    "record",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b'{"format": "tracedagent.session", "version": 1, "messages": [', id="truncated"),
        pytest.param(b'{"format": "tracedagent.session", "version": 2, "messages": []}', id="newer-version"),
        pytest.param(b'{"format": "tracedagent.session", "version": 1, "messages": [{"role": "boss"}]}', id="bad-role"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="nested-100k-deep"),
        pytest.param(b"\xff\xfe garbage", id="not-utf8"),
    ],
)
async def test_a_damaged_session_is_a_checkpoint_error_and_nothing_runs(
    tmp_path: Path, tracer: RecordingTracer, record: bytes
) -> None:
    path = tmp_path / "runs.db"
    store = SQLiteCheckpointStore(path)
    await Agent("chat", ScriptedModel(["hello"]), checkpoints=store).run("hi", session_id="s1")
    with sqlite3.connect(path) as db:
        db.execute("UPDATE sessions SET data = ? WHERE session_id = 's1'", (record,))
    tracer.clear()
    model = ScriptedModel(["never"])

    with pytest.raises(CheckpointError, match="session 's1' cannot be read"):
        await Agent("chat", model, checkpoints=SQLiteCheckpointStore(path)).run("again", session_id="s1")

    assert tracer.events == []
    assert model.calls == 0
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT data FROM sessions WHERE session_id = 's1'").fetchone() == (record,)


async def test_an_in_memory_session_damaged_the_same_way(tracer: RecordingTracer) -> None:
    store = InMemoryCheckpointStore()
    store._sessions["s1"] = b"{"  # the in-memory store encodes too, so a damaged record is possible
    with pytest.raises(CheckpointError, match="session 's1'"):
        await Agent("chat", ScriptedModel(["never"]), checkpoints=store).run("hi", session_id="s1")
    assert tracer.events == []


# ================================================================================ configuration


BAD_URLS = [
    "localhost:11434",
    "ftp://example.com/v1",
    "http://[::1",
    "http://[zz]/v1",
    "http://localhost:99999/v1",
    "http://localhost:0/v1",
    "http://localhost:abc/v1",
    "http://256.1.1.1/v1",
    "http://\x00/v1",
    "http://xn--/v1",
    "http:///v1",
    "   ",
]


@pytest.mark.parametrize("url", BAD_URLS)
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_bad_base_url_names_its_setting(monkeypatch: pytest.MonkeyPatch, provider: str, url: str) -> None:
    variable = "OPENAI_BASE_URL" if provider == "openai" else "ANTHROPIC_BASE_URL"
    make = OpenAIChatModel if provider == "openai" else AnthropicModel
    if "\x00" not in url:  # an environment variable cannot hold a NUL
        monkeypatch.setenv(variable, url)
        with pytest.raises(ConfigurationError) as from_env:
            make("m", api_key="k")  # type: ignore[operator]
        assert variable in str(from_env.value)
    with pytest.raises(ConfigurationError, match="base_url=") as given_:
        make("m", api_key="k", base_url=url)  # type: ignore[operator]
    assert "Traceback" not in str(given_.value)


@settings(max_examples=150, deadline=None)
@given(
    url=st.one_of(
        st.text(max_size=30),
        st.builds(
            "{}://{}{}/{}".format,
            st.sampled_from(["http", "https", "HTTP", "ftp", ""]),
            st.text(max_size=12),
            st.sampled_from(["", ":", ":80", ":-1", ":70000", ":x", "]"]),
            st.text(max_size=5),
        ),
    )
)
def test_any_base_url_is_a_model_or_a_configuration_error(url: str) -> None:
    try:
        model = OpenAIChatModel("m", api_key="k", base_url=url)
    except ConfigurationError:
        return
    assert model.base_url.lower().startswith(("http://", "https://"))


@pytest.mark.parametrize(
    ("raw", "expected", "warned"),
    [
        ("2.5", 2.5, False),
        ("0", 0.0, False),
        ("-3", 0.0, False),
        ("abc", 5.0, True),
        ("", 5.0, True),
        ("nan", 5.0, True),
        ("inf", 5.0, True),
        ("-inf", 5.0, True),
        ("1e400", 5.0, True),
        ("1e300", _export._MAX_WAIT_S, False),
    ],
)
def test_exit_timeout_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, raw: str, expected: float, warned: bool
) -> None:
    monkeypatch.setenv("TRACEDAGENT_EXIT_TIMEOUT", raw)
    assert _export._exit_timeout() == expected
    assert any("TRACEDAGENT_EXIT_TIMEOUT" in r.getMessage() for r in caplog.records) is warned


@pytest.mark.parametrize("timeout", [math.inf, 1e300, math.nan], ids=["inf", "1e300", "nan"])
def test_flush_takes_any_timeout(timeout: float) -> None:
    pipeline = tracedagent.ExportPipeline("odd-timeouts", lambda batch: None, interval_s=0.01)
    assert pipeline.put("item")
    assert pipeline.flush(timeout) in (True, False)  # never OverflowError or ValueError from a lock
    assert pipeline.flush(GUARD_S)
    assert pipeline.stats().exported == 1
    assert pipeline.shutdown(GUARD_S)


def test_an_odd_exit_timeout_never_breaks_the_exit() -> None:
    script = textwrap.dedent(
        """
        import io
        from tracedagent import ExportPipeline
        sink = ExportPipeline("at-exit", lambda batch: None, interval_s=0.01)
        sink.put("one"); sink.flush(5)  # a worker thread is running when the process exits
        print("done")
        """
    )
    for raw in ("inf", "1e400", "nan", "abc"):
        env = {**os.environ, "TRACEDAGENT_EXIT_TIMEOUT": raw}
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
        assert (done.returncode, done.stdout.strip()) == (0, "done"), done.stderr
        assert "Traceback" not in done.stderr
        assert "Exception ignored" not in done.stderr


async def test_a_directory_as_the_checkpoint_variable_names_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tracer: RecordingTracer
) -> None:
    monkeypatch.setenv("TRACEDAGENT_CHECKPOINTS", str(tmp_path))
    with pytest.raises(ConfigurationError, match=r"TRACEDAGENT_CHECKPOINTS=.*is a directory"):
        await Agent("a", ScriptedModel(["never"])).run("hi")
    assert tracer.events == []  # refused before the run began


class Context:
    """What a plugin's ``tracedagent_configure`` receives."""

    def __init__(self, environ: dict[str, str]) -> None:
        self.environ = environ
        self.registered: list[object] = []

    def register(self, plugin: object, name: str | None = None) -> None:
        self.registered.append(plugin)


def configure(module: str, environ: dict[str, str]) -> str:
    plugin = pytest.importorskip(module)
    return str(plugin.tracedagent_configure(Context(environ)))


PLUGIN_SETTINGS = [
    # (plugin module, environment, the variable the error must name)
    ("tracedagent_prometheus", {"TRACEDAGENT_METRICS_ADDR": "nonsense"}, "TRACEDAGENT_METRICS_ADDR"),
    ("tracedagent_prometheus", {"TRACEDAGENT_METRICS_ADDR": ":99999"}, "TRACEDAGENT_METRICS_ADDR"),
    ("tracedagent_prometheus", {"TRACEDAGENT_METRICS_ADDR": "[::1"}, "TRACEDAGENT_METRICS_ADDR"),
    ("tracedagent_prometheus", {"TRACEDAGENT_METRICS_ADDR": "a b:9464"}, "TRACEDAGENT_METRICS_ADDR"),
    ("tracedagent_prometheus", {"TRACEDAGENT_METRICS_ADDR": "203.0.113.7:9464"}, "TRACEDAGENT_METRICS_ADDR"),
    ("tracedagent_stdout", {"TRACEDAGENT_STDOUT": "1", "TRACEDAGENT_LOG_FORMAT": "xml"}, "TRACEDAGENT_LOG_FORMAT"),
    ("tracedagent_otlp", {"OTEL_EXPORTER_OTLP_ENDPOINT": "localhost:4318"}, "OTEL_EXPORTER_OTLP_ENDPOINT"),
    (
        "tracedagent_otlp",
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "collector/v1/traces"},
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ),
    (
        "tracedagent_otlp",
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "thrift"},
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ),
    (
        "tracedagent_otlp",
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4318", "TRACEDAGENT_OTLP_MAX_CONTENT": "lots"},
        "TRACEDAGENT_OTLP_MAX_CONTENT",
    ),
    (
        "tracedagent_langsmith",
        {"LANGSMITH_TRACING": "true", "LANGSMITH_ENDPOINT": "localhost:1984"},
        "LANGSMITH_ENDPOINT",
    ),
    (
        "tracedagent_langsmith",
        {"LANGSMITH_TRACING": "true", "LANGSMITH_TRACING_SAMPLING_RATE": "nan"},
        "LANGSMITH_TRACING_SAMPLING_RATE",
    ),
]


@pytest.mark.parametrize(
    ("module", "environ", "variable"),
    PLUGIN_SETTINGS,
    ids=[f"{v}={list(e.values())[-1]}" for _, e, v in PLUGIN_SETTINGS],
)
def test_a_bad_plugin_setting_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, module: str, environ: dict[str, str], variable: str
) -> None:
    for name in environ:  # the tracers read os.environ too
        monkeypatch.setenv(name, environ[name])
    with pytest.raises(ConfigurationError) as caught:
        configure(module, environ)
    assert variable in str(caught.value)


def test_prometheus_multiprocess_dir_that_does_not_exist_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    prometheus = pytest.importorskip("tracedagent_prometheus")
    from prometheus_client import CollectorRegistry

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "missing"))
    with pytest.raises(ConfigurationError, match="PROMETHEUS_MULTIPROC_DIR"):
        prometheus.PrometheusTracer(CollectorRegistry())


@pytest.mark.parametrize(
    ("module", "environ", "status"),
    [
        ("tracedagent_stdout", {"TRACEDAGENT_STDOUT": "perhaps"}, "inactive"),
        ("tracedagent_prometheus", {"TRACEDAGENT_METRICS": "off"}, "inactive"),
        ("tracedagent_langsmith", {"LANGSMITH_TRACING": "maybe"}, "inactive"),
        ("tracedagent_otlp", {"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "nonsense"}, "inactive"),
    ],
)
def test_unclear_switches_fall_back_to_off(module: str, environ: dict[str, str], status: str) -> None:
    assert configure(module, environ).startswith(status)


def test_misconfigured_plugins_never_cost_a_run() -> None:
    """The user's way in: installed plugins named in the environment, each with a bad setting. Every run
    completes, ``tracedagent plugins`` says which setting is wrong, and no traceback comes from a library."""
    script = textwrap.dedent(
        """
        import tracedagent
        from tracedagent import Agent, tool
        from tracedagent.testing import ScriptedModel

        @tool
        def add(a: int, b: int) -> int:
            \"\"\"Add.\"\"\"
            return a + b

        model = ScriptedModel([("add", {"a": 1, "b": 2}), "3"], per_run=True)
        print([Agent("a", model, tools=[add]).run_sync("1+2?").output for _ in range(3)])
        for info in tracedagent.list_plugins():
            print(info.name, "|", info.status)
        """
    )
    env = {
        **os.environ,
        "TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD": "1",
        "TRACEDAGENT_PLUGINS": "prometheus,stdout,otlp,langsmith",
        "TRACEDAGENT_METRICS_ADDR": "nonsense",
        "TRACEDAGENT_STDOUT": "1",
        "TRACEDAGENT_LOG_FORMAT": "xml",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "localhost:4318",
        "LANGSMITH_TRACING": "true",
        "LANGSMITH_ENDPOINT": "localhost:1984",
        "TRACEDAGENT_EXIT_TIMEOUT": "1",
    }
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "['3', '3', '3']"
    statuses = dict(line.split(" | ", 1) for line in lines[1:])
    for plugin, variable in (
        ("prometheus", "TRACEDAGENT_METRICS_ADDR"),
        ("stdout", "TRACEDAGENT_LOG_FORMAT"),
        ("otlp", "OTEL_EXPORTER_OTLP_ENDPOINT"),
        ("langsmith", "LANGSMITH_ENDPOINT"),
    ):
        if plugin in statuses:
            assert statuses[plugin].startswith("failed to configure: ConfigurationError"), statuses[plugin]
            assert variable in statuses[plugin]
    frames = [line for line in done.stderr.splitlines() if line.strip().startswith('File "')]
    assert frames, "each failure is logged once, with its traceback"
    assert all("site-packages" not in frame for frame in frames), frames
