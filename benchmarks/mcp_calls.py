"""MCP tool calls: through a tracedagent agent vs the ``mcp`` SDK's own ``ClientSession.call_tool``.

    python benchmarks/mcp_calls.py                 # stdio and HTTP, 300 calls a variant (about a minute)
    python benchmarks/mcp_calls.py --calls 1000 --transports stdio

The server is ``benchmarks/mcp_server.py`` (one ``add`` tool, the SDK's MCPServer), started once per
transport: over stdio as a child process, over streamable HTTP with uvicorn on 127.0.0.1. Side by side,
in alternating blocks so drift hits both alike:

* ``sdk``: ``await session.call_tool("add", {...})`` on a ``ClientSession`` of the SDK's transport: the
  reference round trip;
* ``tool call``: the same call as an agent's tool call: ``MCPTool`` behind the approval, breaker,
  bulkhead, timeout and retry layers, its ``on_tool_call_start``/``_end``, the JSON Schema check of the
  arguments and the trace context stamped into ``_meta`` (and the HTTP header); measured as the tool
  call stage's ``duration_s`` inside real runs;
* ``run``: the whole agent run around it (``FunctionModel``: the tool call, then the answer), for scale.

Beside the wall-clock medians it prints this process's CPU time per call for both (``time.process_time``
over the blocks): on a shared machine the wall times are mostly waiting for the server's process to be
scheduled, and the CPU time is what the agent's layers really add.

Then 100 concurrent calls through one session: one run whose model asks for 100 ``add`` calls in one
turn (the tool step runs them at once), every result checked. Figures are printed, nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

import tracedagent
from tracedagent import Agent, Message, ModelRequest, ToolCall, ToolCallEnded, hookimpl
from tracedagent.mcp import MCPServerBase, MCPServerHTTP, MCPServerStdio
from tracedagent.testing import FunctionModel

SERVER = Path(__file__).with_name("mcp_server.py")


class Durations:
    """Keeps the duration of every tool call stage."""

    def __init__(self) -> None:
        self.values: list[float] = []

    @hookimpl
    def on_tool_call_end(self, event: ToolCallEnded) -> None:
        if event.status != "ok":
            raise RuntimeError(f"a tool call failed: {event.error}")
        self.values.append(event.duration_s)


def brain(messages: Sequence[Message], request: ModelRequest) -> str | list[ToolCall]:
    results = [m for m in messages if m.role == "tool"]
    if not results:
        return [ToolCall.of("c", "add", {"a": 2, "b": 3})]
    if results[-1].content != '{"result":5}':
        raise RuntimeError(f"wrong answer {results[-1].content!r}")
    return "5"


def burst(messages: Sequence[Message], request: ModelRequest) -> str | list[ToolCall]:
    results = [m for m in messages if m.role == "tool"]
    if not results:
        return [ToolCall.of(f"c{i}", "add", {"a": i, "b": 1}) for i in range(100)]
    bad = [m for m in results if m.is_error or m.content != f'{{"result":{int(m.tool_call_id[1:]) + 1}}}']
    return f"{len(results)} results, {len(bad)} wrong"


async def sdk_block(session: ClientSession, n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        result = await session.call_tool("add", {"a": 2, "b": 3})
        out.append(time.perf_counter() - started)
        if result.structured_content != {"result": 5}:
            raise RuntimeError(f"wrong answer {result}")
    return out


async def agent_block(agent: Agent, durations: Durations, n: int) -> tuple[list[float], list[float]]:
    durations.values.clear()
    runs = []
    for _ in range(n):
        started = time.perf_counter()
        result = await agent.run("add 2 3")
        runs.append(time.perf_counter() - started)
        if result.output != "5":
            raise RuntimeError(f"wrong answer {result.output!r}")
    return list(durations.values), runs


def _us(values: list[float]) -> str:
    return f"{statistics.median(values) * 1e6:8.0f} µs (mean {statistics.fmean(values) * 1e6:.0f})"


async def compare(
    name: str,
    server: MCPServerBase,
    open_sdk: Callable[[], Any],
    calls: int,
    blocks: int,
) -> None:
    durations = Durations()
    agent = Agent("bench", FunctionModel(brain), tools=[server], plugins=[durations])
    crowd = Agent("crowd", FunctionModel(burst), tools=[server])
    sdk: list[float] = []
    tool: list[float] = []
    runs: list[float] = []
    cpu = {"sdk": 0.0, "agent": 0.0}
    async with open_sdk() as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        await sdk_block(session, 20)  # warm up both
        await agent_block(agent, durations, 20)
        per_block = max(1, calls // blocks)
        for _ in range(blocks):
            started = time.process_time()
            sdk += await sdk_block(session, per_block)
            cpu["sdk"] += time.process_time() - started
            started = time.process_time()
            t, r = await agent_block(agent, durations, per_block)
            cpu["agent"] += time.process_time() - started
            tool += t
            runs += r
    started = time.perf_counter()
    result = await crowd.run("add a hundred")
    wall = time.perf_counter() - started
    await server.aclose()
    ratio = statistics.median(tool) / statistics.median(sdk)
    print(f"\n{name}: {len(sdk)} calls each, median (mean)")
    print(f"  sdk ClientSession.call_tool  {_us(sdk)}")
    print(f"  agent tool call              {_us(tool)}   {ratio:.2f}x the SDK")
    print(f"  agent run (tool call + 2 model calls) {_us(runs)}")
    n = len(sdk)
    print(
        f"  this process's CPU per call: sdk {cpu['sdk'] / n * 1e6:.0f} µs, agent run {cpu['agent'] / n * 1e6:.0f} µs "
        f"({cpu['agent'] / cpu['sdk']:.2f}x; wall times on a loaded machine are mostly waiting)"
    )
    print(f"  100 concurrent calls, one session: {result.output} in {wall * 1e3:.0f} ms")


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--blocks", type=int, default=60, help="alternations of the variants (default 60)")
    parser.add_argument("--transports", nargs="+", default=["stdio", "http"], choices=["stdio", "http"])
    options = parser.parse_args(argv)
    print(f"tracedagent {tracedagent.__version__}, Python {sys.version.split()[0]}")
    if "stdio" in options.transports:
        params = StdioServerParameters(command=sys.executable, args=[str(SERVER)])
        await compare(
            "stdio",
            MCPServerStdio(sys.executable, [str(SERVER)]),
            lambda: stdio_client(params),
            options.calls,
            options.blocks,
        )
    if "http" in options.transports:
        proc = subprocess.Popen([sys.executable, str(SERVER), "--http"], stdout=subprocess.PIPE, text=True)  # noqa: ASYNC220
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().strip()
            await compare(
                "streamable HTTP",
                MCPServerHTTP(url),
                lambda: streamable_http_client(url),
                options.calls,
                options.blocks,
            )
        finally:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    asyncio.run(main())
