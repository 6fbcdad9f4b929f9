"""The Anthropic Messages provider, over real sockets against the loopback wire server.

The transcripts in ``transcripts/anthropic/`` are exact SSE bodies in Anthropic's documented format;
the official ``anthropic`` package reads the same bytes from the same server to check that the fake
server and our reading of it are honest.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import itertools
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
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
    ModelHTTPError,
    ModelRequest,
    ModelResponse,
    ModelStreamError,
    RetryScheduled,
    TextDelta,
    ThinkingDelta,
    ToolCall,
    ToolCallEnded,
    UsageUpdated,
    tool,
)
from tracedagent.models import AnthropicModel, resolve_model
from tracedagent.models._anthropic import MessageAssembler, to_anthropic
from tracedagent.testing import RecordingTracer

TRANSCRIPTS = Path(__file__).parent / "transcripts" / "anthropic"
KEY = "sk-ant-api03-SENTINEL-9f8e7d6c5b4a"
GUARD_S = 5.0  # only a guard, so that a regression fails instead of hanging; never asserted on
MODEL = "claude-sonnet-4-5"
SDK_MODEL = "claude-wire-test"  # a name the official client does not warn about
EXPECTED_TEXT = 'Bonjour — déjà vu, 東京 🌸! Line two:\n"quoted".'  # the answer in text.sse

try:
    import anthropic
except ImportError:  # the checks against the official client are skipped
    anthropic = None


def transcript(name: str) -> bytes:
    return (TRANSCRIPTS / f"{name}.sse").read_bytes()


def events_of(body: bytes) -> list[bytes]:
    """The SSE body cut after each event's blank line: one chunk per event, as the API sends them."""
    return [block + b"\n\n" for block in body.split(b"\n\n") if block]


def reply(name: str, **options: Any) -> Reply:
    return Reply(chunks=events_of(transcript(name)), **options)


async def collect(stream: AsyncIterator[Any], into: list[Any]) -> None:
    async for item in stream:
        into.append(item)


def api_error(status: int, kind: str, message: str, **options: Any) -> Reply:
    return Reply.json(status, {"type": "error", "error": {"type": kind, "message": message}}, **options)


@tool
def get_weather(city: str, unit: str = "celsius") -> str:
    """The current weather in a city."""
    return {"Paris": "18°C", "東京": "24°C"}[city] + f" ({unit})"


@tool
def local_time() -> str:
    """The local time."""
    raise RuntimeError("clock unavailable")


@pytest.fixture(scope="module")
def running_server() -> Iterator[WireServer]:
    with wire_server() as running:
        yield running


@pytest.fixture
def server(running_server: WireServer) -> WireServer:
    """The module's wire server, with no reply queued and no request recorded."""
    with running_server._lock:
        running_server.replies.clear()
        running_server.requests.clear()
    return running_server


@pytest.fixture
async def models() -> AsyncIterator[list[AnthropicModel]]:
    made: list[AnthropicModel] = []
    yield made
    for model in made:
        await model.aclose()


@pytest.fixture
def make_model(server: WireServer, models: list[AnthropicModel]) -> Any:
    def make(**options: Any) -> AnthropicModel:
        options = {
            "base_url": server.url,
            "api_key": KEY,
            "retry_initial_delay": 0.001,
            "retry_max_delay": 0.002,
            "max_retry_after": 0.05,
            "read_timeout": GUARD_S,
            **options,
        }
        model = AnthropicModel(MODEL, **options)
        models.append(model)
        return model

    return make


# ------------------------------------------------------------------------------------- answers


async def test_text_answer_request_and_usage(
    server: WireServer, make_model: Any, recorded_events: RecordingTracer
) -> None:
    server.queue(reply("text"))
    agent = Agent("poet", make_model(), instructions="Answer in French.")
    result = await agent.run("Say hello")

    assert result.output == EXPECTED_TEXT
    # message_start: 21 fresh + 2048 read from the cache; message_delta: 17 out (a running total).
    assert (result.usage.input_tokens, result.usage.cache_read_tokens, result.usage.output_tokens) == (2069, 2048, 17)
    assert not result.usage.estimated
    (ended,) = recorded_events.of_type(ModelCallEnded)
    assert (ended.status, ended.provider, ended.finish_reason) == ("ok", "anthropic", "end_turn")
    assert ended.response_model == "claude-sonnet-4-5-20250929"

    (request,) = server.requests
    assert (request.method, request.path) == ("POST", "/v1/messages")
    assert request.headers["x-api-key"] == KEY
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert request.headers["content-type"] == "application/json"
    assert request.body == {
        "model": MODEL,
        "max_tokens": 4096,
        "system": "Answer in French.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hello"}]}],
        "stream": True,
    }


