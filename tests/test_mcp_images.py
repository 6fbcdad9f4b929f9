"""The images of MCP tool results reach the model, in each provider's form, and never telemetry raw.

A real MCP server (tests/mcp_server.py, on the SDK's MCPServer, over stdio) answers ``chart`` with a
caption and a one-pixel PNG. The models are the real HTTP adapters against the loopback wire server,
which records each request body: Anthropic takes the image as an ``image`` block inside the
``tool_result``; OpenAI Chat Completions' tool messages take text only, so there the model reads the
image's description (and, with ``tool_result_images=True``, gets it in a user message after the turn's
tool results).
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp")

from mcp_support import SERVER
from wire_server import Reply, WireServer, wire_server

from tracedagent import (
    Agent,
    CheckpointSaved,
    ConfigurationError,
    Image,
    Message,
    SQLiteCheckpointStore,
    ToolCall,
    ToolCallEnded,
)
from tracedagent._messages import ToolText
from tracedagent.mcp import MCPServerStdio
from tracedagent.models import AnthropicModel, OpenAIChatModel
from tracedagent.testing import RecordingTracer, ScriptedModel

PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
CAPTION = "the chart\n[image: image/png, 70 bytes]"  # what the model reads of the result as text
GUARD_S = 30.0


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[MCPServerStdio]:
    async with MCPServerStdio(sys.executable, [str(SERVER)], env={"MCP_RECORD": str(tmp_path / "r.jsonl")}) as s:
        yield s


@pytest.fixture
def wire() -> Iterator[WireServer]:
    with wire_server() as running:
        yield running


def sse(*events: dict[str, Any], named: bool) -> Reply:
    chunks = [(f"event: {e['type']}\n" if named else "") + f"data: {json.dumps(e)}\n\n" for e in events]
    return Reply(chunks=chunks if named else [*chunks, "data: [DONE]\n\n"])


def anthropic_turn(*blocks: dict[str, Any], stop: str) -> Reply:
    events: list[dict[str, Any]] = [
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-5",
                "content": [],
                "stop_reason": None,
                "usage": {"input_tokens": 10, "output_tokens": 1},
            },
        }
    ]
    for index, block in enumerate(blocks):
        if block["type"] == "text":
            events.append(
                {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}
            )
            delta = {"type": "text_delta", "text": block["text"]}
        else:
            start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            events.append({"type": "content_block_start", "index": index, "content_block": start})
            delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
        events.append({"type": "content_block_delta", "index": index, "delta": delta})
        events.append({"type": "content_block_stop", "index": index})
    events.append({"type": "message_delta", "delta": {"stop_reason": stop}, "usage": {"output_tokens": 5}})
    events.append({"type": "message_stop"})
    return sse(*events, named=True)


def openai_turn(*, text: str | None = None, call: tuple[str, str] | None = None) -> Reply:
    delta: dict[str, Any] = {"role": "assistant", "content": text}
    if call is not None:
        delta["tool_calls"] = [
            {"index": 0, "id": call[0], "type": "function", "function": {"name": call[1], "arguments": "{}"}}
        ]
    finish = "tool_calls" if call is not None else "stop"
    return sse(
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
        },
        {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]},
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "choices": [],
            "usage": {"prompt_tokens": 9, "completion_tokens": 3},
        },
        named=False,
    )


async def test_the_tool_message_carries_the_image_and_describes_it(server: MCPServerStdio) -> None:
    model = ScriptedModel([[ToolCall("c", "chart"), ToolCall("p", "picture"), ToolCall("s", "scan")], "seen"])
    await Agent("a", model, tools=[server]).run("draw")
    by_call = {m.tool_call_id: m for m in model.requests[1].messages if m.role == "tool"}
    assert by_call["c"].content == CAPTION
    assert type(by_call["c"].content) is str  # plain text: the images are on the message, not in it
    assert by_call["c"].images == (Image("image/png", PNG_B64),)
    assert by_call["p"].content == "[image: image/png, 70 bytes]"
    assert by_call["p"].images == (Image("image/png", PNG_B64),)
    assert by_call["s"].content == "[image file:///scan.png: image/png, 70 bytes]"  # an embedded image resource
    assert by_call["s"].images == (Image("image/png", PNG_B64),)
    # A checkpoint keeps them: the message comes back whole.
    assert Message.from_dict(json.loads(json.dumps(by_call["c"].to_dict()))) == by_call["c"]


async def test_anthropic_gets_the_image_as_an_image_block_in_the_tool_result(
    server: MCPServerStdio, wire: WireServer
) -> None:
    wire.queue(
        anthropic_turn({"type": "tool_use", "id": "toolu_1", "name": "chart", "input": {}}, stop="tool_use"),
        anthropic_turn({"type": "text", "text": "a single pixel"}, stop="end_turn"),
    )
    model = AnthropicModel("claude-sonnet-4-5", base_url=wire.url, api_key="k", read_timeout=GUARD_S)
    try:
        result = await Agent("a", model, tools=[server]).run("draw")
    finally:
        await model.aclose()
    assert result.output == "a single pixel"
    second = wire.requests[1].body
    assert second["messages"][-1] == {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": "toolu_1",
                "content": [
                    {"type": "text", "text": CAPTION},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
                ],
            }
        ],
    }


async def test_openai_chat_reads_the_description_in_the_tool_message(server: MCPServerStdio, wire: WireServer) -> None:
    wire.queue(openai_turn(call=("call_1", "chart")), openai_turn(text="a caption"))
    model = OpenAIChatModel("gpt-4o-mini", base_url=f"{wire.url}/v1", api_key="k", read_timeout=GUARD_S)
    try:
        await Agent("a", model, tools=[server]).run("draw")
    finally:
        await model.aclose()
    messages = wire.requests[1].body["messages"]
    assert messages[-1] == {"role": "tool", "tool_call_id": "call_1", "content": CAPTION}
    assert PNG_B64 not in json.dumps(wire.requests[1].body)  # no image part a text-only server would refuse


async def test_openai_chat_with_tool_result_images_gets_them_in_a_user_message(
    server: MCPServerStdio, wire: WireServer
) -> None:
    wire.queue(openai_turn(call=("call_1", "chart")), openai_turn(text="a caption"))
    model = OpenAIChatModel(
        "gpt-4o-mini", base_url=f"{wire.url}/v1", api_key="k", read_timeout=GUARD_S, tool_result_images=True
    )
    try:
        await Agent("a", model, tools=[server]).run("draw")
    finally:
        await model.aclose()
    *_, tool_message, images = wire.requests[1].body["messages"]
    assert tool_message == {"role": "tool", "tool_call_id": "call_1", "content": CAPTION}
    assert images == {
        "role": "user",
        "content": [
            {"type": "text", "text": "The images of tool call call_1 (chart):"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
        ],
    }


async def test_telemetry_describes_the_image_and_never_carries_its_bytes(
    server: MCPServerStdio, tracer: RecordingTracer
) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from tracedagent_otlp import OtlpTracer
    from tracedagent_stdout import StdoutTracer

    exporter = InMemorySpanExporter()
    otlp = OtlpTracer(span_exporter=exporter, capture_content=True, interval_s=0.05)
    log = io.StringIO()
    stdout = StdoutTracer(log, capture_content=True, format="json")
    try:
        agent = Agent("a", ScriptedModel([ToolCall("c", "chart"), "seen"]), tools=[server], plugins=[otlp, stdout])
        paused_input = await agent.run("draw")
        # A run that starts from that conversation logs its input (the tool message with its image) too.
        await Agent("b", ScriptedModel(["again"]), plugins=[otlp, stdout]).run(paused_input.messages)
        assert otlp.flush(5.0)
        assert stdout.flush(5.0)
    finally:
        otlp.shutdown(5.0)
        stdout.shutdown(5.0)
    (end,) = tracer.of_type(ToolCallEnded)
    assert end.result == CAPTION
    texts = [str(v) for span in exporter.get_finished_spans() for v in (span.attributes or {}).values()]
    texts += [
        str(v) for span in exporter.get_finished_spans() for e in span.events for v in (e.attributes or {}).values()
    ]
    assert any("[image: image/png, 70 bytes]" in t for t in texts)  # captured content describes it
    assert not any(PNG_B64 in t for t in texts)
    assert "[image: image/png, 70 bytes]" in log.getvalue()
    assert PNG_B64 not in log.getvalue()


# ---------------------------------------------------------------- bounds: max_result_chars, max_image_bytes


@pytest.mark.parametrize("where", ["server", "agent"])  # whose max_result_chars
async def test_a_truncated_result_keeps_its_images_and_says_so(tmp_path: Path, where: str) -> None:
    server_limit, agent_limit = (300, None) if where == "server" else (None, 300)
    async with MCPServerStdio(
        sys.executable,
        [str(SERVER)],
        env={"MCP_RECORD": str(tmp_path / "r.jsonl")},
        max_result_chars=server_limit,
    ) as server:
        model = ScriptedModel([ToolCall.of("c", "long_chart", {"chars": 5_000, "images": 2}), "seen"])
        agent = Agent("a", model, tools=[server], max_result_chars=agent_limit)
        await agent.run("draw")
    (message,) = [m for m in model.requests[1].messages if m.role == "tool"]
    text = message.content or ""
    # The text (5,000 characters, then a line describing each image) is cut and says so, and how many
    # images go with it.
    assert len(text) == 300
    assert text.startswith("a very long caption a very long caption")
    assert text.endswith(
        "\n[truncated: this tool result has 5,058 characters; the first 130 are shown; its 2 images are passed "
        "on whole: [image: image/png, 70 bytes], [image: image/png, 70 bytes]]"
    )
    assert message.images == (Image("image/png", PNG_B64), Image("image/png", PNG_B64))
    assert Message.from_dict(json.loads(json.dumps(message.to_dict()))) == message  # as a checkpoint keeps it


async def test_anthropic_gets_the_images_of_a_truncated_result(tmp_path: Path, wire: WireServer) -> None:
    wire.queue(
        anthropic_turn(
            {"type": "tool_use", "id": "toolu_1", "name": "long_chart", "input": {"chars": 5_000, "images": 1}},
            stop="tool_use",
        ),
        anthropic_turn({"type": "text", "text": "one pixel"}, stop="end_turn"),
    )
    model = AnthropicModel("claude-sonnet-4-5", base_url=wire.url, api_key="k", read_timeout=GUARD_S)
    try:
        async with MCPServerStdio(sys.executable, [str(SERVER)], max_result_chars=200) as server:
            await Agent("a", model, tools=[server]).run("draw")
    finally:
        await model.aclose()
    (result,) = wire.requests[1].body["messages"][-1]["content"]
    text, image = result["content"]
    assert "[truncated: this tool result has 5,029 characters; the first 64 are shown" in text["text"]
    assert text["text"].endswith("its image is passed on whole: [image: image/png, 70 bytes]]")
    assert image == {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}}


async def test_the_images_of_a_result_are_bounded_by_max_image_bytes(server: MCPServerStdio) -> None:
    # 1,000,000 bytes by default for a result's images together: kept in order while they fit.
    model = ScriptedModel([ToolCall.of("c", "photos", {"sizes": [600_000, 600_000, 100]}), "seen"])
    await Agent("a", model, tools=[server]).run("look")
    message = model.requests[1].messages[-1]
    assert message.content == (
        "[image: image/png, 600000 bytes]\n"
        "[image: image/png, 600000 bytes; left out: the images of one result are limited to 1,000,000 bytes]\n"
        "[image: image/png, 100 bytes]"
    )
    assert [image.size for image in message.images] == [600_000, 100]


async def test_max_image_bytes_per_server_and_per_tool(tmp_path: Path) -> None:
    async with MCPServerStdio(
        sys.executable,
        [str(SERVER)],
        max_image_bytes=None,  # no bound
        tool_settings={"chart": {"max_image_bytes": 0}},  # no image passed on: described only
    ) as server:
        model = ScriptedModel([[ToolCall.of("p", "photos", {"sizes": [1_500_000]}), ToolCall("c", "chart")], "seen"])
        await Agent("a", model, tools=[server]).run("look")
    by_call = {m.tool_call_id: m for m in model.requests[1].messages if m.role == "tool"}
    assert [image.size for image in by_call["p"].images] == [1_500_000]
    assert by_call["c"].images == ()
    assert by_call["c"].content == (
        "the chart\n[image: image/png, 70 bytes; left out: the images of one result are limited to 0 bytes]"
    )
    with pytest.raises(ConfigurationError, match="max_image_bytes must be a whole number of bytes >= 0 or None"):
        MCPServerStdio(sys.executable, [str(SERVER)], max_image_bytes=-1)
    with pytest.raises(ConfigurationError, match=r"tool_settings\['chart'\]\['max_image_bytes'\] must be"):
        MCPServerStdio(sys.executable, [str(SERVER)], tool_settings={"chart": {"max_image_bytes": 1.5}})


async def test_a_huge_image_stays_out_of_the_checkpoints(tmp_path: Path, tracer: RecordingTracer) -> None:
    store = SQLiteCheckpointStore(tmp_path / "runs.db")
    try:
        async with MCPServerStdio(sys.executable, [str(SERVER)]) as server:
            model = ScriptedModel([ToolCall.of("p", "photos", {"sizes": [8_000_000, 200]}), "seen", "and again"])
            agent = Agent("a", model, tools=[server], checkpoints=store, checkpoint_every="step")
            result = await agent.run("look")
            await agent.run([*result.messages, Message.user("once more")])
    finally:
        store.close()
    saved = tracer.of_type(CheckpointSaved)
    assert len(saved) >= 4
    assert max(e.bytes for e in saved) < 20_000  # the 8 MB image in none of them (10.7 MB as base64)
    message = next(m for m in result.messages if m.role == "tool")
    assert "8000000 bytes; left out" in (message.content or "")
    assert [image.size for image in message.images] == [200]


def test_a_limit_too_small_for_the_note_leaves_the_text_out_and_still_counts_the_images() -> None:
    pixel = Image("image/png", PNG_B64)
    cut = ToolText("x" * 1_000, (pixel,) * 25).bounded(50)
    assert cut.images == (pixel,) * 25
    assert cut.startswith("\n[truncated: this tool result has 1,000 characters; its text is left out; its 25 images")
    assert cut.endswith(", [image: image/png, 70 bytes] and 5 more]")
    assert cut.count("[image: image/png, 70 bytes]") == 20
    short = ToolText("short", (pixel,))
    assert short.bounded(50) is short
