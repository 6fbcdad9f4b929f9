"""MCP servers as tools (tracedagent.mcp), against a real MCP server built on the SDK's MCPServer (FastMCP
under mcp 1.x, where tests/test_mcp_sdk1.py runs a subset of these), started over stdio and over streamable
HTTP (uvicorn on 127.0.0.1), recording the _meta and headers it receives."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

pytest.importorskip("mcp")

from mcp_support import GUARD_S, SERVER, HTTPServerProcess, records, until

from tracedagent import (
    Agent,
    CircuitStateChanged,
    RetryScheduled,
    RunInterrupted,
    ToolCall,
    ToolCallEnded,
    ToolCallStarted,
    tool,
)
from tracedagent.mcp import MCPConnectionError, MCPServerBase, MCPServerHTTP, MCPServerStdio
from tracedagent.resilience import CircuitBreaker, RetryPolicy
from tracedagent.testing import RecordingTracer, ScriptedModel


@pytest.fixture
def record(tmp_path: Path) -> Path:
    return tmp_path / "record.jsonl"


def stdio(record: Path, *flags: str, **options: object) -> MCPServerStdio:
    return MCPServerStdio(sys.executable, [str(SERVER), *flags], env={"MCP_RECORD": str(record)}, **options)  # type: ignore[arg-type]


@pytest.fixture
async def server(record: Path) -> AsyncIterator[MCPServerStdio]:
    async with stdio(record) as s:
        yield s


@pytest.fixture
def http_process(tmp_path: Path, record: Path) -> Iterator[HTTPServerProcess]:
    process = HTTPServerProcess(tmp_path, record)
    process.start()
    yield process
    process.stop()


def calls(record: Path, tool: str | None = None) -> list[dict[str, object]]:
    return [r for r in records(record) if r["event"] == "call" and (tool is None or r["tool"] == tool)]


def tool_message(model: ScriptedModel, turn: int = 1) -> str:
    return model.requests[turn].messages[-1].content or ""


# ------------------------------------------------------------------------------------ listing and calls


async def test_tools_are_listed_prefixed_filtered_and_called_as_ordinary_tool_calls(
    tracer: RecordingTracer, record: Path
) -> None:
    async with stdio(record, tool_prefix="t_", allowed_tools=["add", "echo"]) as server:
        model = ScriptedModel([ToolCall.of("c1", "t_add", {"a": 2, "b": 3}), "five"])
        result = await Agent("a", model, tools=[server]).run("add them")

    assert result.output == "five"
    offered = {spec.name: spec for spec in model.requests[0].tools}
    assert set(offered) == {"t_add", "t_echo"}
    assert offered["t_add"].parameters["properties"].keys() == {"a", "b"}  # the server's schema, as given
    assert json.loads(tool_message(model)) == {"result": 5}
    (start,) = tracer.of_type(ToolCallStarted)
    (end,) = tracer.of_type(ToolCallEnded)
    assert (start.tool, end.status) == ("t_add", "ok")
    # Trace context into the server: the tool call's own span.
    (seen,) = calls(record, "add")
    assert seen["meta"]["traceparent"] == f"00-{end.trace_id}-{end.span_id}-01"  # type: ignore[index]


async def test_over_http_the_call_carries_traceparent_in_meta_and_as_a_header(
    tracer: RecordingTracer, record: Path, http_process: HTTPServerProcess
) -> None:
    async with MCPServerHTTP(http_process.url, headers={"x-team": "agents"}) as server:
        model = ScriptedModel([ToolCall.of("c1", "echo", {"text": "hi"}), "done"])
        await Agent("a", model, tools=[server]).run("go")
    assert tool_message(model) == '{"result":"hi"}'
    (end,) = tracer.of_type(ToolCallEnded)
    (seen,) = calls(record, "echo")
    expected = f"00-{end.trace_id}-{end.span_id}-01"
    assert seen["meta"]["traceparent"] == expected  # type: ignore[index]
    assert seen["headers"]["traceparent"] == expected  # type: ignore[index]
    assert seen["headers"]["x-team"] == "agents"  # type: ignore[index]


async def test_current_span_inside_the_call_is_what_the_server_gets(record: Path, server: MCPServerStdio) -> None:
    from tracedagent import current_span

    (add,) = [t for t in await server.list_tools() if t.name == "add"]
    seen_here = []

    @tool
    async def wrapper() -> str:
        """Calls the MCP tool from inside a tool."""
        span = current_span()
        assert span is not None
        seen_here.append(span.traceparent)
        return await add.invoke('{"a": 1, "b": 1}')

    await Agent("a", ScriptedModel([ToolCall("w", "wrapper"), "ok"]), tools=[wrapper, server]).run("go")
    assert calls(record, "add")[0]["meta"]["traceparent"] == seen_here[0]  # type: ignore[index]


async def test_text_structured_image_and_resource_results_reach_the_model(server: MCPServerStdio) -> None:
    model = ScriptedModel(
        [
            [ToolCall("p", "picture"), ToolCall("d", "document"), ToolCall.of("e", "echo", {"text": "plain"})],
            "seen",
        ]
    )
    await Agent("a", model, tools=[server]).run("go")
    by_call = {m.tool_call_id: m for m in model.requests[1].messages if m.role == "tool"}
    assert by_call["p"].content == "[image: image/png, 70 bytes]"
    assert by_call["d"].content == "[resource file:///notes.txt]\nthe notes"
    assert by_call["e"].content == '{"result":"plain"}'
    assert not any(m.is_error for m in by_call.values())


async def test_an_is_error_result_is_a_tool_error_the_model_sees(
    tracer: RecordingTracer, server: MCPServerStdio
) -> None:
    model = ScriptedModel([ToolCall.of("f", "fail", {"message": "disk is full"}), "sorry"])
    await Agent("a", model, tools=[server]).run("go")
    message = model.requests[1].messages[-1]
    assert message.is_error
    assert "disk is full" in (message.content or "")
    (end,) = tracer.of_type(ToolCallEnded)
    assert end.status == "error"
    assert end.error is not None
    assert end.error.type == "MCPToolError"


async def test_a_json_rpc_error_is_a_tool_error_that_says_so(tracer: RecordingTracer, server: MCPServerStdio) -> None:
    model = ScriptedModel([ToolCall("r", "refuse"), ToolCall.of("a", "add", {"a": 1, "b": 1}), "sorry"])
    await Agent("a", model, tools=[server]).run("go")
    message = model.requests[1].messages[-1]
    assert message.is_error
    assert message.content == (
        f"MCP server {server.name!r} refused the call to 'refuse': quota exceeded for this client "
        "(JSON-RPC error -32000)"
    )
    assert tool_message(model, 2) == '{"result":2}'  # the session goes on
    first, _ = tracer.of_type(ToolCallEnded)
    assert first.error is not None
    assert (first.status, first.error.type) == ("error", "MCPServerError")


async def test_over_http_a_json_rpc_error_is_the_servers_and_the_session_goes_on(
    record: Path, http_process: HTTPServerProcess
) -> None:
    async with MCPServerHTTP(http_process.url) as server:
        model = ScriptedModel([ToolCall("r", "refuse"), ToolCall("w", "whoami"), ToolCall("w2", "whoami"), "done"])
        await Agent("a", model, tools=[server]).run("go")
    assert "refused the call to 'refuse': quota exceeded for this client (JSON-RPC error -32000)" in tool_message(
        model, 1
    )
    sessions = {c["headers"]["mcp-session-id"] for c in calls(record)}  # type: ignore[index]
    assert len(sessions) == 1  # not taken for a closed connection: the same session throughout


async def test_arguments_are_checked_against_the_schema_before_the_call(
    tracer: RecordingTracer, record: Path, server: MCPServerStdio
) -> None:
    model = ScriptedModel([ToolCall.of("e", "echo", {"text": 5}), "fixed"])
    await Agent("a", model, tools=[server]).run("go")
    assert "text: 5 is not of type 'string'" in tool_message(model)
    assert calls(record, "echo") == []  # never sent
    (end,) = tracer.of_type(ToolCallEnded)
    assert end.error is not None
    assert end.error.type == "ToolArgumentsError"


async def test_a_tool_whose_schema_is_invalid_is_not_offered_and_the_others_are(
    record: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with stdio(record, "--bad-schema") as server:
        names = [t.name for t in await server.list_tools()]
    assert "broken" not in names
    assert "add" in names
    assert "tool 'broken' is not offered: its input schema is invalid" in caplog.text


async def test_a_server_that_prints_garbage_on_stdout_still_works(record: Path) -> None:
    async with stdio(record, "--garbage") as server:
        model = ScriptedModel([ToolCall("n", "noisy"), ToolCall.of("a", "add", {"a": 1, "b": 1}), "done"])
        await Agent("a", model, tools=[server]).run("go")
    assert tool_message(model, 1) == '{"result":"still fine"}'
    assert tool_message(model, 2) == '{"result":2}'


async def test_the_list_is_cached_and_listed_again_when_the_server_says_it_changed(
    record: Path, server: MCPServerStdio
) -> None:
    first = await server.list_tools()
    assert await server.list_tools() == first  # cached: the same objects
    assert "extra" not in {t.name for t in first}
    # grow adds a tool and sends notifications/tools/list_changed before it answers: the same run's next
    # model call is offered the new tool, and calls it.
    model = ScriptedModel([ToolCall("g", "grow"), ToolCall("x", "extra"), "done"])
    result = await Agent("a", model, tools=[server]).run("go")
    assert "extra" not in {s.name for s in model.requests[0].tools}
    assert "extra" in {s.name for s in model.requests[1].tools}
    assert tool_message(model, 2) == '{"result":"extra!"}'
    assert result.status == "completed"
    assert server.list_changes == 1
    # And every later run: the cache holds the new list.
    model = ScriptedModel([ToolCall("x", "extra"), "done"])
    await Agent("a", model, tools=[server]).run("again")
    assert "extra" in {s.name for s in model.requests[0].tools}
    assert tool_message(model) == '{"result":"extra!"}'


async def test_over_http_a_list_change_reaches_the_next_run(record: Path, http_process: HTTPServerProcess) -> None:
    async with MCPServerHTTP(http_process.url) as server:
        agent = Agent("a", ScriptedModel([ToolCall("g", "grow"), "grown"]), tools=[server])
        await agent.run("go")
        # Over streamable HTTP the notification may come on the session's own event stream, after the answer.
        await until(lambda: server.list_changes == 1)
        model = ScriptedModel([ToolCall("x", "extra"), "done"])
        await Agent("a", model, tools=[server]).run("again")
    assert "extra" in {s.name for s in model.requests[0].tools}
    assert tool_message(model) == '{"result":"extra!"}'


@pytest.fixture(params=["stdio", "http"])
async def long_cached(request: pytest.FixtureRequest, record: Path, tmp_path: Path) -> AsyncIterator[MCPServerBase]:
    """The test server over each transport, with a cache that never expires during a test."""
    if request.param == "stdio":
        async with stdio(record, cache_ttl=3600) as server:
            yield server
        return
    process = HTTPServerProcess(tmp_path, record)
    process.start()
    try:
        async with MCPServerHTTP(process.url, cache_ttl=3600) as server:
            yield server
    finally:
        process.stop()


async def test_a_run_sees_a_list_change_said_before_it_started_and_a_removed_tool_says_so(
    tracer: RecordingTracer, record: Path, long_cached: MCPServerBase
) -> None:
    server = long_cached
    await Agent("a", ScriptedModel([ToolCall("g", "grow"), "grown"]), tools=[server]).run("go")
    await until(lambda: server.list_changes == 1)  # over HTTP it may come after the answer
    # Run A starts after the notification: it is offered 'extra' at once, though the cache has an hour to go.
    # While A waits, run B has the server take 'extra' away again; then A's model calls it.
    removed = asyncio.Event()

    @tool
    async def wait_a_moment() -> str:
        """Wait until the test says so."""
        await removed.wait()
        return "waited"

    model_a = ScriptedModel([ToolCall("w", "wait_a_moment"), ToolCall("x", "extra"), "done"])
    run_a = asyncio.ensure_future(Agent("a", model_a, tools=[wait_a_moment, server]).run("go"))
    await until(lambda: len(model_a.requests) == 1)
    await Agent("b", ScriptedModel([ToolCall("s", "shrink"), "shrunk"]), tools=[server]).run("go")
    await until(lambda: server.list_changes == 2)
    removed.set()
    async with asyncio.timeout(GUARD_S):
        result = await run_a
    assert result.status == "completed"
    assert "extra" in {s.name for s in model_a.requests[0].tools}
    answer = model_a.requests[2].messages[-1]
    assert answer.is_error
    assert re.fullmatch(
        rf"tool 'extra' is no longer offered: MCP server '{re.escape(server.name)}' took it away \(its tool list "
        r"changed\); its tools now are: add, echo, .*",
        answer.content or "",
    )
    assert "extra" not in (answer.content or "").split("now are: ")[1].split(", ")
    assert "extra" not in {s.name for s in model_a.requests[2].tools}  # nor offered again to run A
    assert calls(record, "extra") == []  # the call never went to the server
    assert [(e.tool, e.status) for e in tracer.of_type(ToolCallEnded) if e.tool == "extra"] == [("extra", "error")]
    # And a run that starts now is not offered it.
    model_c = ScriptedModel(["fine"])
    await Agent("c", model_c, tools=[server]).run("go")
    assert "extra" not in {s.name for s in model_c.requests[0].tools}
    assert "add" in {s.name for s in model_c.requests[0].tools}


async def test_a_cache_ttl_of_zero_lists_at_every_run(record: Path) -> None:
    async with stdio(record, cache_ttl=0) as server:
        first = await server.list_tools()
        second = await server.list_tools()
    assert [t.name for t in first] == [t.name for t in second]
    assert first[0] is second[0]  # an unchanged tool keeps its object (and its state)


# ------------------------------------------------------------------------------------------- layers


async def test_server_defaults_and_per_tool_overrides(tracer: RecordingTracer, record: Path) -> None:
    async with stdio(
        record, timeout=30, tool_settings={"slow": {"timeout": 0.2}, "echo": {"needs_approval": True}}
    ) as server:
        tools = {t.name: t for t in await server.list_tools()}
        assert tools["add"].timeout == 30
        assert tools["slow"].timeout == 0.2
        model = ScriptedModel([ToolCall.of("s", "slow", {"seconds": 20}), "gave up"])
        await Agent("a", model, tools=[server]).run("go")
        (end,) = tracer.of_type(ToolCallEnded)
        assert end.status == "timeout"
        assert "timeout of 0.2s" in tool_message(model)
        # The server was told: the SDK sends notifications/cancelled for the abandoned request.
        await until(lambda: any(r["event"] == "cancelled" for r in records(record)))

        result = await Agent("b", ScriptedModel([ToolCall.of("e", "echo", {"text": "x"}), "ok"]), tools=[server]).run(
            "go"
        )
        assert result.status == "interrupted"
        assert [i.tool for i in result.interruptions] == ["echo"]
        assert tracer.of_type(RunInterrupted)
        assert calls(record, "echo") == []


async def test_retries_send_a_failed_call_again(tracer: RecordingTracer, record: Path) -> None:
    """A server's ``retries`` retry what fails there: an isError result, and a server that died under the
    call (the call goes again on a new session, to a new process)."""
    async with stdio(record, retries=RetryPolicy(2, initial_delay=0.01)) as server:
        model = ScriptedModel(
            [ToolCall.of("e", "flaky", {"mode": "error"}), ToolCall.of("c", "flaky", {"mode": "crash"}), "done"]
        )
        result = await Agent("a", model, tools=[server]).run("go")
    assert result.status == "completed"
    assert tool_message(model, 1) == '{"result":"error: fine the second time"}'
    assert tool_message(model, 2) == '{"result":"crash: fine the second time"}'
    assert [e.status for e in tracer.of_type(ToolCallEnded)] == ["ok", "ok"]
    assert [e.error.type for e in tracer.of_type(RetryScheduled) if e.error is not None] == [
        "MCPToolError",
        "MCPConnectionError",
    ]
    assert len({c["pid"] for c in calls(record, "flaky")}) == 2  # the crash's retry reached a new process


async def test_retries_do_not_repeat_a_call_with_invalid_arguments(tracer: RecordingTracer, record: Path) -> None:
    async with stdio(record, retries=2) as server:
        model = ScriptedModel([ToolCall.of("e", "echo", {"text": 5}), "fixed"])
        await Agent("a", model, tools=[server]).run("go")
    assert tracer.of_type(RetryScheduled) == []
    assert calls(record, "echo") == []


async def test_the_bulkhead_of_the_server_limits_its_calls(record: Path) -> None:
    async with stdio(record, max_concurrency=1, max_queue=0) as server:
        model = ScriptedModel(
            [[ToolCall.of("s", "slow", {"seconds": 0.5}), ToolCall.of("e", "echo", {"text": "x"})], "done"]
        )
        await Agent("a", model, tools=[server]).run("go")
    by_call = {m.tool_call_id: m for m in model.requests[1].messages if m.role == "tool"}
    assert [by_call["s"].is_error, by_call["e"].is_error] == [False, True]
    assert "max_queue=0" in (by_call["e"].content or "")


# ------------------------------------------------------------------------------ failures, lifecycle


async def test_a_server_killed_mid_call_is_a_tool_error_and_the_next_call_reconnects(
    tracer: RecordingTracer, record: Path, server: MCPServerStdio
) -> None:
    model = ScriptedModel([ToolCall("k", "crash"), ToolCall("w", "whoami"), "done"])
    async with asyncio.timeout(GUARD_S):
        result = await Agent("a", model, tools=[server]).run("go")
    assert result.status == "completed"
    crashed = model.requests[1].messages[-1]
    assert crashed.is_error
    assert "closed the connection during the call to 'crash' (it exited or crashed)" in (crashed.content or "")
    first_pid = calls(record, "crash")[0]["pid"]
    assert int(tool_message(model, 2).split(":")[1].strip("}")) != first_pid  # a new server process
    assert [e.status for e in tracer.of_type(ToolCallEnded)] == ["error", "ok"]
    assert len(calls(record, "crash")) == 1  # a call the server got is not sent again


async def test_a_dead_server_opens_its_breaker(tracer: RecordingTracer, record: Path) -> None:
    breaker = CircuitBreaker(failure_threshold=2, count=(MCPConnectionError,))
    async with stdio(record, breaker=breaker) as server:
        model = ScriptedModel([ToolCall("1", "crash"), ToolCall("2", "crash"), ToolCall("3", "crash"), "done"])
        await Agent("a", model, tools=[server]).run("go")
    assert [e.status for e in tracer.of_type(ToolCallEnded)] == ["error", "error", "circuit_open"]
    assert [c.new for c in tracer.of_type(CircuitStateChanged)] == ["open"]
    assert len(calls(record, "crash")) == 2


async def test_a_server_that_never_starts(
    tracer: RecordingTracer, record: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = stdio(record, "--exit-at-start", connect_timeout=GUARD_S)
    with pytest.raises(MCPConnectionError, match="could not be started or reached: the process exited before"):
        await server.list_tools()
    # In a run, the agent goes on without its tools, and says why in the log.
    model = ScriptedModel(["no tools"])
    result = await Agent("a", model, tools=[server]).run("go")
    assert result.output == "no tools"
    assert model.requests[0].tools == ()
    assert "are not offered to this run" in caplog.text
    await server.aclose()

    missing = MCPServerStdio("/nonexistent/mcp-server")
    with pytest.raises(MCPConnectionError, match="cannot run '/nonexistent/mcp-server'"):
        await missing.list_tools()


async def test_a_server_that_never_answers_the_handshake_times_out_and_is_stopped(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    server = MCPServerStdio(sys.executable, ["-c", code], connect_timeout=2)
    with pytest.raises(MCPConnectionError, match=r"did not start within 2s \(connect_timeout\)"):
        async with asyncio.timeout(GUARD_S):
            await server.list_tools()
    pid = int(pid_file.read_text())
    await until(lambda: not _alive(pid))  # the stuck process is not left behind
    await server.aclose()


async def test_a_server_that_never_lists_its_tools_times_out(record: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with stdio(record, "--hang-listing", list_timeout=1) as server:
        with pytest.raises(MCPConnectionError, match=r"did not list its tools within 1s \(list_timeout\)"):
            async with asyncio.timeout(GUARD_S):
                await server.list_tools()
        # A run goes on without its tools.
        async with asyncio.timeout(GUARD_S):
            result = await Agent("a", ScriptedModel(["none"]), tools=[server]).run("go")
    assert result.output == "none"
    assert "are not offered to this run" in caplog.text


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


async def test_a_hundred_concurrent_calls_share_one_session(tracer: RecordingTracer, record: Path) -> None:
    async with stdio(record) as server:
        model = ScriptedModel([[ToolCall.of(f"c{i}", "add", {"a": i, "b": 1}) for i in range(100)], "done"])
        async with asyncio.timeout(GUARD_S):
            await Agent("a", model, tools=[server]).run("go")
    results = {m.tool_call_id: m.content for m in model.requests[1].messages if m.role == "tool"}
    assert results == {f"c{i}": f'{{"result":{i + 1}}}' for i in range(100)}
    assert [e.status for e in tracer.of_type(ToolCallEnded)] == ["ok"] * 100
    assert len({c["pid"] for c in calls(record, "add")}) == 1


async def test_over_http_a_hundred_concurrent_calls_share_one_session(
    tracer: RecordingTracer, record: Path, http_process: HTTPServerProcess
) -> None:
    async with MCPServerHTTP(http_process.url) as server:
        model = ScriptedModel([[ToolCall.of(f"c{i}", "add", {"a": i, "b": 1}) for i in range(100)], "done"])
        async with asyncio.timeout(GUARD_S):
            await Agent("a", model, tools=[server]).run("go")
    results = {m.tool_call_id: m.content for m in model.requests[1].messages if m.role == "tool"}
    assert results == {f"c{i}": f'{{"result":{i + 1}}}' for i in range(100)}
    assert [e.status for e in tracer.of_type(ToolCallEnded)] == ["ok"] * 100
    sessions = {c["headers"]["mcp-session-id"] for c in calls(record, "add")}  # type: ignore[index]
    assert len(sessions) == 1


async def test_a_server_that_dies_after_listing_fails_its_calls_and_opens_the_breaker(
    tracer: RecordingTracer, record: Path, tmp_path: Path
) -> None:
    flag = tmp_path / "down"
    # A wrapper that runs the server until the flag exists, then exits at once (a server that no longer starts).
    script = tmp_path / "flaky.py"
    script.write_text(
        textwrap.dedent(f"""
        import os, runpy, sys
        if os.path.exists({str(flag)!r}):
            sys.exit(3)
        sys.argv = [{str(SERVER)!r}]
        runpy.run_path({str(SERVER)!r}, run_name="__main__")
        """)
    )
    breaker = CircuitBreaker(failure_threshold=2)
    async with MCPServerStdio(
        sys.executable, [str(script)], env={"MCP_RECORD": str(record)}, breaker=breaker
    ) as server:
        await server.list_tools()
        flag.touch()
        model = ScriptedModel([ToolCall("1", "crash"), ToolCall("2", "whoami"), ToolCall("3", "whoami"), "done"])
        await Agent("a", model, tools=[server]).run("go")
    statuses = [e.status for e in tracer.of_type(ToolCallEnded)]
    assert statuses == ["error", "error", "circuit_open"]
    assert "could not be started or reached" in tool_message(model, 2)


async def test_a_call_cancelled_mid_flight_tells_the_server_and_ends_once(
    tracer: RecordingTracer, record: Path, server: MCPServerStdio
) -> None:
    model = ScriptedModel([ToolCall.of("s", "slow", {"seconds": 60}), "never"])
    run = asyncio.ensure_future(Agent("a", model, tools=[server]).run("go"))
    await until(lambda: bool(calls(record, "slow")))
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    await until(lambda: any(r["event"] == "cancelled" for r in records(record)))
    assert len(tracer.of_type(ToolCallStarted)) == 1
    (end,) = tracer.of_type(ToolCallEnded)
    assert end.status == "cancelled"
    # The session survives the cancellation.
    assert json.loads(await (await server.list_tools())[0].invoke('{"a": 1, "b": 2}')) == {"result": 3}


async def test_over_http_a_call_cancelled_mid_flight_tells_the_server_and_ends_once(
    tracer: RecordingTracer, record: Path, http_process: HTTPServerProcess
) -> None:
    async with MCPServerHTTP(http_process.url) as server:
        model = ScriptedModel([ToolCall.of("s", "slow", {"seconds": 60}), "never"])
        run = asyncio.ensure_future(Agent("a", model, tools=[server]).run("go"))
        await until(lambda: bool(calls(record, "slow")))
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        await until(lambda: any(r["event"] == "cancelled" for r in records(record)))
        (end,) = tracer.of_type(ToolCallEnded)
        assert end.status == "cancelled"
        (add,) = [t for t in await server.list_tools() if t.name == "add"]
        assert json.loads(await add.invoke('{"a": 1, "b": 2}')) == {"result": 3}


async def test_concurrent_runs_share_one_session(record: Path, server: MCPServerStdio) -> None:
    agent = Agent("a", ScriptedModel([ToolCall("w", "whoami"), "done"] * 8), tools=[server])

    async def one() -> None:
        await Agent("a", ScriptedModel([ToolCall("w", "whoami"), "done"]), tools=[server]).run("go")

    await asyncio.gather(*(one() for _ in range(8)))
    assert agent.name == "a"
    assert len({c["pid"] for c in calls(record, "whoami")}) == 1


async def test_the_session_reconnects_after_an_http_server_restart(
    record: Path, tmp_path: Path, http_process: HTTPServerProcess
) -> None:
    async with MCPServerHTTP(http_process.url) as server:
        (whoami,) = [t for t in await server.list_tools() if t.name == "whoami"]
        first = json.loads(await whoami.invoke("{}"))["result"]
        http_process.stop()
        http_process.start()  # the same port, a new process that does not know the old session
        second = json.loads(await whoami.invoke("{}"))["result"]
    assert first != second


async def test_aclose_stops_the_server_process(record: Path) -> None:
    server = stdio(record)
    (whoami,) = [t for t in await server.list_tools() if t.name == "whoami"]
    pid = json.loads(await whoami.invoke("{}"))["result"]
    await server.aclose()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    # Used again, it opens a new session.
    assert json.loads(await whoami.invoke("{}"))["result"] != pid
    await server.aclose()


def test_run_sync_and_exit_leave_no_child_process(record: Path, tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(
        textwrap.dedent(f"""
        import json, sys
        from tracedagent import Agent, ToolCall
        from tracedagent.mcp import MCPServerStdio
        from tracedagent.testing import ScriptedModel
        server = MCPServerStdio(sys.executable, [{str(SERVER)!r}])
        model = ScriptedModel([ToolCall("w", "whoami"), "one", ToolCall("w", "whoami"), "two"])
        agent = Agent("a", model, tools=[server])
        agent.run_sync("go")
        result = agent.run_sync("again")  # a new event loop: a new session
        print(result.messages[-2].content)
        """)
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=GUARD_S * 2)
    assert proc.returncode == 0, proc.stderr
    pid = json.loads(proc.stdout.strip().splitlines()[-1])["result"]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_the_sdk_own_client_span_does_not_replace_the_tool_span(record: Path, tmp_path: Path) -> None:
    """With an OpenTelemetry SDK tracer provider the mcp 2.x client opens a span of its own around each
    request and injects it; what arrives must still be the tool call's span."""
    script = tmp_path / "app.py"
    script.write_text(
        textwrap.dedent(f"""
        import sys
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        trace.set_tracer_provider(TracerProvider())
        from tracedagent import Agent, ToolCall
        from tracedagent import ToolCallEnded
        from tracedagent.mcp import MCPServerStdio
        from tracedagent.testing import ScriptedModel, capture_events
        server = MCPServerStdio(sys.executable, [{str(SERVER)!r}], env={{"MCP_RECORD": {str(record)!r}}})
        with capture_events() as events:
            Agent("a", ScriptedModel([ToolCall("e", "echo", '{{"text": "x"}}'), "ok"]), tools=[server]).run_sync("go")
        (end,) = events.of_type(ToolCallEnded)
        print(f"00-{{end.trace_id}}-{{end.span_id}}-01")
        """)
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=GUARD_S * 2)
    assert proc.returncode == 0, proc.stderr
    expected = proc.stdout.strip().splitlines()[-1]
    (seen,) = calls(record, "echo")
    assert seen["meta"]["traceparent"] == expected  # type: ignore[index]


