"""Structured output (``output_type``): native modes on the loopback OpenAI-compatible and Anthropic
servers, the output tool with the test models, corrections, failures, streaming and resume."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import pytest
from pydantic import BaseModel, field_validator
from typing_extensions import TypedDict
from wire_server import Reply, WireServer, wire_server

from tracedagent import (
    Agent,
    ApprovalRequired,
    Checkpoint,
    ConfigurationError,
    FinalResult,
    HandoffOccurred,
    InMemoryCheckpointStore,
    Message,
    ModelCallEnded,
    ModelCallStarted,
    ModelRequest,
    OutputValidationError,
    PartialOutput,
    RunEnded,
    RunError,
    ToolCall,
    ToolCallEnded,
    UserError,
    _output,
    tool,
)
from tracedagent.models import AnthropicModel, OpenAIChatModel
from tracedagent.testing import FunctionModel, RecordingTracer, ScriptedModel, Step, capture_events


class City(BaseModel):
    """A city and what is known about it."""

    name: str
    country: str
    population: int
    landmarks: list[str] = []


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Movie(TypedDict):
    title: str
    year: int


PARIS = {"name": "Paris", "country": "France", "population": 2100000, "landmarks": ["Louvre", "Eiffel Tower"]}


@pytest.fixture
def server() -> Iterator[WireServer]:
    with wire_server() as s:
        yield s


@pytest.fixture
async def openai(server: WireServer) -> AsyncIterator[Any]:
    made: list[OpenAIChatModel] = []

    def make(**kwargs: Any) -> OpenAIChatModel:
        model = OpenAIChatModel("gpt-4o-mini", base_url=f"{server.url}/v1", api_key="sk-test", max_retries=0, **kwargs)
        made.append(model)
        return model

    yield make
    for model in made:
        await model.aclose()


@pytest.fixture
async def anthropic(server: WireServer) -> AsyncIterator[AnthropicModel]:
    model = AnthropicModel("claude-sonnet-4-5", base_url=server.url, api_key="sk-ant-test", max_retries=0)
    yield model
    await model.aclose()


def openai_text(*pieces: str) -> Reply:
    """A streamed Chat Completions answer whose content arrives in ``pieces``."""
    events = []
    for piece in pieces:
        delta = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}], "model": "gpt-4o-mini"}
        events.append(f"data: {json.dumps(delta)}")
    events.append(f"data: {json.dumps({'choices': [{'index': 0, 'delta': {}, 'finish_reason': 'stop'}]})}")
    usage = {"choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 20}}
    events.append(f"data: {json.dumps(usage)}")
    events.append("data: [DONE]")
    return Reply.sse(events)


def anthropic_blocks(blocks: Sequence[dict[str, Any]], stop: str = "tool_use") -> Reply:
    """A streamed Messages answer: ``{"text": ...}`` or ``{"tool": name, "id": ..., "json": [pieces]}`` blocks."""
    start = {"type": "message_start", "message": {"model": "claude-sonnet-4-5", "usage": {"input_tokens": 40}}}
    events = [f"event: message_start\ndata: {json.dumps(start)}"]
    for index, block in enumerate(blocks):
        if "text" in block:
            content: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": block["text"]}]
        else:
            content = {"type": "tool_use", "id": block["id"], "name": block["tool"], "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in block["json"]]
        opened = {"type": "content_block_start", "index": index, "content_block": content}
        events.append(f"event: content_block_start\ndata: {json.dumps(opened)}")
        for delta in deltas:
            event = {"type": "content_block_delta", "index": index, "delta": delta}
            events.append(f"event: content_block_delta\ndata: {json.dumps(event)}")
        events.append(f"event: content_block_stop\ndata: {json.dumps({'type': 'content_block_stop', 'index': index})}")
    end = {"type": "message_delta", "delta": {"stop_reason": stop}, "usage": {"output_tokens": 30}}
    events.append(f"event: message_delta\ndata: {json.dumps(end)}")
    events.append(f"event: message_stop\ndata: {json.dumps({'type': 'message_stop'})}")
    return Reply.sse(events)


def pieces(text: str, size: int = 7) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


# ------------------------------------------------------------------------------ OpenAI: response_format


async def test_openai_asks_with_a_strict_json_schema_and_returns_the_model(server: WireServer, openai: Any) -> None:
    server.queue(openai_text(*pieces(json.dumps(PARIS))))
    agent = Agent("geo", openai(), output_type=City)
    result = await agent.run("Tell me about Paris")
    assert result.output == City(**PARIS)
    (request,) = server.requests
    response_format = request.body["response_format"]
    assert response_format["type"] == "json_schema"
    schema = response_format["json_schema"]
    assert schema["name"] == "final_result"
    assert schema["description"] == "A city and what is known about it."
    # landmarks has a default, so the schema is not strict-compatible: sent with strict false
    assert schema["strict"] is False
    assert schema["schema"]["additionalProperties"] is False
    assert set(schema["schema"]["properties"]) == {"name", "country", "population", "landmarks"}
    assert "tools" not in request.body


async def test_openai_schema_is_strict_when_every_field_is_required(server: WireServer, openai: Any) -> None:
    server.queue(openai_text('{"response": [{"x": 1, "y": 2}, {"x": 3, "y": 4}]}'))
    result = await Agent("pts", openai(), output_type=list[Point]).run("Two points")
    assert result.output == [Point(1, 2), Point(3, 4)]
    schema = server.requests[0].body["response_format"]["json_schema"]
    assert schema["strict"] is True
    assert schema["schema"]["required"] == ["response"]
    assert schema["schema"]["additionalProperties"] is False
    assert schema["schema"]["$defs"]["Point"]["additionalProperties"] is False


async def test_openai_invalid_answer_is_corrected_with_one_more_call(server: WireServer, openai: Any) -> None:
    server.queue(openai_text('{"name": "Paris", "population": "many"}'), openai_text(json.dumps(PARIS)))
    agent = Agent("geo", openai(), output_type=City)
    with capture_events() as events:
        result = await agent.run("Paris?")
    assert result.output == City(**PARIS)
    assert [e.purpose for e in events.of_type(ModelCallStarted)] == ["turn", "output_retry"]
    assert len(server.requests) == 2
    correction = server.requests[1].body["messages"][-1]
    assert correction["role"] == "user"
    assert "country: Field required" in correction["content"]
    assert "population: Input should be a valid integer" in correction["content"]
    assert server.requests[1].body["messages"][-2] == {
        "role": "assistant",
        "content": '{"name": "Paris", "population": "many"}',
    }
    assert "response_format" in server.requests[1].body
    (ended,) = events.of_type(RunEnded)
    assert (ended.status, ended.output_validation_failures) == ("completed", 1)


async def test_openai_stream_yields_partial_objects(server: WireServer, openai: Any) -> None:
    server.queue(openai_text(*pieces(json.dumps(PARIS), 5)))
    agent = Agent("geo", openai(), output_type=City)
    partials: list[City] = []
    final = None
    async for event in agent.stream("Paris?"):
        if isinstance(event, PartialOutput):
            partials.append(event.output)
        elif isinstance(event, FinalResult):
            final = event.result
    assert final is not None
    assert final.output == City(**PARIS)
    assert len(partials) > 3
    assert all(isinstance(p, City) for p in partials)
    assert partials[-1] == City(**PARIS)
    assert len(set(map(repr, partials))) == len(partials)  # each one new
    assert partials[0].name.startswith("P")
    assert partials[0].landmarks == []


async def test_openai_without_native_mode_uses_the_output_tool(server: WireServer, openai: Any) -> None:
    call = {"index": 0, "id": "call_1", "function": {"name": "final_result", "arguments": json.dumps(PARIS)}}
    chunk = {"choices": [{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": "tool_calls"}]}
    server.queue(Reply.sse([f"data: {json.dumps(chunk)}", "data: [DONE]"]))
    result = await Agent("geo", openai(native_output=False), output_type=City).run("Paris?")
    assert result.output == City(**PARIS)
    body = server.requests[0].body
    assert "response_format" not in body
    assert [t["function"]["name"] for t in body["tools"]] == ["final_result"]
    assert body["tools"][0]["function"]["parameters"]["properties"]["population"] == {
        "title": "Population",
        "type": "integer",
    }
    # the output call is answered, so the conversation can go on with any provider
    assert result.messages[-1] == Message.tool("call_1", "final_result", "Final result accepted.")


# ------------------------------------------------------------------------ Anthropic: tool-forced output


async def test_anthropic_forces_the_output_tool_and_streams_its_input(
    server: WireServer, anthropic: AnthropicModel
) -> None:
    server.queue(anthropic_blocks([{"tool": "final_result", "id": "toolu_1", "json": pieces(json.dumps(PARIS))}]))
    agent = Agent("geo", anthropic, output_type=City)
    partials = []
    async for event in agent.stream("Paris?"):
        if isinstance(event, PartialOutput):
            partials.append(event.output)
        elif isinstance(event, FinalResult):
            result = event.result
    assert result.output == City(**PARIS)
    assert partials
    assert partials[-1] == City(**PARIS)
    body = server.requests[0].body
    assert body["tool_choice"] == {"type": "tool", "name": "final_result"}
    (output_tool,) = body["tools"]
    assert output_tool["name"] == "final_result"
    assert output_tool["input_schema"]["required"] == ["name", "country", "population"]
    # the output is the answer's text, not a tool call waiting for a result
    assert result.messages[-1] == Message.assistant(json.dumps(PARIS))


async def test_anthropic_with_tools_of_its_own_must_call_some_tool(
    server: WireServer, anthropic: AnthropicModel
) -> None:
    @tool
    def population(city: str) -> int:
        """The population of a city."""
        return 2100000

    server.queue(
        anthropic_blocks([{"tool": "population", "id": "toolu_1", "json": ['{"city": "Paris"}']}]),
        anthropic_blocks([{"tool": "final_result", "id": "toolu_2", "json": ['{"response": 2100000}']}]),
    )
    result = await Agent("geo", anthropic, tools=[population], output_type=int).run("How many?")
    assert result.output == 2100000
    first, second = (r.body for r in server.requests)
    assert first["tool_choice"] == {"type": "any"}
    assert [t["name"] for t in first["tools"]] == ["population", "final_result"]
    assert first["tools"][1]["input_schema"]["properties"]["response"]["type"] == "integer"
    assert second["messages"][-1]["content"][0]["type"] == "tool_result"


async def test_anthropic_wrong_schema_gets_a_correction_then_fails(
    server: WireServer, anthropic: AnthropicModel
) -> None:
    bad = {"tool": "final_result", "id": "toolu_1", "json": ['{"title": "Alien"}']}
    server.queue(anthropic_blocks([bad]), anthropic_blocks([{**bad, "id": "toolu_2"}]))
    agent = Agent("films", anthropic, output_type=Movie)
    with capture_events() as events, pytest.raises(OutputValidationError) as caught:
        await agent.run("A film?")
    assert len(server.requests) == 2  # one correction, no more
    correction = server.requests[1].body["messages"][-1]
    assert correction["role"] == "user"
    assert "year: Field required" in correction["content"][0]["text"]
    error = caught.value
    assert isinstance(error, RunError)
    assert error.raw_output == '{"title": "Alien"}'
    assert [e["loc"] for e in error.errors] == [("year",)]
    assert "Alien" not in str(error)  # the message is safe for telemetry
    assert error.result is not None
    assert error.result.status == "failed"
    assert error.result.output is None
    (ended,) = events.of_type(RunEnded)
    assert ended.status == "failed"
    assert ended.error is not None
    assert ended.error.type == "OutputValidationError"
    assert ended.output_validation_failures == 2
    assert ended.output == '{"title": "Alien"}'  # content: the tracers show it only when capture is on


# ------------------------------------------------------------------ bad output on the wire, end events

BAD_ANSWERS = {"not JSON": "Paris, I think", "wrong schema": '{"name": "Paris"}', "empty": ""}


def openai_call(arguments: str, call_id: str = "call_1", name: str = "final_result") -> Reply:
    call = {"index": 0, "id": call_id, "function": {"name": name, "arguments": arguments}}
    chunk = {"choices": [{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": "tool_calls"}]}
    return Reply.sse([f"data: {json.dumps(chunk)}", "data: [DONE]"])


def bad_reply(provider: str, answer: str, attempt: int) -> Reply:
    """The bad answer as ``provider`` sends it: native text, the output tool's arguments, Anthropic's
    forced tool input; an empty answer is an answer with nothing in it."""
    if provider == "openai-native" or (provider == "openai-tool" and not answer):
        return openai_text(*pieces(answer))
    if provider == "openai-tool":
        return openai_call(answer, f"call_{attempt}")
    if not answer:
        return anthropic_blocks([], stop="end_turn")
    return anthropic_blocks([{"tool": "final_result", "id": f"toolu_{attempt}", "json": pieces(answer)}])


@pytest.mark.parametrize("kind", list(BAD_ANSWERS))
@pytest.mark.parametrize("provider", ["openai-native", "openai-tool", "anthropic"])
async def test_bad_output_on_the_wire_is_corrected_once_then_fails_with_every_end_event(
    server: WireServer, openai: Any, anthropic: AnthropicModel, tracer: RecordingTracer, provider: str, kind: str
) -> None:
    answer = BAD_ANSWERS[kind]
    server.queue(bad_reply(provider, answer, 1), bad_reply(provider, answer, 2))
    model = anthropic if provider == "anthropic" else openai(native_output=provider == "openai-native")
    agent = Agent("geo", model, output_type=City)
    with pytest.raises(OutputValidationError) as caught:
        await agent.run("Paris?")
    # the native fields were asked for, and exactly one correction was sent
    first, second = (r.body for r in server.requests)
    if provider == "openai-native":
        assert first["response_format"]["type"] == "json_schema"
    elif provider == "openai-tool":
        assert "response_format" not in first
        assert [t["function"]["name"] for t in first["tools"]] == ["final_result"]
    else:
        assert first["tool_choice"] == {"type": "tool", "name": "final_result"}
    assert "is not valid City" not in json.dumps(first["messages"])
    assert "is not valid City" in json.dumps(second["messages"][-1])  # (Anthropic merges it into the user turn)
    error = caught.value
    assert error.errors
    assert error.result is not None
    assert error.result.status == "failed"
    assert error.result.output is None
    assert tracer.unmatched() == []  # every start has its end
    (ended,) = tracer.of_type(RunEnded)
    assert (ended.status, ended.output_validation_failures) == ("failed", 2)
    assert ended.error is not None
    assert ended.error.type == "OutputValidationError"
    assert [e.status for e in tracer.of_type(ModelCallEnded)] == ["ok", "ok"]


@pytest.mark.parametrize("kind", list(BAD_ANSWERS))
async def test_one_bad_answer_then_a_good_one_completes(
    server: WireServer, openai: Any, tracer: RecordingTracer, kind: str
) -> None:
    server.queue(openai_text(*pieces(BAD_ANSWERS[kind])), openai_text(*pieces(json.dumps(PARIS))))
    result = await Agent("geo", openai(), output_type=City).run("Paris?")
    assert result.output == City(**PARIS)
    assert [e.purpose for e in tracer.of_type(ModelCallStarted)] == ["turn", "output_retry"]
    (ended,) = tracer.of_type(RunEnded)
    assert (ended.status, ended.output_validation_failures) == ("completed", 1)
    assert tracer.unmatched() == []


async def test_an_unknown_handoff_name_with_structured_output(
    server: WireServer, openai: Any, tracer: RecordingTracer
) -> None:
    other = Agent("maps", ScriptedModel(["never asked"]), output_type=City)
    server.queue(openai_call("{}", name="transfer_to_atlas"), openai_text(*pieces(json.dumps(PARIS))))
    agent = Agent("geo", openai(), output_type=City, handoffs=[other])
    result = await agent.run("Paris?")
    assert result.output == City(**PARIS)
    first, second = (r.body for r in server.requests)
    assert first["response_format"]["type"] == "json_schema"
    assert [t["function"]["name"] for t in first["tools"]] == ["transfer_to_maps"]
    seen = second["messages"][-1]
    assert seen["role"] == "tool"
    assert "transfer_to_atlas" in seen["content"]
    assert "transfer_to_maps" in seen["content"]  # it names the tools there are
    assert not tracer.of_type(HandoffOccurred)
    (tool_end,) = tracer.of_type(ToolCallEnded)
    assert (tool_end.tool, tool_end.status) == ("transfer_to_atlas", "error")
    (ended,) = tracer.of_type(RunEnded)
    assert (ended.status, ended.output_validation_failures) == ("completed", 0)
    assert tracer.unmatched() == []


class Code(BaseModel):
    code: str

    @field_validator("code")
    @classmethod
    def four_letters(cls, value: str) -> str:
        if len(value) != 4:  # a validator written for the whole answer, wrong on part of one
            raise TypeError(f"{value!r} is not four letters")
        return value


async def test_a_validator_that_breaks_on_partial_output_does_not_fail_the_stream(
    server: WireServer, openai: Any, tracer: RecordingTracer
) -> None:
    server.queue(openai_text(*pieces(json.dumps({"code": "ABCD"}), 3)))
    agent = Agent("codes", openai(), output_type=Code)
    events = [event async for event in agent.stream("A code?")]
    final = events[-1]
    assert isinstance(final, FinalResult)
    assert final.result.output == Code(code="ABCD")
    assert [e.output for e in events if isinstance(e, PartialOutput)] == [Code(code="ABCD")]
    assert tracer.unmatched() == []


# ---------------------------------------------------------------- the output tool with the test models


async def test_tool_mode_with_scripted_model() -> None:
    model = ScriptedModel([Step(tool_calls=[("final_result", {"x": 1, "y": 2})])])
    agent = Agent("pts", model, output_type=Point)
    assert agent.config.output is not None
    assert agent.config.output.mode == "tool"
    result = await agent.run("A point")
    assert result.output == Point(1, 2)
    assert result.status == "completed"


@pytest.mark.parametrize(
    ("output_type", "answer", "expected"),
    [
        (int, '{"response": 42}', 42),
        (int, "42", 42),  # a bare scalar as text is accepted
        (list[str], '```json\n{"response": ["a", "b"]}\n```', ["a", "b"]),
        (list[str], '["a", "b"]', ["a", "b"]),
        (Movie, '{"title": "Alien", "year": 1979}', {"title": "Alien", "year": 1979}),
        (bool, '{"response": true}', True),
        (dict[str, int], '{"response": {"a": 1}}', {"a": 1}),
    ],
)
async def test_text_answers_validate_for_every_kind_of_type(output_type: Any, answer: str, expected: Any) -> None:
    result = await Agent("t", ScriptedModel([answer]), output_type=output_type).run("go")
    assert result.output == expected


async def test_not_json_and_empty_answers_are_corrected() -> None:
    seen: list[ModelRequest] = []

    def answer(messages: Sequence[Message], request: ModelRequest) -> str:
        seen.append(request)
        return ["", "this is not JSON", '{"x": 5, "y": 6}'][len(seen) - 1]

    agent = Agent("pts", FunctionModel(answer), output_type=Point, output_retries=2)
    with capture_events() as events:
        result = await agent.run("A point")
    assert result.output == Point(5, 6)
    assert [r.purpose for r in seen] == ["turn", "output_retry", "output_retry"]
    assert all(r.output is not None and r.output.mode == "tool" for r in seen)
    assert [t.name for t in seen[0].tools] == ["final_result"]
    assert "the answer was empty" in (result.messages[2].content or "")
    assert "call" in (result.messages[4].content or "")
    assert "final_result" in (result.messages[4].content or "")
    (ended,) = events.of_type(RunEnded)
    assert ended.output_validation_failures == 2
    assert len(events.of_type(ModelCallStarted)) == 3  # exactly one extra call per correction


async def test_no_retries_fails_at_the_first_invalid_answer() -> None:
    model = ScriptedModel(["{}", "never played"])
    with pytest.raises(OutputValidationError) as caught:
        await Agent("pts", model, output_type=Point, output_retries=0).run("A point")
    assert {e["loc"] for e in caught.value.errors} == {("x",), ("y",)}
    assert "after 0 correction(s)" in str(caught.value)
    assert caught.value.result is not None
    assert caught.value.result.turns == 1


async def test_output_call_with_other_calls_ends_the_run_and_answers_every_call() -> None:
    ran = []

    @tool
    def side() -> str:
        """A side effect."""
        ran.append(1)
        return "done"

    step = Step(tool_calls=[ToolCall("c1", "side", "{}"), ToolCall("c2", "final_result", '{"x": 1, "y": 1}')])
    result = await Agent("pts", ScriptedModel([step]), tools=[side], output_type=Point).run("go")
    assert result.output == Point(1, 1)
    assert not ran
    assert [(m.role, m.tool_call_id) for m in result.messages[-2:]] == [("tool", "c2"), ("tool", "c1")]


async def test_tools_then_output() -> None:
    @tool
    def lookup(city: str) -> str:
        """Facts about a city."""
        return json.dumps(PARIS)

    model = ScriptedModel([("lookup", {"city": "Paris"}), ("final_result", PARIS)])
    result = await Agent("geo", model, tools=[lookup], output_type=City).run("Paris?")
    assert result.output == City(**PARIS)
    assert result.turns == 2


async def test_function_model_native_mode_streams_partial_lists() -> None:
    text = json.dumps({"response": [{"title": "Alien", "year": 1979}, {"title": "Heat", "year": 1995}]})

    def answer(messages: Sequence[Message], request: ModelRequest) -> str:
        assert request.output is not None
        assert request.output.mode == "native"
        assert not request.tools
        return text

    agent = Agent("films", FunctionModel(answer, native_output=True, chunks=12), output_type=list[Movie])
    partials = [e.output async for e in agent.stream("Films?") if isinstance(e, PartialOutput)]
    assert partials[-1] == [{"title": "Alien", "year": 1979}, {"title": "Heat", "year": 1995}]
    assert [{"title": "Alien", "year": 1979}] in partials


@pytest.mark.parametrize("items", [25, 400])
async def test_partial_parsing_costs_a_bounded_multiple_of_the_answer(
    monkeypatch: pytest.MonkeyPatch, items: int
) -> None:
    """Each partial parse reads the whole text so far: parsing at every delta of a long answer would
    cost its length squared. Paced, the characters parsed stay within a constant times the answer's."""
    films = [{"title": f"Film number {i}", "year": 1900 + i} for i in range(items)]
    text = json.dumps({"response": films})
    parsed: list[int] = []
    partial = _output._Schema.partial

    def counted(self: Any, so_far: str) -> Any:
        parsed.append(len(so_far))
        return partial(self, so_far)

    monkeypatch.setattr(_output._Schema, "partial", counted)

    def answer(messages: Sequence[Message], request: ModelRequest) -> str:
        return text

    chunks = len(text) // 8  # a few characters a delta, as providers stream
    agent = Agent("films", FunctionModel(answer, native_output=True, chunks=chunks), output_type=list[Movie])
    partials: list[Any] = []
    final = None
    async for event in agent.stream("Films?"):
        if isinstance(event, PartialOutput):
            partials.append(event.output)
        elif isinstance(event, FinalResult):
            final = event.result
    assert final is not None
    assert final.output == films
    assert sum(parsed) <= (_output.PARTIAL_BUDGET + 1) * len(text)
    assert partials[-1] == films  # the last parse, when the call ends, sees the whole answer
    assert [films[0]] in partials  # a short answer so far is parsed at every delta: the first item shows alone
    assert len(partials) >= 10


