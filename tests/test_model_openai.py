"""OpenAIChatModel against real sockets: the loopback wire server replays Chat Completions transcripts.

The transcripts in ``tests/transcripts/openai/`` are SSE wire bodies byte for byte. The official
``openai`` package reads the same transcripts from the same server and must agree with us, so the fake
server is honest; Hypothesis splits and corrupts them to show the parsing holds for any framing.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import itertools
import json
import logging
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wire_server import Reply, WireServer, wire_server

from tracedagent import (
    Agent,
    ConfigurationError,
    FinalResult,
    Message,
    ModelCallEnded,
    ModelCallStarted,
    ModelConnectionError,
    ModelError,
    ModelHTTPError,
    ModelRequest,
    ModelResponse,
    ModelStreamError,
    RetryScheduled,
    RunEnded,
    TextDelta,
    ThinkingDelta,
    ToolCall,
    ToolCallStarted,
    Usage,
    tool,
)
from tracedagent.models import OpenAIChatModel, resolve_model
from tracedagent.models._openai import ChunkAssembler
from tracedagent.testing import capture_events

TRANSCRIPTS = Path(__file__).parent / "transcripts" / "openai"
KEY = "sk-test-SENTINEL-9f8e7d6c5b4a"


def transcript(name: str) -> str:
    return (TRANSCRIPTS / name).read_text(encoding="utf-8")


def sse_reply(name: str, **kwargs: Any) -> Reply:
    """The transcript as a reply, one SSE event per HTTP chunk (the bytes are exactly the file's)."""
    text = transcript(name)
    chunks = [block + "\n\n" for block in text.split("\n\n") if block]
    assert "".join(chunks) == text
    return Reply(chunks=chunks, **kwargs)


@pytest.fixture
def server() -> Iterator[WireServer]:
    with wire_server() as s:
        yield s


@pytest.fixture
async def make_model(server: WireServer) -> AsyncIterator[Any]:
    """A factory of models pointed at the wire server, with tiny retry delays; clients closed after."""
    made: list[OpenAIChatModel] = []

    def make(name: str = "gpt-4o-mini", **kwargs: Any) -> OpenAIChatModel:
        kwargs.setdefault("base_url", f"{server.url}/v1")
        kwargs.setdefault("api_key", KEY)
        kwargs.setdefault("retry_initial_delay", 0.001)
        kwargs.setdefault("retry_max_delay", 0.01)
        kwargs.setdefault("max_retry_after", 0.02)
        model = OpenAIChatModel(name, **kwargs)
        made.append(model)
        return model

    yield make
    for model in made:
        await model.aclose()


@tool
def get_weather(city: str) -> str:
    """The current weather in a city."""
    return {"Paris": "18°C, sunny", "London": "14°C, rain", "Oslo": "6°C"}[city]


async def collect(model: OpenAIChatModel, request: ModelRequest | None = None) -> list[Any]:
    return [part async for part in model.stream(request or ModelRequest([Message.user("Hi")]))]


# ------------------------------------------------------------------------------ through an agent


async def test_text_answer_streams_into_an_agent_run(server: WireServer, make_model: Any) -> None:
    server.queue(sse_reply("text.sse"))
    agent = Agent("helper", make_model(), instructions="Be brief.", model_settings={"temperature": 0.2})
    deltas = []
    with capture_events() as events:
        async for event in agent.stream("Hi"):
            if isinstance(event, TextDelta):
                deltas.append(event.text)
    assert deltas == ["Hello", "!", " How", " can", " I", " help", " you", " today", "?"]
    (ended,) = events.of_type(ModelCallEnded)
    assert ended.status == "ok"
    assert ended.finish_reason == "stop"
    assert ended.response_model == "gpt-4o-mini-2024-07-18"
    assert ended.usage == Usage(input_tokens=19, output_tokens=10, requests=1)
    assert not ended.usage.estimated
    assert ended.output == Message.assistant("Hello! How can I help you today?")
    (request,) = server.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["accept"] == "text/event-stream"
    assert request.body == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.2,
    }