def test_the_package_needs_the_mcp_extra_only_when_used() -> None:
    code = "import sys, tracedagent; tracedagent.Agent; assert 'mcp' not in sys.modules, 'the core imported mcp'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=GUARD_S)


def test_the_demo_adds_an_mcp_server_and_calls_its_tools(capsys: pytest.CaptureFixture[str]) -> None:
    import io

    from tracedagent._demo import run_demo

    out = io.StringIO()
    # Not all of the test server's tools: the demo calls them at once, and 'crash' would fail the others.
    code = run_demo(runs=1, quiet=True, out=out, mcp=f"{sys.executable} {SERVER} --only add,echo,picture")
    assert code == 0
    for name in ("add", "echo", "picture"):
        assert re.search(rf"tool mcp_{name}\s+ok 1", out.getvalue()), out.getvalue()


async def test_a_call_that_needs_approval_runs_when_the_run_is_resumed(
    tracer: RecordingTracer, record: Path, server: MCPServerStdio
) -> None:
    async with stdio(record, needs_approval=True) as guarded:
        agent = Agent("a", ScriptedModel([ToolCall.of("e", "echo", {"text": "approved"}), "done"]), tools=[guarded])
        paused = await agent.run("go")
        assert paused.status == "interrupted"
        assert calls(record, "echo") == []
        result = await agent.resume(paused.run_id, {paused.interruptions[0].id: True})
    assert result.status == "completed"
    assert [c["tool"] for c in calls(record)] == ["echo"]
    assert [e.status for e in tracer.of_type(ToolCallEnded)] == ["ok"]


def test_the_public_names_of_tracedagent_mcp() -> None:
    import tracedagent.mcp

    public = sorted(n for n in vars(tracedagent.mcp) if not n.startswith("_") and n != "annotations")
    public = [n for n in public if not isinstance(getattr(tracedagent.mcp, n), type(sys))]  # not submodules
    assert tracedagent.mcp.__all__ == sorted(tracedagent.mcp.__all__)
    assert public == tracedagent.mcp.__all__