# ------------------------------------------------------------------------------ per run, text, config


async def test_run_output_type_overrides_the_agent_and_text_stays_text() -> None:
    agent = Agent("t", ScriptedModel(["hello", '{"x": 1, "y": 2}', "3"], per_run=False))
    assert (await agent.run("hi")).output == "hello"
    assert (await agent.run("point", output_type=Point)).output == Point(1, 2)
    typed = Agent("t", ScriptedModel(["7"]), output_type=Point)
    assert (await typed.run("n", output_type=int)).output == 7


async def test_a_run_level_type_is_compiled_once_per_agent_and_model_mode() -> None:
    model = FunctionModel(lambda messages, request: '{"x": 1, "y": 2}')
    agent = Agent("t", model)
    first = agent.config.output_for(Point)
    assert first is not None
    assert first.mode == "tool"
    assert agent.config.output_for(Point) is first  # not a new spec (and output tool) per run
    assert (await agent.run("point", output_type=Point)).output == Point(1, 2)
    model.native_output = True  # what the spec depends on changed: compiled again, for the native mode
    native = agent.config.output_for(Point)
    assert native is not None
    assert native is not first
    assert native.mode == "native"
    assert agent.config.output_for(list[int]) is agent.config.output_for(list[int])


async def test_a_blank_answer_is_reported_empty() -> None:
    model = ScriptedModel([" \n\t "])
    with pytest.raises(OutputValidationError) as caught:
        await Agent("pts", model, output_type=Point, output_retries=0).run("A point")
    assert caught.value.errors == [{"type": "missing", "loc": (), "msg": "the answer was empty"}]
    assert caught.value.raw_output == " \n\t "