async def test_several_tool_calls_in_one_turn_run_and_go_back_to_the_model(server: WireServer, make_model: Any) -> None:
    server.queue(sse_reply("tool_calls.sse"), sse_reply("tool_answer.sse"))
    agent = Agent("weather", make_model(), tools=[get_weather], model_settings={"parallel_tool_calls": True})
    with capture_events() as events:
        result = await agent.run("Weather in Paris and London?")
    assert result.output == "It is 18°C in Paris and 14°C in London."
    assert [(e.call_id, e.tool, e.arguments) for e in events.of_type(ToolCallStarted)] == [
        ("call_pL2dXv8wQm4TnY7bKc1Rz9Ae", "get_weather", '{"city":"Paris"}'),
        ("call_Hs5kUj0eGf3WqN8vMx6Ty2Lo", "get_weather", '{"city":"London"}'),
    ]
    first, second = events.of_type(ModelCallEnded)
    assert first.finish_reason == "tool_calls"
    assert server.requests[0].client == server.requests[1].client  # read to its end, the connection is reused
    assert second.finish_reason == "stop"
    assert result.usage == Usage(input_tokens=81 + 160, output_tokens=46 + 14, requests=2)
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The current weather in a city.",
                "parameters": get_weather.spec.parameters,
            },
        }
    ]
    assert server.requests[0].body["tools"] == tools
    assert server.requests[0].body["parallel_tool_calls"] is True
    assert server.requests[1].body == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "user", "content": "Weather in Paris and London?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_pL2dXv8wQm4TnY7bKc1Rz9Ae",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    },
                    {
                        "id": "call_Hs5kUj0eGf3WqN8vMx6Ty2Lo",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"London"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_pL2dXv8wQm4TnY7bKc1Rz9Ae", "content": "18°C, sunny"},
            {"role": "tool", "tool_call_id": "call_Hs5kUj0eGf3WqN8vMx6Ty2Lo", "content": "14°C, rain"},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": tools,
        "parallel_tool_calls": True,
    }


async def test_usage_chunk_gives_cached_and_reasoning_tokens(server: WireServer, make_model: Any) -> None:
    server.queue(sse_reply("cached_reasoning_usage.sse"))
    result = await Agent("thinker", make_model("o4-mini")).run("What is six times seven?")
    assert result.output == "The answer is 42."
    assert result.usage == Usage(
        input_tokens=1841, output_tokens=295, cache_read_tokens=1792, reasoning_tokens=256, requests=1
    )
    assert not result.usage.estimated


@pytest.mark.parametrize(
    ("name", "held_from", "thinking", "text"),
    [
        ("vllm_reasoning_content.sse", 3, "The user greets me; answer briefly.", "Hi there!"),
        ("ollama_reasoning_no_usage.sse", 2, "Okay, a greeting.", "Hello!"),
    ],
)
async def test_reasoning_deltas_reach_agent_stream_as_they_arrive(
    server: WireServer, make_model: Any, name: str, held_from: int, thinking: str, text: str
) -> None:
    # The server holds the rest of the answer until the first ThinkingDelta has come out of agent.stream().
    gate = threading.Event()
    server.queue(sse_reply(name, gate=gate, gate_before=held_from))
    agent = Agent("thinker", make_model())
    kinds: list[str] = []
    thought: list[str] = []

    async def consume() -> Any:
        async for event in agent.stream("Hello"):
            if isinstance(event, ThinkingDelta):
                kinds.append("thinking" if gate.is_set() else "thinking before the rest was sent")
                thought.append(event.text)
                gate.set()
            elif isinstance(event, TextDelta):
                kinds.append("text")
            elif isinstance(event, FinalResult):
                return event.result
        return None

    result = await asyncio.wait_for(consume(), 5)
    assert kinds[0] == "thinking before the rest was sent"
    assert kinds[-1] == "text"
    assert "".join(thought) == thinking
    assert result.output == text
    assert result.messages[-1].thinking == thinking


