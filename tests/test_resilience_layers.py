"""The order of the layers (approval, breaker, bulkhead, timeout, retry, call), each refusal naming its
layer, and timeouts: async tools are cancelled, sync tools' late results are discarded and counted."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from tracedagent import (
    Agent,
    BackpressureRejected,
    CircuitOpen,
    CircuitStateChanged,
    ToolCall,
    ToolCallEnded,
    ToolCallRequest,
    ToolTimeout,
    hookimpl,
    tool,
)
from tracedagent.resilience import CircuitBreaker
from tracedagent.testing import RecordingTracer, ScriptedModel

GUARD_S = 5.0  # only a guard, so that a regression fails instead of hanging; never asserted on


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class DenyTool:
    """An ``approve_tool_call`` plugin that denies one tool and lets the rest through."""

    def __init__(self, name: str) -> None:
        self.name = name

    @hookimpl
    def approve_tool_call(self, call: ToolCallRequest) -> str | None:
        return "deny" if call.tool == self.name else None


def open_breaker(clock: FakeClock | None = None) -> CircuitBreaker:
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=30, clock=clock or time.monotonic)
    breaker.record(True)
    assert breaker.state == "open"
    return breaker


def ends(tracer: RecordingTracer) -> dict[str, ToolCallEnded]:
    return {e.call_id: e for e in tracer.of_type(ToolCallEnded)}


# ----------------------------------------------------------------------------------- named refusals


async def test_each_refusal_names_its_layer(tracer: RecordingTracer) -> None:
    ran: list[str] = []

    @tool
    def secret() -> str:
        ran.append("secret")
        return "s"

    @tool(breaker=open_breaker())
    def broken() -> str:
        ran.append("broken")
        return "b"

    @tool(max_concurrency=1, max_queue=0)
    def busy() -> str:
        ran.append("busy")
        return "b"

    @tool(timeout=0.01)
    async def slow() -> str:
        await asyncio.Event().wait()
        return "never"

    await busy.bulkhead.acquire()  # another call holds the only slot
    calls = [ToolCall(name, name) for name in ("secret", "broken", "busy", "slow")]
    model = ScriptedModel([calls, "done"])
    try:
        async with asyncio.timeout(GUARD_S):
            await Agent("a", model, tools=[secret, broken, busy, slow], plugins=[DenyTool("secret")]).run("go")
    finally:
        busy.bulkhead.release()

    assert ran == []
    by_call = ends(tracer)
    assert {k: e.status for k, e in by_call.items()} == {
        "secret": "denied",
        "broken": "circuit_open",
        "busy": "rejected",
        "slow": "timeout",
    }
    assert {k: e.error.type for k, e in by_call.items() if e.error is not None} == {
        "broken": "CircuitOpen",
        "busy": "BackpressureRejected",
        "slow": "ToolTimeout",
    }
    told = {m.tool_call_id: m.content or "" for m in model.requests[1].messages if m.role == "tool"}
    assert "denied" in told["secret"]
    assert "circuit breaker" in told["broken"]
    assert "backpressure" in told["busy"]
    assert "timeout" in told["slow"]
    assert (CircuitOpen.layer, BackpressureRejected.layer) == ("breaker", "backpressure")
    assert (CircuitOpen.status, BackpressureRejected.status, ToolTimeout.status) == (
        "circuit_open",
        "rejected",
        "timeout",
    )


# --------------------------------------------------------------------------------------- the order


async def test_approval_comes_before_the_breaker(tracer: RecordingTracer) -> None:
    @tool(breaker=open_breaker())
    def denied() -> str:
        return "d"

    @tool(breaker=open_breaker(), needs_approval=True)
    def asks() -> str:
        return "a"

    async with asyncio.timeout(GUARD_S):
        await Agent(
            "a", ScriptedModel([ToolCall("d", "denied"), "x"]), tools=[denied], plugins=[DenyTool("denied")]
        ).run("go")
        paused = await Agent("a", ScriptedModel([ToolCall("p", "asks")]), tools=[asks]).run("go")

    assert ends(tracer)["d"].status == "denied"  # not circuit_open: the approval layer answered first
    assert paused.status == "interrupted"  # the person is asked before the breaker would refuse
    assert [i.id for i in paused.interruptions] == ["p"]


async def test_an_open_breaker_refuses_before_the_bulkhead_is_touched(tracer: RecordingTracer) -> None:
    @tool(breaker=open_breaker(), max_concurrency=1, max_queue=0)
    def guarded() -> str:
        return "g"

    await guarded.bulkhead.acquire()  # were the call to reach the bulkhead, it would be queue_full
    try:
        calls = [ToolCall(f"c{i}", "guarded") for i in range(3)]
        async with asyncio.timeout(GUARD_S):
            await Agent("a", ScriptedModel([calls, "x"]), tools=[guarded]).run("go")
        assert (guarded.bulkhead.inflight, guarded.bulkhead.queue_depth) == (1, 0)
    finally:
        guarded.bulkhead.release()

    assert {e.status for e in tracer.of_type(ToolCallEnded)} == {"circuit_open"}
    assert guarded.bulkhead.rejected == {"queue_full": 0, "queue_timeout": 0}


async def test_a_bulkhead_refusal_is_not_a_breaker_failure(tracer: RecordingTracer) -> None:
    @tool(breaker=CircuitBreaker(failure_threshold=1), max_concurrency=1, max_queue=0)
    def busy(fail: bool = False) -> str:
        if fail:
            raise ConnectionError("down")
        return "fine"

    await busy.bulkhead.acquire()
    try:
        refused = [ToolCall(f"r{i}", "busy") for i in range(3)]
        async with asyncio.timeout(GUARD_S):
            await Agent("a", ScriptedModel([refused, "x"]), tools=[busy]).run("go")
    finally:
        busy.bulkhead.release()
    assert busy.breaker is not None
    assert busy.breaker.state == "closed"
    assert tracer.of_type(CircuitStateChanged) == []

    # The same breaker opens on one real failure: the refusals above were not counted.
    async with asyncio.timeout(GUARD_S):
        await Agent("a", ScriptedModel([ToolCall("f", "busy", '{"fail": true}'), "x"]), tools=[busy]).run("go")
    assert [e.status for e in tracer.of_type(ToolCallEnded)] == ["rejected"] * 3 + ["error"]
    assert [(c.old, c.new) for c in tracer.of_type(CircuitStateChanged)] == [("closed", "open")]


@pytest.mark.parametrize("refusal", ["backpressure", "invalid arguments"])
async def test_a_probe_refused_by_a_later_layer_lets_the_next_call_probe(tracer: RecordingTracer, refusal: str) -> None:
    clock = FakeClock()
    breaker = open_breaker(clock)
    ran: list[int] = []

    @tool(breaker=breaker, max_concurrency=1, max_queue=0)
    def probe(n: int) -> int:
        ran.append(n)
        return n

    clock.now = 30  # a probe may go
    first = '{"n": 1}'
    if refusal == "backpressure":
        await probe.bulkhead.acquire()
    else:
        first = '{"n": "one"}'
    try:
        async with asyncio.timeout(GUARD_S):
            await Agent("a", ScriptedModel([ToolCall("p1", "probe", first), "x"]), tools=[probe]).run("go")
    finally:
        if refusal == "backpressure":
            probe.bulkhead.release()
    assert breaker.state == "half_open"  # the refused probe decided nothing...

    async with asyncio.timeout(GUARD_S):  # ...and gave its place back to this one
        await Agent("a", ScriptedModel([ToolCall("p2", "probe", '{"n": 2}'), "x"]), tools=[probe]).run("go")

    assert [e.status for e in tracer.of_type(ToolCallEnded)] == [
        "rejected" if refusal == "backpressure" else "error",
        "ok",
    ]
    assert ran == [2]
    assert [(c.old, c.new) for c in tracer.of_type(CircuitStateChanged)] == [
        ("open", "half_open"),
        ("half_open", "closed"),
    ]


async def test_a_timed_out_call_frees_its_bulkhead_slot(tracer: RecordingTracer) -> None:
    @tool(timeout=0.01, max_concurrency=1, max_queue=0, breaker=False)
    async def stuck() -> str:
        await asyncio.Event().wait()
        return "never"

    model = ScriptedModel([ToolCall("t1", "stuck"), ToolCall("t2", "stuck"), "x"])
    async with asyncio.timeout(GUARD_S):
        await Agent("a", model, tools=[stuck]).run("go")

    assert [e.status for e in tracer.of_type(ToolCallEnded)] == ["timeout", "timeout"]  # not rejected
    assert (stuck.bulkhead.inflight, stuck.bulkhead.queue_depth) == (0, 0)


async def test_a_sync_tool_past_its_timeout_keeps_its_bulkhead_slot_until_its_thread_ends(
    tracer: RecordingTracer,
) -> None:
    """The thread cannot be stopped, so it holds the slot: max_concurrency counts the threads really running."""
    release, started = threading.Event(), threading.Event()

    @tool(timeout=0.2, max_concurrency=1, max_queue=0, breaker=False)
    def stuck() -> str:
        started.set()
        release.wait(GUARD_S)
        return "late"

    model = ScriptedModel([ToolCall("t1", "stuck"), ToolCall("t2", "stuck"), "x"], per_run=True)
    agent = Agent("a", model, tools=[stuck])
    try:
        async with asyncio.timeout(GUARD_S):
            await agent.run("go")
        assert started.is_set()
        # the first call timed out but its thread runs on with the slot: the second is refused
        assert [e.status for e in tracer.of_type(ToolCallEnded)] == ["timeout", "rejected"]
        assert stuck.bulkhead.inflight == 1
    finally:
        release.set()
    async with asyncio.timeout(GUARD_S):
        while stuck.bulkhead.inflight:  # noqa: ASYNC110 - released on the tool's thread, with no event
            await asyncio.sleep(0.001)
    started.clear()
    release.clear()
    release.set()  # the next calls finish at once
    async with asyncio.timeout(GUARD_S):
        await agent.run("again")
    assert [e.status for e in tracer.of_type(ToolCallEnded)][2:] == ["ok", "ok"]
    assert (stuck.bulkhead.inflight, stuck.bulkhead.queue_depth) == (0, 0)


# ------------------------------------------------------------------------------------------ timeouts


async def test_an_async_tool_is_cancelled_at_its_timeout(tracer: RecordingTracer) -> None:
    seen: list[str] = []

    @tool(timeout=0.01)
    async def stuck() -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise
        seen.append("finished")
        return "never"

    model = ScriptedModel([ToolCall("s", "stuck"), "gave up"])
    async with asyncio.timeout(GUARD_S):
        result = await Agent("a", model, tools=[stuck]).run("go")

    assert result.output == "gave up"
    assert seen == ["cancelled"]
    (end,) = tracer.of_type(ToolCallEnded)
    assert end.status == "timeout"
    assert end.error is not None
    assert "0.01s" in end.error.message
    assert stuck.late_results == 0  # a cancelled coroutine has no late result


async def test_a_sync_tool_past_its_timeout_runs_on_and_its_late_result_is_discarded_and_counted(
    tracer: RecordingTracer,
) -> None:
    release, started = threading.Event(), threading.Event()

    # The timeout leaves the thread time to start (a call cancelled before it starts has no late result).
    @tool(timeout=0.2)
    def stuck() -> str:
        started.set()
        release.wait(GUARD_S)
        return "LATE RESULT"

    model = ScriptedModel([ToolCall("s", "stuck"), "gave up", ToolCall("s2", "stuck"), "again"])
    agent = Agent("a", model, tools=[stuck])
    try:
        async with asyncio.timeout(GUARD_S):
            result = await agent.run("go")
        assert started.is_set()
        assert stuck.late_results == 0  # the thread is still running: nothing to discard yet
    finally:
        release.set()
    async with asyncio.timeout(GUARD_S):
        while stuck.late_results < 1:  # noqa: ASYNC110 - counted on the tool's thread, with no event
            await asyncio.sleep(0.001)

    assert stuck.late_results == 1
    assert result.output == "gave up"
    assert [e.status for e in tracer.of_type(ToolCallEnded)] == ["timeout"]
    assert all("LATE RESULT" not in (m.content or "") for m in result.messages)

    async with asyncio.timeout(GUARD_S):  # a call that finishes in time adds nothing
        second = await agent.run("again")
    assert [e.status for e in tracer.of_type(ToolCallEnded)] == ["timeout", "ok"]
    assert "LATE RESULT" in (second.messages[-2].content or "")
    assert stuck.late_results == 1


async def test_late_results_are_counted_per_call(tracer: RecordingTracer) -> None:
    release = threading.Event()
    started: list[int] = []

    @tool(timeout=0.2)
    def stuck(n: int) -> int:
        started.append(n)
        release.wait(GUARD_S)
        return n

    calls = [ToolCall(f"s{i}", "stuck", f'{{"n": {i}}}') for i in range(3)]
    try:
        async with asyncio.timeout(GUARD_S):
            await Agent("a", ScriptedModel([calls, "x"]), tools=[stuck]).run("go")
        assert sorted(started) == [0, 1, 2]
    finally:
        release.set()
    async with asyncio.timeout(GUARD_S):
        while stuck.late_results < 3:  # noqa: ASYNC110 - counted on the tool's threads, with no event
            await asyncio.sleep(0.001)

    assert stuck.late_results == 3
    assert [e.status for e in tracer.of_type(ToolCallEnded)] == ["timeout"] * 3