def test_run_sync_takes_an_output_type() -> None:
    agent = Agent("t", ScriptedModel(["[1, 2, 3]"]))
    assert agent.run_sync("n", output_type=list[int]).output == [1, 2, 3]


def test_bad_settings_fail_when_the_agent_is_built() -> None:
    with pytest.raises(ConfigurationError, match="output_mode must be"):
        Agent("t", ScriptedModel([]), output_type=int, output_mode="json")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="no native structured-output mode"):
        Agent("t", ScriptedModel([]), output_type=int, output_mode="native")
    with pytest.raises(ConfigurationError, match="output_retries must be"):
        Agent("t", ScriptedModel([]), output_type=int, output_retries=-1)
    with pytest.raises(ConfigurationError, match="cannot be validated"):
        Agent("t", ScriptedModel([]), output_type=object())


# --------------------------------------------------------------------------------- resume keeps the type


async def test_resume_keeps_the_type_and_the_corrections_used() -> None:
    @tool
    def confirm() -> str:
        """Ask a person."""
        raise ApprovalRequired("confirm?")

    store = InMemoryCheckpointStore()
    script = [
        '{"x": "bad"}',  # corrected: one of the run's one correction is used
        ("confirm", {}),
        '{"x": 3, "y": 4}',
    ]
    agent = Agent("pts", ScriptedModel(script), tools=[confirm], output_type=Point, checkpoints=store)
    paused = await agent.run("A point")
    assert paused.status == "interrupted"
    assert paused.output is None
    saved = await store.load(paused.run_id)
    assert saved is not None
    assert saved.output_retries == 1
    # a new agent object (as in another process) with the same type resumes to a typed output
    again = Agent("pts", ScriptedModel(['{"x": 3, "y": 4}']), tools=[confirm], checkpoints=store)
    resumed = await again.resume(paused.run_id, {i.id: True for i in paused.interruptions}, output_type=Point)
    assert resumed.status == "completed"
    assert resumed.output == Point(3, 4)