async def test_no_usage_chunk_means_estimated_usage(server: WireServer, make_model: Any) -> None:
    server.queue(sse_reply("ollama_reasoning_no_usage.sse"))
    with capture_events() as events:
        result = await Agent("local", make_model("qwen3:8b", provider="ollama")).run("Hello")
    assert result.output == "Hello!"
    (ended,) = events.of_type(ModelCallEnded)
    assert ended.provider == "ollama"
    assert ended.response_model == "qwen3:8b"
    assert ended.usage.estimated
    assert ended.usage.input_tokens > 0
    assert ended.usage.output_tokens > 0


async def test_a_tool_call_without_an_id_gets_one_that_the_tool_result_answers(
    server: WireServer, make_model: Any
) -> None:
    server.queue(sse_reply("tool_call_without_id.sse"), sse_reply("text.sse"))
    agent = Agent("weather", make_model("llama-3.1-8b-instruct"), tools=[get_weather])
    with capture_events() as events:
        await agent.run("Weather in Oslo?")
    (started,) = events.of_type(ToolCallStarted)
    assert started.call_id.startswith("call_")
    assert len(started.call_id) > len("call_")
    assert started.arguments == '{"city":"Oslo"}'
    messages = server.requests[1].body["messages"]
    assert messages[1]["tool_calls"][0]["id"] == started.call_id
    assert messages[2] == {"role": "tool", "tool_call_id": started.call_id, "content": "6°C"}


async def test_traceparent_header_is_the_model_call_span(server: WireServer, make_model: Any) -> None:
    server.queue(sse_reply("text.sse"))
    with capture_events() as events:
        await Agent("helper", make_model()).run("Hi")
    (started,) = events.of_type(ModelCallStarted)
    assert server.requests[0].headers["traceparent"] == f"00-{started.trace_id}-{started.span_id}-01"


async def test_cancelling_the_run_closes_the_http_stream(server: WireServer, make_model: Any) -> None:
    gate = threading.Event()
    pieces = [f'data: {{"choices":[{{"index":0,"delta":{{"content":"w{i} "}}}}]}}\n\n' for i in range(300)]
    reply = Reply(chunks=pieces, gate=gate, gate_before=2, chunk_delay=0.002)
    server.queue(reply)
    agent = Agent("helper", make_model())
    with capture_events() as events:
        stream = agent.stream("Talk")
        async for event in stream:
            if isinstance(event, TextDelta):
                break  # the answer is still streaming: this cancels the run
        await stream.aclose()
    gate.set()  # let the server write the rest: it must find the connection closed
    assert await asyncio.to_thread(reply.aborted.wait, 5)
    (ended,) = events.of_type(ModelCallEnded)
    assert ended.status == "cancelled"
    assert events.of_type(RunEnded)[0].status == "cancelled"


async def test_closing_the_model_stream_between_parts_closes_the_http_stream(
    server: WireServer, make_model: Any
) -> None:
    # Here the consumer stops while the provider waits at a yield, not inside a read of the socket.
    gate = threading.Event()
    pieces = [f'data: {{"choices":[{{"index":0,"delta":{{"content":"w{i} "}}}}]}}\n\n' for i in range(300)]
    reply = Reply(chunks=pieces, gate=gate, gate_before=2, chunk_delay=0.002)
    server.queue(reply)
    parts = make_model().stream(ModelRequest([Message.user("Talk")]))
    assert await anext(parts) == TextDelta("w0 ")
    await parts.aclose()  # type: ignore[attr-defined]
    gate.set()
    assert await asyncio.to_thread(reply.aborted.wait, 5)


# ------------------------------------------------------------------------------ errors and retries


def _http_date(offset_s: float) -> str:
    return email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=offset_s), usegmt=True)


