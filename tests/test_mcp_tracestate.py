"""The W3C ``tracestate`` of the trace a run joins reaches MCP servers (issue 19, point 4; SEP-414): in
``params._meta`` beside ``traceparent`` and, over streamable HTTP, as a header too, recorded by the real
test MCP server (tests/mcp_server.py). Without one, no ``tracestate`` key or header is sent. Also run on
the mcp 1.x SDK (tests/test_mcp_sdk1.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp")

from mcp_support import SERVER, HTTPServerProcess, records
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

from tracedagent import Agent, ToolCall, ToolCallEnded
from tracedagent.mcp import MCPServerHTTP, MCPServerStdio
from tracedagent.testing import RecordingTracer, ScriptedModel

STATE = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"


def app_span() -> Any:
    """An application's span continuing a caller's trace that came with a tracestate."""
    caller = SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, True, TraceFlags(1), TraceState.from_header([STATE])
    )
    parent = trace.set_span_in_context(NonRecordingSpan(caller))
    return TracerProvider().get_tracer("the-app").start_as_current_span("job", context=parent)


def mcp_calls(record: Path) -> list[dict[str, Any]]:
    return [r for r in records(record) if r["event"] == "call"]


@pytest.fixture
def record(tmp_path: Path) -> Path:
    return tmp_path / "record.jsonl"


@pytest.fixture
def http_process(tmp_path: Path, record: Path) -> Iterator[HTTPServerProcess]:
    process = HTTPServerProcess(tmp_path, record)
    process.start()
    yield process
    process.stop()


async def test_an_mcp_call_over_stdio_carries_the_tracestate_in_meta(tracer: RecordingTracer, record: Path) -> None:
    async with MCPServerStdio(sys.executable, [str(SERVER)], env={"MCP_RECORD": str(record)}) as server:
        with app_span():
            await Agent("a", ScriptedModel([ToolCall.of("c1", "add", {"a": 1, "b": 2}), "3"]), tools=[server]).run("go")
        await Agent("a", ScriptedModel([ToolCall.of("c2", "add", {"a": 1, "b": 2}), "3"]), tools=[server]).run("go")
    with_state, without = mcp_calls(record)
    first, second = tracer.of_type(ToolCallEnded)
    assert with_state["meta"]["traceparent"] == f"00-{first.trace_id}-{first.span_id}-01"
    assert with_state["meta"]["tracestate"] == STATE
    assert without["meta"]["traceparent"] == f"00-{second.trace_id}-{second.span_id}-01"
    assert "tracestate" not in without["meta"]  # no empty key


async def test_an_mcp_call_over_http_carries_the_tracestate_in_meta_and_as_a_header(
    tracer: RecordingTracer, record: Path, http_process: HTTPServerProcess
) -> None:
    async with MCPServerHTTP(http_process.url) as server:
        with app_span():
            await Agent("a", ScriptedModel([ToolCall.of("c1", "echo", {"text": "x"}), "ok"]), tools=[server]).run("go")
        await Agent("a", ScriptedModel([ToolCall.of("c2", "echo", {"text": "y"}), "ok"]), tools=[server]).run("go")
    with_state, without = mcp_calls(record)
    first, _ = tracer.of_type(ToolCallEnded)
    assert with_state["meta"]["traceparent"] == with_state["headers"]["traceparent"]
    assert with_state["meta"]["traceparent"] == f"00-{first.trace_id}-{first.span_id}-01"
    assert with_state["meta"]["tracestate"] == with_state["headers"]["tracestate"] == STATE
    assert "tracestate" not in without["meta"]
    assert "tracestate" not in without["headers"]