async def test_max_tokens_settings_and_system_messages_in_the_body(server: WireServer, make_model: Any) -> None:
    server.queue(reply("text"), reply("text"))
    model = make_model(max_tokens=512)
    history = [Message.system("Be brief."), Message.user("one"), Message.user("two")]

    await Agent("a", model, instructions="Be kind.").run(history)
    web_search = {"type": "web_search_20250305", "name": "web_search"}
    settings = {"max_tokens": 64, "temperature": 0.2, "top_k": 5, "tools": [web_search]}
    await Agent("b", model, tools=[get_weather], model_settings=settings).run("hi")

    first, second = (r.body for r in server.requests)
    assert first["max_tokens"] == 512
    assert first["system"] == "Be kind.\n\nBe brief."
    # Consecutive user messages become one user turn.
    assert first["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]}
    ]
    assert (second["max_tokens"], second["temperature"], second["top_k"]) == (64, 0.2, 5)
    assert [t["name"] for t in second["tools"]] == ["get_weather", "web_search"]  # server tools join ours
    assert "system" not in second
    assert second["stream"] is True


async def test_several_tool_calls_in_one_turn(
    server: WireServer, make_model: Any, recorded_events: RecordingTracer
) -> None:
    server.queue(reply("tool_calls"), reply("tool_answer"))
    agent = Agent("weather", make_model(), tools=[get_weather, local_time])
    result = await agent.run("Weather in Paris and Tokyo, and the time?")

    assert result.output == "Paris is 18°C, Tokyo 24°C; it is 09:00 there."
    assert [(e.tool, e.status) for e in recorded_events.of_type(ToolCallEnded)] == [
        ("get_weather", "ok"),
        ("get_weather", "ok"),
        ("local_time", "error"),
    ]
    assert (result.usage.input_tokens, result.usage.output_tokens, result.usage.requests) == (472 + 701, 164 + 19, 2)

    first, second = (r.body for r in server.requests)
    assert first["tools"][0] == {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "input_schema": get_weather.spec.parameters,
    }
    assert [t["name"] for t in first["tools"]] == ["get_weather", "local_time"]
    user, assistant, results = second["messages"]
    assert user == {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Tokyo, and the time?"}]}
    assert assistant == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "I'll check both cities."},
            {
                "type": "tool_use",
                "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
                "name": "get_weather",
                "input": {"city": "Paris", "unit": "celsius"},
            },
            {
                "type": "tool_use",
                "id": "toolu_01HcWfnmFfHt8FGzQ5Tz4ET1",
                "name": "get_weather",
                "input": {"city": "東京"},
            },
            {"type": "tool_use", "id": "toolu_01Q3aR8VnC6pXkq2Yd7ZsLmB", "name": "local_time", "input": {}},
        ],
    }
    assert results["role"] == "user"
    paris, tokyo, clock = results["content"]
    assert paris == {
        "type": "tool_result",
        "tool_use_id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
        "content": "18°C (celsius)",
    }
    assert tokyo == {
        "type": "tool_result",
        "tool_use_id": "toolu_01HcWfnmFfHt8FGzQ5Tz4ET1",
        "content": "24°C (celsius)",
    }
    assert clock["tool_use_id"] == "toolu_01Q3aR8VnC6pXkq2Yd7ZsLmB"
    assert clock["is_error"] is True
    assert "clock unavailable" in clock["content"]


SIGNATURE = "EuYBCkQYAiJAq3mN8tV2xLpQ7rW9sK4bH6dJ1fG5cZ0yT8uR3eA2iO7pS9lM4nB6vC1xD5kF8gH2jQ0wE3rT7yU9iP1oA=="
REDACTED = "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpPkNRj2YfWXGmKDxH4mPnZ5sQ7vB8URj2pLmN4kQ=="