@pytest.mark.parametrize(
    ("retry_after", "expected_delay"),
    [
        ("0", 0.0),
        ("1", 0.02),  # capped by max_retry_after=0.02
        (30.0, 0.02),  # an HTTP date 30 s ahead, capped
        (-30.0, 0.0),  # an HTTP date already past
    ],
    ids=["seconds-0", "seconds-1-capped", "http-date-capped", "http-date-past"],
)
async def test_429_with_retry_after_is_retried(
    server: WireServer, make_model: Any, retry_after: str | float, expected_delay: float
) -> None:
    if isinstance(retry_after, float):
        retry_after = _http_date(retry_after)
    limited = {"error": {"message": "Rate limit reached for gpt-4o-mini", "type": "requests", "code": "rate_limit"}}
    server.queue(Reply.json(429, limited, headers={"retry-after": retry_after}), sse_reply("text.sse"))
    with capture_events() as events:
        result = await Agent("helper", make_model()).run("Hi")
    assert result.output == "Hello! How can I help you today?"
    (retry,) = events.of_type(RetryScheduled)
    assert (retry.kind, retry.target, retry.attempt) == ("model", "gpt-4o-mini", 1)
    assert retry.delay_s == pytest.approx(expected_delay)
    assert retry.error is not None
    assert retry.error.type == "ModelHTTPError"
    assert "429" in retry.error.message
    assert "Rate limit reached for gpt-4o-mini" in retry.error.message
    assert retry.span_id == events.of_type(ModelCallStarted)[0].span_id
    assert len(server.requests) == 2


async def test_5xx_until_retries_run_out_is_a_model_http_error(server: WireServer, make_model: Any) -> None:
    failure = {"error": {"message": "The server had an error processing your request.", "type": "server_error"}}
    server.queue(*[Reply.json(500, failure) for _ in range(3)])
    with capture_events() as events, pytest.raises(ModelHTTPError) as caught:
        await Agent("helper", make_model(max_retries=2)).run("Hi")
    error = caught.value
    assert (error.status_code, error.attempts) == (500, 3)
    assert error.provider_message == "The server had an error processing your request."
    assert "gave up after 3 attempts" in str(error)
    assert [r.attempt for r in events.of_type(RetryScheduled)] == [1, 2]
    assert len(server.requests) == 3
    assert events.of_type(ModelCallEnded)[0].status == "error"


async def test_400_is_not_retried_and_carries_the_provider_message(server: WireServer, make_model: Any) -> None:
    invalid = {
        "error": {
            "message": "Invalid value for 'temperature': expected a number <= 2.",
            "type": "invalid_request_error",
            "param": "temperature",
            "code": "invalid_value",
        }
    }
    server.queue(Reply.json(400, invalid), sse_reply("text.sse"))
    with capture_events() as events, pytest.raises(ModelHTTPError) as caught:
        await Agent("helper", make_model(max_retries=3), model_settings={"temperature": 9}).run("Hi")
    assert caught.value.status_code == 400
    assert caught.value.attempts == 1
    assert caught.value.provider_message == "Invalid value for 'temperature': expected a number <= 2."
    assert "HTTP 400: Invalid value for 'temperature'" in str(caught.value)
    assert not events.of_type(RetryScheduled)
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"object": "error", "message": "The model `nope` does not exist.", "type": "NotFoundError", "code": 404},
            "The model `nope` does not exist.",
        ),
        ({"error": "model 'nope' not found"}, "model 'nope' not found"),
    ],
)
async def test_error_bodies_of_compatible_servers(
    server: WireServer, make_model: Any, body: dict[str, Any], message: str
) -> None:
    server.queue(Reply.json(404, body))
    with pytest.raises(ModelHTTPError) as caught:
        await collect(make_model("nope"))
    assert caught.value.provider_message == message


async def test_error_object_in_the_middle_of_the_stream(server: WireServer, make_model: Any) -> None:
    server.queue(sse_reply("error_midstream.sse"))
    deltas: list[str] = []

    async def consume() -> None:
        async for event in Agent("helper", make_model()).stream("Hi"):
            if isinstance(event, TextDelta):
                deltas.append(event.text)

    with capture_events() as events, pytest.raises(ModelStreamError) as caught:
        await consume()
    assert deltas == ["Let me", " think"]
    assert "The server had an error while processing your request. Sorry about that!" in str(caught.value)
    assert events.of_type(ModelCallEnded)[0].status == "error"
    assert events.of_type(RunEnded)[0].status == "failed"


