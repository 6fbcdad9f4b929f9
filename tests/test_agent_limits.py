"""An agent's limit on concurrent runs refuses new runs with a clear error."""

from __future__ import annotations

import asyncio

import pytest

from tracedagent import Agent, ConfigurationError, RunRejected, tool
from tracedagent.testing import RecordingTracer, ScriptedModel, Step


async def test_runs_past_max_concurrent_runs_are_refused(tracer: RecordingTracer) -> None:
    gate = asyncio.Event()
    both_in = asyncio.Event()
    inside = 0

    @tool
    async def wait() -> str:
        """Wait for the gate."""
        nonlocal inside
        inside += 1
        if inside == 2:
            both_in.set()
        await gate.wait()
        return "done"

    model = ScriptedModel([Step(tool_calls=[("wait", {})]), "ok"], per_run=True)
    agent = Agent("limited", model, tools=[wait], max_concurrent_runs=2)
    first = [asyncio.create_task(agent.run("go")) for _ in range(2)]
    await asyncio.wait_for(both_in.wait(), 5)  # a guard only
    assert agent.active_runs == 2
    with pytest.raises(RunRejected, match=r"max_concurrent_runs=2"):
        await agent.run("one too many")
    gate.set()
    results = await asyncio.gather(*first)
    assert [r.status for r in results] == ["completed", "completed"]
    assert agent.active_runs == 0
    # the refused run never started: two runs in the events
    assert len([e for e in tracer.hooks() if e == "on_run_start"]) == 2
    # and the slot is free again
    assert (await agent.run("again")).status == "completed"


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_limits_are_refused(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="max_concurrent_runs"):
        Agent("x", ScriptedModel(["hi"]), max_concurrent_runs=bad)  # type: ignore[arg-type]