async def test_resume_with_the_corrections_used_up_fails_at_the_next_bad_answer() -> None:
    @tool
    def confirm() -> str:
        """Ask a person."""
        raise ApprovalRequired("confirm?")

    store = InMemoryCheckpointStore()
    script = ['{"x": "bad"}', ("confirm", {}), "not json"]
    agent = Agent("pts", ScriptedModel(script), tools=[confirm], output_type=Point, checkpoints=store)
    paused = await agent.run("A point")
    with pytest.raises(OutputValidationError, match="after 1 correction"):
        await agent.resume(paused.run_id, {i.id: True for i in paused.interruptions})


async def test_a_run_with_a_type_of_its_own_does_not_resume_as_text() -> None:
    @tool
    def confirm() -> str:
        """Ask a person."""
        raise ApprovalRequired("confirm?")

    store = InMemoryCheckpointStore()
    agent = Agent("pts", ScriptedModel([("confirm", {}), '{"x": 3, "y": 4}']), tools=[confirm], checkpoints=store)
    paused = await agent.run("A point", output_type=Point)
    approvals = {i.id: True for i in paused.interruptions}
    saved = await store.load(paused.run_id)
    assert saved is not None
    assert Checkpoint.decode(paused.run_id, saved.encode()).output_type == "test_output.Point"
    # the agent has no output_type: resuming without the run's would return its JSON as text
    with pytest.raises(UserError, match=r"started with output_type=test_output\.Point") as refused:
        await agent.resume(paused.run_id, approvals)
    assert "output_type=" in str(refused.value)
    still = await store.load(paused.run_id)
    assert still is not None
    assert still.status == "interrupted"  # refused before anything ran
    resumed = await agent.resume(paused.run_id, approvals, output_type=Point)
    assert resumed.output == Point(3, 4)


async def test_records_written_before_the_type_was_kept_resume_as_before() -> None:
    @tool
    def confirm() -> str:
        """Ask a person."""
        raise ApprovalRequired("confirm?")

    store = InMemoryCheckpointStore()
    agent = Agent("pts", ScriptedModel([("confirm", {}), '{"x": 3, "y": 4}']), tools=[confirm], checkpoints=store)
    paused = await agent.run("A point", output_type=Point)
    saved = await store.load(paused.run_id)
    assert saved is not None
    record = json.loads(saved.encode())
    del record["output_type"]
    old = Checkpoint.decode(paused.run_id, json.dumps(record).encode())
    assert old.output_type is None
    await store.save(old)
    resumed = await agent.resume(paused.run_id, {i.id: True for i in paused.interruptions})
    assert resumed.output == '{"x": 3, "y": 4}'  # nothing recorded, nothing checked: the agent's own (text)