async def test_an_sse_error_event_is_a_stream_error(server: WireServer, make_model: Any) -> None:
    server.queue(Reply.sse(['event: error\ndata: {"error":{"message":"Overloaded","type":"server_error"}}']))
    with pytest.raises(ModelStreamError, match="Overloaded"):
        await collect(make_model())


async def test_a_malformed_chunk_is_a_stream_error(server: WireServer, make_model: Any) -> None:
    server.queue(sse_reply("malformed_chunk.sse"))
    with pytest.raises(ModelStreamError, match="not JSON"):
        await Agent("helper", make_model()).run("Hi")


async def test_a_stream_cut_off_without_done_or_finish_reason_is_never_a_short_answer(
    server: WireServer, make_model: Any
) -> None:
    server.queue(sse_reply("cut_off.sse"))
    with pytest.raises(ModelStreamError, match="incomplete") as caught:
        await Agent("helper", make_model()).run("Hi")
    assert caught.value.result is not None
    assert caught.value.result.status == "failed"
    assert caught.value.result.output is None


async def test_a_finish_reason_without_done_is_a_complete_answer(server: WireServer, make_model: Any) -> None:
    text = transcript("text.sse").replace("data: [DONE]\n\n", "")
    server.queue(Reply(chunks=[text]))
    result = await Agent("helper", make_model()).run("Hi")
    assert result.output == "Hello! How can I help you today?"


async def test_a_dropped_connection_mid_stream_is_a_stream_error(server: WireServer, make_model: Any) -> None:
    server.queue(sse_reply("text.sse", drop_after=4))
    with pytest.raises(ModelStreamError, match="closed the connection"):
        await Agent("helper", make_model(max_retries=2)).run("Hi")
    assert len(server.requests) == 1  # the answer had started: nothing is retried


async def test_a_200_that_is_not_an_event_stream_is_a_stream_error(server: WireServer, make_model: Any) -> None:
    server.queue(Reply.json(200, {"object": "chat.completion", "choices": []}))
    with pytest.raises(ModelStreamError, match="event stream"):
        await collect(make_model())


async def test_a_slow_first_byte_hits_the_read_timeout(server: WireServer, make_model: Any) -> None:
    server.queue(sse_reply("text.sse", delay_headers=2.0))
    with pytest.raises(ModelConnectionError, match="timed out") as caught:
        await collect(make_model(read_timeout=0.05, max_retries=0))
    assert caught.value.attempts == 1


async def test_a_slow_first_byte_is_retried_then_gives_up(server: WireServer, make_model: Any) -> None:
    server.queue(sse_reply("text.sse", delay_headers=2.0), sse_reply("text.sse", delay_headers=2.0))
    with capture_events() as events, pytest.raises(ModelConnectionError) as caught:
        await Agent("helper", make_model(read_timeout=0.05, max_retries=1)).run("Hi")
    assert caught.value.attempts == 2
    (retry,) = events.of_type(RetryScheduled)
    assert retry.error is not None
    assert retry.error.type == "ModelConnectionError"
    assert "ReadTimeout" in retry.error.message


async def test_a_refused_connection_is_a_connection_error(make_model: Any) -> None:
    with socket.socket() as s:  # a loopback port that nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    model = make_model(base_url=f"http://127.0.0.1:{port}/v1", max_retries=0)
    with pytest.raises(ModelConnectionError, match="failed: ConnectError"):
        await collect(model)


# ------------------------------------------------------------------------------------ secrets