async def test_thinking_blocks_go_back_with_their_signatures_in_the_tool_use_turn(
    server: WireServer, make_model: Any
) -> None:
    """With extended thinking and tools, the API refuses a tool-use turn sent back without its thinking
    blocks: they go back first, as they came (the signature, the redacted block's data)."""
    server.queue(reply("thinking_tool"), reply("text"))
    thinking = {"thinking": {"type": "enabled", "budget_tokens": 2048}}
    agent = Agent("weather", make_model(), tools=[get_weather], model_settings=thinking)
    result = await agent.run("Weather in Paris?")
    assert result.status == "completed"

    first, second = (r.body for r in server.requests)
    assert first["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    _, assistant, _ = second["messages"]
    assert assistant == {
        "role": "assistant",
        "content": [
            {
                "type": "thinking",
                "thinking": "The user wants the weather in Paris. I should call get_weather.",
                "signature": SIGNATURE,
            },
            {
                "type": "redacted_thinking",
                "data": REDACTED,
            },
            {
                "type": "tool_use",
                "id": "toolu_01Vq8sD3kLmN7pQ2rS5tU9wX",
                "name": "get_weather",
                "input": {"city": "Paris"},
            },
        ],
    }
    # and they survive a checkpoint: a run resumed elsewhere sends them back too
    turn = result.messages[1]
    assert turn.thinking == "The user wants the weather in Paris. I should call get_weather."
    assert Message.from_dict(json.loads(json.dumps(turn.to_dict()))) == turn


def test_a_message_without_thinking_blocks_keeps_its_old_checkpoint_form() -> None:
    message = Message("assistant", "hi", thinking="hmm")
    assert "thinking_blocks" not in message.to_dict()
    assert Message.from_dict({"role": "assistant", "content": "hi", "thinking": "hmm"}) == message


async def test_each_request_carries_its_model_calls_traceparent(
    server: WireServer, make_model: Any, recorded_events: RecordingTracer
) -> None:
    server.queue(reply("tool_calls"), reply("tool_answer"))
    result = await Agent("weather", make_model(), tools=[get_weather, local_time]).run("Weather?")

    starts = recorded_events.of_type(ModelCallStarted)
    assert len(starts) == len(server.requests) == 2
    for started, request in zip(starts, server.requests, strict=True):
        assert request.headers["traceparent"] == f"00-{result.trace_id}-{started.span_id}-01"
    assert starts[0].span_id != starts[1].span_id


async def test_thinking_deltas_reach_the_stream_as_they_arrive(server: WireServer, make_model: Any) -> None:
    gate = threading.Event()
    # The server sends message_start, the thinking block's start and its first delta, then waits.
    server.queue(reply("thinking", gate=gate, gate_before=3))
    stream = Agent("maths", make_model()).stream("27 * 453?")
    try:
        first = await asyncio.wait_for(anext(stream), GUARD_S)
        assert first == ThinkingDelta("The user asks for 27 * 453.")
    finally:
        gate.set()
    rest = [event async for event in stream]

    assert rest[:2] == [ThinkingDelta("\n27 * 453 = 12231."), TextDelta("27 * 453 = 12,231.")]
    assert isinstance(rest[2], UsageUpdated)
    final = rest[-1]
    assert isinstance(final, FinalResult)
    assert final.result.output == "27 * 453 = 12,231."
    assert final.result.messages[-1].thinking == "The user asks for 27 * 453.\n27 * 453 = 12231."


# -------------------------------------------------------------------------------------- failures


async def test_an_error_event_mid_stream_is_a_stream_error(
    server: WireServer, make_model: Any, recorded_events: RecordingTracer
) -> None:
    server.queue(reply("overloaded"))
    with pytest.raises(ModelStreamError, match="overloaded_error: Overloaded") as caught:
        await Agent("a", make_model()).run("hi")

    assert caught.value.result is not None
    assert caught.value.result.status == "failed"
    (ended,) = recorded_events.of_type(ModelCallEnded)
    assert ended.status == "error"
    assert ended.error is not None
    assert ended.error.type == "ModelStreamError"
    assert len(server.requests) == 1  # an answer that has started is never retried


@pytest.mark.parametrize(
    ("retry_after", "expected_delay"),
    [
        pytest.param("0.02", 0.02, id="seconds"),
        pytest.param(email.utils.formatdate(time.time() + 3600, usegmt=True), 0.05, id="http-date-capped"),
        pytest.param(email.utils.formatdate(time.time() - 60, usegmt=True), 0.0, id="http-date-past"),
    ],
)
async def test_429_with_retry_after_then_success(
    server: WireServer, make_model: Any, recorded_events: RecordingTracer, retry_after: str, expected_delay: float
) -> None:
    server.queue(
        api_error(
            429,
            "rate_limit_error",
            "Number of request tokens has exceeded your limit.",
            headers={"retry-after": retry_after},
        ),
        reply("text"),
    )
    result = await Agent("a", make_model(max_retry_after=0.05)).run("hi")

    assert result.output == EXPECTED_TEXT
    (retry,) = recorded_events.of_type(RetryScheduled)
    (started,) = recorded_events.of_type(ModelCallStarted)
    assert (retry.attempt, retry.kind, retry.target, retry.span_id) == (1, "model", MODEL, started.span_id)
    # The server's wait, not the backoff (at most 0.002 s here); capped by max_retry_after.
    assert retry.delay_s == pytest.approx(expected_delay)
    assert retry.error is not None
    assert retry.error.type == "ModelHTTPError"
    assert "HTTP 429: Number of request tokens has exceeded your limit." in retry.error.message
    assert len(server.requests) == 2
    assert server.requests[0].headers["traceparent"] == server.requests[1].headers["traceparent"]


async def test_529_overloaded_is_retried(server: WireServer, make_model: Any, recorded_events: RecordingTracer) -> None:
    server.queue(api_error(529, "overloaded_error", "Overloaded"), reply("text"))
    result = await Agent("a", make_model()).run("hi")

    assert result.status == "completed"
    (retry,) = recorded_events.of_type(RetryScheduled)
    assert retry.error is not None
    assert "HTTP 529: Overloaded" in retry.error.message
    assert 0 <= retry.delay_s <= 0.002


async def test_500s_until_the_retries_run_out(
    server: WireServer, make_model: Any, recorded_events: RecordingTracer
) -> None:
    server.queue(*(api_error(500, "api_error", "Internal server error") for _ in range(3)))
    with pytest.raises(ModelHTTPError) as caught:
        await Agent("a", make_model(max_retries=2)).run("hi")

    error = caught.value
    assert (error.status_code, error.attempts, error.provider_message) == (500, 3, "Internal server error")
    assert "gave up after 3 attempts" in str(error)
    assert [r.attempt for r in recorded_events.of_type(RetryScheduled)] == [1, 2]
    assert len(server.requests) == 3


async def test_400_is_not_retried_and_keeps_the_providers_message(
    server: WireServer, make_model: Any, recorded_events: RecordingTracer
) -> None:
    message = "max_tokens: 999999 > 64000, which is the maximum allowed number of output tokens for claude-sonnet-4-5"
    server.queue(api_error(400, "invalid_request_error", message))
    with pytest.raises(ModelHTTPError) as caught:
        await Agent("a", make_model()).run("hi")

    assert (caught.value.status_code, caught.value.attempts, caught.value.provider_message) == (400, 1, message)
    assert str(caught.value) == f"anthropic:{MODEL} answered HTTP 400: {message}"
    assert recorded_events.of_type(RetryScheduled) == []
    assert len(server.requests) == 1


async def test_a_malformed_chunk_is_a_stream_error(server: WireServer, make_model: Any) -> None:
    chunks = events_of(transcript("text"))
    chunks.insert(3, b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"typ\n\n')
    server.queue(Reply(chunks=chunks))
    with pytest.raises(ModelStreamError, match="not valid JSON"):
        await Agent("a", make_model()).run("hi")


async def test_a_connection_dropped_mid_stream_is_a_stream_error(server: WireServer, make_model: Any) -> None:
    server.queue(reply("text", drop_after=4))
    seen: list[Any] = []
    with pytest.raises(ModelStreamError, match="closed the connection"):
        await collect(Agent("a", make_model()).stream("hi"), seen)
    assert seen == [TextDelta("Bonjour")]  # what came before the cut, and no answer made of it
    assert len(server.requests) == 1


async def test_a_stream_that_ends_without_message_stop_is_cut_off(server: WireServer, make_model: Any) -> None:
    server.queue(Reply(chunks=events_of(transcript("text"))[:-1]))  # a clean end of the body, one event short
    with pytest.raises(ModelStreamError, match="before message_stop"):
        await Agent("a", make_model()).run("hi")


async def test_a_slow_first_byte_hits_the_read_timeout(server: WireServer, make_model: Any) -> None:
    server.queue(reply("text", delay_headers=GUARD_S), reply("text", delay_headers=GUARD_S))
    with pytest.raises(ModelConnectionError, match="timed out") as caught:
        await Agent("a", make_model(read_timeout=0.1, max_retries=1)).run("hi")
    assert caught.value.attempts == 2


async def test_a_reply_that_is_not_an_event_stream(server: WireServer, make_model: Any) -> None:
    server.queue(Reply.json(200, {"type": "message", "content": []}))
    with pytest.raises(ModelStreamError, match="not answer with an event stream"):
        await Agent("a", make_model()).run("hi")


# --------------------------------------------------------------------------------------- secrets


async def test_the_api_key_never_leaks(
    server: WireServer, make_model: Any, recorded_events: RecordingTracer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    echo = f"invalid x-api-key: {KEY}"
    server.queue(
        api_error(401, "authentication_error", echo),
        api_error(429, "rate_limit_error", echo),
        reply("text"),
        Reply(
            chunks=[
                *events_of(transcript("text"))[:2],
                f'event: error\ndata: {{"type":"error","error":{{"type":"x","message":"{echo}"}}}}\n\n',
            ]
        ),
        Reply(chunks=[*events_of(transcript("text"))[:2], f"data: {{not json {KEY}\n\n"]),
    )
    model = make_model()
    errors: list[BaseException] = []
    for _ in range(4):
        try:
            await Agent("a", model).run("hi")
        except Exception as exc:
            errors.append(exc)

    assert [type(e) for e in errors] == [ModelHTTPError, ModelStreamError, ModelStreamError]
    assert "[redacted]" in str(errors[0])
    texts = [repr(model), *(repr(e) for e in recorded_events.events), *(r.getMessage() for r in caplog.records)]
    for error in errors:
        texts += [str(error), repr(error), repr(error.args), repr(getattr(error, "provider_message", ""))]
        texts += [repr(error.__cause__), repr(error.__context__)]
    assert len(recorded_events.of_type(RetryScheduled)) == 1
    assert all(KEY not in text for text in texts)


# ---------------------------------------------------------------- the official client, same bytes


@pytest.mark.parametrize("name", ["text", "tool_calls", "tool_answer", "thinking", "thinking_tool"])
async def test_the_official_client_reads_the_same_answer(server: WireServer, make_model: Any, name: str) -> None:
    if anthropic is None:
        pytest.skip("the official anthropic package is not installed (pip install anthropic)")
    server.queue(reply(name), reply(name))
    ours = [part async for part in make_model().stream(ModelRequest([Message.user("hi")]))]
    response = ours[-1]
    assert isinstance(response, ModelResponse)

    client = anthropic.AsyncAnthropic(base_url=server.url, api_key="test", max_retries=0)
    deltas: list[TextDelta | ThinkingDelta] = []
    async with client.messages.stream(
        model=SDK_MODEL, max_tokens=4096, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        async for event in stream:
            if event.type == "text":
                deltas.append(TextDelta(event.text))
            elif event.type == "thinking":
                deltas.append(ThinkingDelta(event.thinking))
        theirs = await stream.get_final_message()
    await client.close()

    assert ours[:-1] == deltas
    message = response.message
    assert message.content == ("".join(b.text for b in theirs.content if b.type == "text") or None)
    assert message.thinking == ("".join(b.thinking for b in theirs.content if b.type == "thinking") or None)
    assert [(c.id, c.name, json.loads(c.arguments)) for c in message.tool_calls] == [
        (b.id, b.name, b.input) for b in theirs.content if b.type == "tool_use"
    ]
    assert [(b.text, b.signature, b.redacted) for b in message.thinking_blocks] == [
        (b.thinking, b.signature, None) if b.type == "thinking" else ("", "", b.data)
        for b in theirs.content
        if b.type in ("thinking", "redacted_thinking")
    ]
    usage, u = response.usage, theirs.usage
    assert usage is not None
    cache_read, cache_creation = u.cache_read_input_tokens or 0, u.cache_creation_input_tokens or 0
    assert usage.input_tokens == u.input_tokens + cache_read + cache_creation
    assert (usage.output_tokens, usage.cache_read_tokens) == (u.output_tokens, cache_read)
    assert (response.finish_reason, response.response_model) == (theirs.stop_reason, theirs.model)
    ours_sent, theirs_sent = server.requests
    assert ours_sent.path == theirs_sent.path == "/v1/messages"
    assert ours_sent.body["stream"] is theirs_sent.body["stream"] is True


async def test_the_official_client_also_fails_on_the_error_event(server: WireServer, make_model: Any) -> None:
    if anthropic is None:
        pytest.skip("the official anthropic package is not installed (pip install anthropic)")
    server.queue(reply("overloaded"), reply("overloaded"))
    ours: list[Any] = []
    with pytest.raises(ModelStreamError, match="Overloaded"):
        await collect(make_model().stream(ModelRequest([Message.user("hi")])), ours)

    client = anthropic.AsyncAnthropic(base_url=server.url, api_key="test", max_retries=0)
    theirs: list[Any] = []

    async def read() -> None:
        async with client.messages.stream(
            model=SDK_MODEL, max_tokens=4096, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            async for event in stream:
                if event.type == "text":
                    theirs.append(TextDelta(event.text))

    with pytest.raises(anthropic.APIStatusError, match="Overloaded"):
        await read()
    await client.close()
    assert ours == theirs == [TextDelta("Let me")]


# ------------------------------------------------------------ any split, any corruption: typed result


class _Chunks(httpx.AsyncByteStream):
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


def _read(chunks: list[bytes]) -> list[Any]:
    """The provider's whole code path (request, SSE parsing, assembler) over an in-memory transport."""

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=_Chunks(chunks))

    async def run() -> list[Any]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
            model = AnthropicModel(MODEL, api_key=KEY, client=client)
            try:
                return [part async for part in model.stream(ModelRequest([Message.user("hi")]))]
            except ModelStreamError as exc:
                return [exc]

    return asyncio.run(run())


NAMES = ["text", "tool_calls", "tool_answer", "thinking", "overloaded"]


@functools.cache
def expected(name: str) -> list[Any]:
    return _read([transcript(name)])


def _split(body: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(body), *(c % (len(body) + 1) for c in cuts)})
    return [body[a:b] for a, b in itertools.pairwise(points)]


def _same(a: list[Any], b: list[Any]) -> bool:
    if a and b and isinstance(a[-1], ModelStreamError) and isinstance(b[-1], ModelStreamError):
        return a[:-1] == b[:-1] and str(a[-1]) == str(b[-1])
    return a == b


FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(name=st.sampled_from(NAMES), cuts=st.lists(st.integers(min_value=0), max_size=40))
def test_any_split_of_the_bytes_gives_the_same_result(name: str, cuts: list[int]) -> None:
    assert _same(_read(_split(transcript(name), cuts)), expected(name))


@FAST
@given(name=st.sampled_from(NAMES), data=st.data())
def test_a_truncated_body_is_always_a_stream_error(name: str, data: st.DataObject) -> None:
    body = transcript(name)
    end = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
    cuts = data.draw(st.lists(st.integers(min_value=0), max_size=10))
    parts = _read(_split(body[:end], cuts))
    assert isinstance(parts[-1], ModelStreamError)
    assert not any(isinstance(part, ModelResponse) for part in parts)


@FAST
@given(
    name=st.sampled_from(NAMES),
    flips=st.lists(
        st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)), min_size=1, max_size=4
    ),
    cuts=st.lists(st.integers(min_value=0), max_size=10),
)
def test_a_corrupted_body_gives_an_answer_or_a_stream_error(
    name: str, flips: list[tuple[int, int]], cuts: list[int]
) -> None:
    body = bytearray(transcript(name))
    for at, byte in flips:
        body[at % len(body)] = byte
    parts = _read(_split(bytes(body), cuts))  # any other exception fails the test
    assert isinstance(parts[-1], (ModelResponse, ModelStreamError))
    assert all(isinstance(part, (TextDelta, ThinkingDelta)) for part in parts[:-1])


@FAST
@given(
    name=st.sampled_from(NAMES),
    data=st.data(),
    junk=st.sampled_from([b"data: {\n\n", b"data: [1, 2]\n\n", b'data: {"type":"content_block_delta","index":99}\n\n']),
)
def test_an_unreadable_event_anywhere_is_a_stream_error(name: str, data: st.DataObject, junk: bytes) -> None:
    events = events_of(transcript(name))
    at = data.draw(st.integers(min_value=0, max_value=len(events) - 1))
    body = b"".join([*events[:at], junk, *events[at:]])
    parts = _read(_split(body, data.draw(st.lists(st.integers(min_value=0), max_size=10))))
    assert isinstance(parts[-1], ModelStreamError)


# ------------------------------------------------------------------------------ units and settings


def test_the_assembler_takes_running_totals_and_thinking_tokens() -> None:
    assembler = MessageAssembler("anthropic:m")
    start = {"model": "m", "usage": {"input_tokens": 10, "cache_creation_input_tokens": 5, "output_tokens": 1}}
    assembler.feed({"type": "message_start", "message": start})
    usage = {"input_tokens": 12, "output_tokens": 40, "output_tokens_details": {"thinking_tokens": 30}}
    assembler.feed({"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": usage})
    assembler.feed({"type": "message_stop"})
    response = assembler.finish()
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.reasoning_tokens) == (17, 40, 30)
    assert response.finish_reason == "max_tokens"
    assert response.message == Message("assistant")