async def test_the_api_key_appears_in_no_event_log_or_error(
    server: WireServer, make_model: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    echo = {"error": {"message": f"Incorrect API key provided: {KEY}.", "type": "invalid_request_error"}}
    server.queue(
        sse_reply("text.sse"),  # a good run first: request logging must not show the key
        Reply.json(401, echo),
        Reply.sse([f'data: {{"error":{{"message":"bad key {KEY}","type":"auth"}}}}']),
        Reply.sse([f'data: {{"choices":[{{"index":0,"delta":{{"content":"{KEY}']),  # not JSON
        Reply.sse([f'data: {{"choices":[{{"index":0,"delta":{{"content":5,"note":"{KEY}"}}}}]}}']),  # bad shape
    )
    model = make_model(max_retries=0)
    agent = Agent("helper", model)
    errors: list[BaseException] = []
    with capture_events() as events:
        await agent.run("Hi")
        for _ in range(4):
            with pytest.raises(ModelError) as caught:
                await agent.run("Hi")
            errors.append(caught.value)
    assert [type(e) for e in errors] == [ModelHTTPError, ModelStreamError, ModelStreamError, ModelStreamError]
    assert "[redacted]" in str(errors[0])
    assert "[redacted]" in str(errors[1])
    for error in errors:
        for text in (str(error), repr(error), getattr(error, "provider_message", "")):
            assert KEY not in text
    assert len(events) > 0
    for event in events:
        assert KEY not in repr(event)
    assert KEY not in caplog.text
    assert KEY not in repr(model)
    assert KEY not in str(vars(model).get("headers"))


# ---------------------------------------------------------------------------------- configuration


def test_openai_itself_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        OpenAIChatModel("gpt-4o-mini")
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    model = OpenAIChatModel("gpt-4o-mini")
    assert model.base_url == "https://api.openai.com/v1"
    assert model._auth_headers()["authorization"] == f"Bearer {KEY}"
    assert KEY not in repr(model)


def test_a_local_server_needs_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:8000/v1/")
    model = OpenAIChatModel("Qwen/Qwen3-8B", provider="vllm")
    assert (model.base_url, model.provider, model.name) == ("http://localhost:8000/v1", "vllm", "Qwen/Qwen3-8B")
    assert "authorization" not in model._auth_headers()
    ollama = OpenAIChatModel("qwen3:8b", base_url="http://localhost:11434/v1")
    assert ollama.base_url == "http://localhost:11434/v1"


def test_openai_organization_from_the_environment_goes_to_openai_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_ORG_ID", "org-env")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj-env")
    at_openai = OpenAIChatModel("gpt-4o-mini", base_url="https://api.openai.com/v1", api_key=KEY)
    assert (at_openai.organization, at_openai.project) == ("org-env", "proj-env")
    local = OpenAIChatModel("qwen3:8b", base_url="http://localhost:11434/v1", api_key=KEY)
    assert "openai-organization" not in local._auth_headers()
    assert "openai-project" not in local._auth_headers()


def test_bad_settings_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="provider"):
        OpenAIChatModel("m", base_url="http://localhost:1/v1", provider="")
    with pytest.raises(ConfigurationError, match="base URL"):
        OpenAIChatModel("m", base_url="localhost:11434")
    with pytest.raises(ConfigurationError, match="max_retries"):
        OpenAIChatModel("m", base_url="http://localhost:1/v1", max_retries=-1)


def test_resolve_model_builds_an_openai_chat_model() -> None:
    model = resolve_model("openai:gpt-4o-mini", base_url="http://localhost:1/v1", api_key=KEY)
    assert isinstance(model, OpenAIChatModel)
    assert (model.provider, model.name) == ("openai", "gpt-4o-mini")


async def test_settings_never_replace_the_stream_and_none_removes_a_field(server: WireServer, make_model: Any) -> None:
    server.queue(sse_reply("text.sse"))
    settings_ = {"stream": False, "stream_options": None, "max_tokens": 64, "tool_choice": "auto"}
    await Agent("helper", make_model(), model_settings=settings_).run("Hi")
    body = server.requests[0].body
    assert body["stream"] is True
    assert "stream_options" not in body
    assert "tool_choice" not in body  # no tools in this request: OpenAI would refuse it
    assert body["max_tokens"] == 64


async def test_organization_project_and_extra_headers_are_sent(server: WireServer, make_model: Any) -> None:
    server.queue(sse_reply("text.sse"))
    await collect(make_model(organization="org-1", project="proj-2", headers={"x-team": "search"}))
    headers = server.requests[0].headers
    assert (headers["openai-organization"], headers["openai-project"], headers["x-team"]) == (
        "org-1",
        "proj-2",
        "search",
    )


# ------------------------------------------------------------------------ the official SDK agrees


SDK_TRANSCRIPTS = [
    "text.sse",
    "tool_calls.sse",
    "tool_answer.sse",
    "cached_reasoning_usage.sse",
    "vllm_reasoning_content.sse",
    "ollama_reasoning_no_usage.sse",
    "tool_call_without_id.sse",
]


@pytest.mark.parametrize("name", SDK_TRANSCRIPTS)
async def test_the_official_openai_sdk_reads_the_same_transcripts(
    server: WireServer, make_model: Any, name: str
) -> None:
    openai = pytest.importorskip("openai", reason="the official openai package is needed for this cross-check")
    server.queue(sse_reply(name), sse_reply(name))
    parts = await collect(make_model())
    response = parts[-1]
    assert isinstance(response, ModelResponse)

    client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="test", max_retries=0)
    text: list[str] = []
    thinking: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    usage = None
    try:
        stream = await client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "Hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        async for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                delta = choice.delta
                if delta.content:
                    text.append(delta.content)
                extra = delta.model_extra or {}
                if extra.get("reasoning_content") or extra.get("reasoning"):
                    thinking.append(extra.get("reasoning_content") or extra["reasoning"])
                for call in delta.tool_calls or ():
                    slot = calls.setdefault(call.index, {"id": None, "name": None, "arguments": ""})
                    slot["id"] = slot["id"] or call.id
                    if call.function is not None:
                        slot["name"] = slot["name"] or call.function.name
                        slot["arguments"] += call.function.arguments or ""
    finally:
        await client.close()

    message = response.message
    assert (message.content or "") == "".join(text)
    assert (message.thinking or "") == "".join(thinking)
    sdk_calls = [calls[i] for i in sorted(calls)]
    assert [(c.name, c.arguments) for c in message.tool_calls] == [(c["name"], c["arguments"]) for c in sdk_calls]
    for ours, theirs in zip(message.tool_calls, sdk_calls, strict=True):
        assert ours.id == (theirs["id"] or ours.id)  # a call the server sent without an id got one of ours
        assert ours.id
    if usage is None:
        assert response.usage is None
    else:
        cached = usage.prompt_tokens_details.cached_tokens if usage.prompt_tokens_details else 0
        reasoning = usage.completion_tokens_details.reasoning_tokens if usage.completion_tokens_details else 0
        assert response.usage == Usage(usage.prompt_tokens, usage.completion_tokens, cached or 0, reasoning or 0, 1)


# ------------------------------------------------------------------------------ property tests