def test_the_assembler_refuses_events_out_of_order() -> None:
    with pytest.raises(ModelStreamError, match="before message_start"):
        MessageAssembler().feed({"type": "content_block_start", "index": 0, "content_block": {"type": "text"}})
    assembler = MessageAssembler()
    assembler.feed({"type": "message_start", "message": {}})
    with pytest.raises(ModelStreamError, match="content block 3, which never started"):
        assembler.feed({"type": "content_block_delta", "index": 3, "delta": {"type": "text_delta", "text": "x"}})
    with pytest.raises(ModelStreamError, match="without a valid 'index'"):
        assembler.feed({"type": "content_block_delta", "index": "0", "delta": {}})


def test_a_tool_input_given_whole_in_content_block_start() -> None:
    assembler = MessageAssembler()
    assembler.feed({"type": "message_start", "message": {}})
    block = {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}
    assembler.feed({"type": "content_block_start", "index": 0, "content_block": block})
    assembler.feed({"type": "message_stop"})
    assert assembler.finish().message.tool_calls == (ToolCall("toolu_1", "f", '{"a": 1}'),)


def test_conversation_conversion_merges_turns_and_orders_tool_results_first() -> None:
    system, messages = to_anthropic(
        None,
        [
            Message.system("sys"),
            Message.user("q"),
            Message.assistant(None, [ToolCall("t1", "f", "{not json"), ToolCall("t2", "g", '{"x": [1]}')]),
            Message.tool("t1", "f", "bad arguments", is_error=True),
            Message.tool("t2", "g", ""),
            Message.user("and?"),
            Message.assistant(""),  # an empty turn is left out
            Message.assistant("done"),
        ],
    )
    assert system == "sys"
    assert messages == [
        {"role": "user", "content": [{"type": "text", "text": "q"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "t1", "name": "f", "input": {}},
                {"type": "tool_use", "id": "t2", "name": "g", "input": {"x": [1]}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "bad arguments", "is_error": True},
                {"type": "tool_result", "tool_use_id": "t2"},
                {"type": "text", "text": "and?"},
            ],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "done"}]},
    ]


def test_a_key_is_needed_for_the_anthropic_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    with pytest.raises(ConfigurationError, match="set ANTHROPIC_API_KEY"):
        AnthropicModel(MODEL)
    assert AnthropicModel(MODEL, base_url="http://127.0.0.1:4000")._auth_headers() == {}  # a local proxy


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://proxy.internal:8080/")
    model = resolve_model(f"anthropic:{MODEL}", headers={"Anthropic-Beta": "x", "anthropic-version": "2099-01-01"})
    assert isinstance(model, AnthropicModel)
    assert (model.provider, model.name, model.base_url) == ("anthropic", MODEL, "http://proxy.internal:8080")
    assert model.headers == {"anthropic-version": "2099-01-01", "anthropic-beta": "x"}
    assert model._auth_headers() == {"x-api-key": KEY}
    assert KEY not in repr(model)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "100"])
def test_max_tokens_must_be_a_positive_whole_number(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="max_tokens"):
        AnthropicModel(MODEL, api_key=KEY, max_tokens=bad)