class _Chunks(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk


def _read(chunks: list[bytes]) -> list[Any]:
    """Parts of a response whose body arrives in ``chunks``, through the provider's real code path."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=_Chunks(chunks))

    async def main() -> list[Any]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            model = OpenAIChatModel("gpt-4o-mini", base_url="http://test/v1", api_key=KEY, client=client)
            return await collect(model)

    return asyncio.run(main())


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


PROPERTY_TRANSCRIPTS = ["text.sse", "tool_calls.sse", "tool_answer.sse", "vllm_reasoning_content.sse"]


@functools.cache
def _expected(name: str) -> tuple[Any, ...]:
    return tuple(_read([transcript(name).encode()]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(PROPERTY_TRANSCRIPTS), cuts=st.lists(st.integers(min_value=0), max_size=40))
def test_any_split_of_the_bytes_gives_the_same_answer(name: str, cuts: list[int]) -> None:
    # Splits land inside "data:", inside JSON, between \n and \n, and inside the UTF-8 of "°".
    assert tuple(_read(_split(transcript(name).encode(), cuts))) == _expected(name)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(PROPERTY_TRANSCRIPTS),
    cuts=st.lists(st.integers(min_value=0), max_size=10),
    edits=st.lists(st.tuples(st.integers(min_value=0), st.binary(max_size=3)), min_size=1, max_size=4),
    truncate=st.one_of(st.none(), st.integers(min_value=0)),
)
def test_corrupted_streams_fail_only_with_typed_errors(
    name: str, cuts: list[int], edits: list[tuple[int, bytes]], truncate: int | None
) -> None:
    data = bytearray(transcript(name).encode())
    for position, replacement in edits:
        at = position % (len(data) + 1)
        data[at : at + len(replacement)] = replacement
    if truncate is not None:
        del data[truncate % (len(data) + 1) :]
    try:
        parts = _read(_split(bytes(data), cuts))
    except ModelError:
        return  # ModelStreamError and its kin: the only way a broken stream may fail
    assert isinstance(parts[-1], ModelResponse)
    assert all(isinstance(p, TextDelta | ThinkingDelta) for p in parts[:-1])


_args = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)


@settings(max_examples=150, deadline=None)
@given(
    calls=st.lists(st.tuples(st.from_regex(r"[a-z_]{1,12}", fullmatch=True), _args), min_size=1, max_size=4),
    pieces=st.lists(st.integers(min_value=1, max_value=8), min_size=1, max_size=8),
    with_index=st.booleans(),
)
def test_assembler_joins_tool_call_deltas(calls: list[tuple[str, str]], pieces: list[int], with_index: bool) -> None:
    assembler = ChunkAssembler("openai:test")
    for index, (name, arguments) in enumerate(calls):
        parts: list[str] = []
        rest = arguments
        for size in pieces:
            parts.append(rest[:size])
            rest = rest[size:]
        parts.append(rest)
        for number, piece in enumerate(parts):
            call: dict[str, Any] = {"function": {"arguments": piece}}
            if with_index:
                call["index"] = index
            if number == 0:
                call.update(id=f"call_{index}", type="function")
                call["function"]["name"] = name
            assert assembler.feed({"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]}) == []
    assembler.feed({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    response = assembler.response(done=True)
    assert response.message.tool_calls == tuple(
        ToolCall(f"call_{i}", name, arguments or "{}") for i, (name, arguments) in enumerate(calls)
    )
    assert response.finish_reason == "tool_calls"


def test_assembler_rejects_what_it_cannot_read() -> None:
    for chunk in (
        [],
        {"choices": {}},
        {"choices": [{"delta": "x"}]},
        {"choices": [{"delta": {"content": 5}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": "0"}]}}]},
        {"usage": 3},
        {"error": {"message": "boom"}},
    ):
        with pytest.raises(ModelStreamError):
            ChunkAssembler().feed(chunk)
    assembler = ChunkAssembler()
    assembler.feed({"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}}]})
    with pytest.raises(ModelStreamError, match="without a function name"):
        assembler.response(done=True)


def test_an_empty_finish_reason_does_not_end_the_answer() -> None:
    assembler = ChunkAssembler()
    assembler.feed({"choices": [{"index": 0, "delta": {"content": "Hal"}, "finish_reason": ""}]})
    with pytest.raises(ModelStreamError, match="incomplete"):
        assembler.response(done=False)


def test_assembler_takes_the_first_choice_and_both_reasoning_names_once() -> None:
    assembler = ChunkAssembler()
    assert assembler.feed(
        {
            "choices": [
                {"index": 1, "delta": {"content": "other"}},
                {"index": 0, "delta": {"reasoning_content": "hm", "reasoning": "hm", "content": "yes"}},
            ]
        }
    ) == [ThinkingDelta("hm"), TextDelta("yes")]
    assert assembler.feed({"choices": None, "usage": {"prompt_tokens": 3, "completion_tokens": 1}}) == []
    response = assembler.response(done=True)
    assert response.message == Message("assistant", "yes", (), None, None, False, "hm")
    assert response.usage == Usage(3, 1, requests=1)


def test_transcripts_are_sse_bodies() -> None:
    for path in sorted(TRANSCRIPTS.glob("*.sse")):
        text = path.read_text(encoding="utf-8")
        assert text.endswith("\n\n"), path.name
        for block in text.split("\n\n")[:-1]:
            assert block.startswith("data: "), path.name
            data = block.removeprefix("data: ")
            if data != "[DONE]" and path.name != "malformed_chunk.sse":
                json.loads(data)
