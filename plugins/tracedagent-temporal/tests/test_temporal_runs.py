"""TemporalAgent against a real Temporal dev server: runs, approvals, replay, retries, load."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import temporal_agents
from temporalio.client import Client
from temporalio.worker import Replayer

from tracedagent import (
    Agent,
    ContextCompacted,
    DropOldest,
    Event,
    HandoffOccurred,
    Message,
    ModelCallEnded,
    ModelCallStarted,
    RetryScheduled,
    RunEnded,
    RunInterrupted,
    RunResumed,
    RunStarted,
    SQLiteCheckpointStore,
    ToolCallEnded,
    ToolCallStarted,
    UserError,
    tool,
)
from tracedagent.testing import ScriptedModel, capture_events
from tracedagent_temporal import AgentWorkflow, TemporalAgent

pytestmark = pytest.mark.integration


def _run_id() -> str:
    return f"run-{uuid.uuid4().hex}"


def _count(events: list[Event], cls: type[Event]) -> int:
    return sum(1 for e in events if type(e) is cls)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


async def test_a_run_with_tool_calls_fires_one_event_per_real_call_in_one_trace(
    client: Client, task_queue: str, side_effects: Path
) -> None:
    agent = TemporalAgent(temporal_agents.math_agent())
    with capture_events() as recorded:
        async with agent.worker(client, task_queue=task_queue):
            result = await agent.run(client, "add them up", id=(run_id := _run_id()), task_queue=task_queue)
    assert (result.status, result.output, result.run_id, result.turns) == ("completed", "10", run_id, 3)
    assert [m.content for m in result.messages if m.role == "tool"] == ["3", "7", "10"]
    events = recorded.events
    assert _count(events, RunStarted) == _count(events, RunEnded) == 1
    assert _count(events, ModelCallStarted) == _count(events, ModelCallEnded) == 3
    assert _count(events, ToolCallStarted) == _count(events, ToolCallEnded) == 3
    # the first turn's two calls run concurrently (their order is not fixed); the third comes after both
    lines = _lines(side_effects)
    assert sorted(lines[:2]) == ["add 1 2", "add 3 4"], lines
    assert lines[2:] == ["add 3 7"], lines
    assert {e.trace_id for e in events} == {result.trace_id}
    assert {e.run_id for e in events} == {run_id}
    run_span = next(e for e in events if type(e) is RunStarted).span_id
    calls = [e for e in events if isinstance(e, ModelCallStarted | ToolCallStarted)]
    assert {e.parent_span_id for e in calls} == {run_span}
    assert recorded.unmatched() == []
    assert result.usage.requests == 3


async def test_an_approval_pauses_the_workflow_and_resume_signals_it_on_a_new_worker(
    client: Client, task_queue: str, side_effects: Path
) -> None:
    agent = TemporalAgent(temporal_agents.refund_agent())
    run_id = _run_id()
    with capture_events() as recorded:
        async with agent.worker(client, task_queue=task_queue):
            paused = await agent.run(client, "refund A1", id=run_id, task_queue=task_queue)
        assert paused.status == "interrupted"
        assert [(p.tool, p.kind) for p in paused.interruptions] == [("refund", "approval")]
        assert _lines(side_effects) == []  # nothing ran before the person said yes
        # The workflow waits for the signal while no worker runs; a new worker replays its history first.
        async with agent.worker(client, task_queue=task_queue):
            with pytest.raises(UserError, match="no pending call"):
                await agent.resume(client, run_id, {"call_nope": True})
            done = await agent.resume(client, run_id, {paused.interruptions[0].id: True})
    assert (done.status, done.output, done.run_id, done.trace_id) == (
        "completed",
        "refund done",
        run_id,
        paused.trace_id,
    )
    assert _lines(side_effects) == ["refund A1"]
    events = recorded.events
    assert _count(events, RunStarted) == 1
    assert _count(events, RunInterrupted) == 1
    assert _count(events, RunResumed) == 1
    assert [e.status for e in events if type(e) is RunEnded] == ["interrupted", "completed"]  # type: ignore[attr-defined]
    assert _count(events, ModelCallStarted) == _count(events, ModelCallEnded) == 2
    assert _count(events, ToolCallStarted) == _count(events, ToolCallEnded) == 1
    assert {e.trace_id for e in events} == {paused.trace_id}
    resumed = next(e for e in events if type(e) is RunResumed)
    tool_start = next(e for e in events if type(e) is ToolCallStarted)
    assert tool_start.parent_span_id == resumed.span_id  # the tool call belongs to the resumed segment
    with pytest.raises(UserError, match="not paused"):
        await agent.resume(client, run_id, {paused.interruptions[0].id: True})


async def test_replaying_a_run_fires_no_hooks(client: Client, task_queue: str, side_effects: Path) -> None:
    agent = TemporalAgent(temporal_agents.math_agent())
    async with agent.worker(client, task_queue=task_queue):
        result = await agent.run(client, "add them up", id=(run_id := _run_id()), task_queue=task_queue)
    assert result.output == "10"
    history = await client.get_workflow_handle(run_id).fetch_history()
    worker = agent.worker(client, task_queue=task_queue)
    config = worker.config()
    replayer = Replayer(
        workflows=[AgentWorkflow], workflow_runner=config["workflow_runner"], interceptors=config["interceptors"]
    )
    with capture_events() as recorded:
        replayed = await replayer.replay_workflow(history)  # raises on any nondeterminism
    assert replayed.replay_failure is None
    assert recorded.events == []
    assert len(_lines(side_effects)) == 3


calls_of_flaky: list[int] = []


@tool(retries=2)
def flaky(n: int) -> str:
    """Fails twice, then answers."""
    calls_of_flaky.append(n)
    if len(calls_of_flaky) < 3:
        raise ConnectionError(f"attempt {len(calls_of_flaky)} lost its connection")
    return f"ok {n}"


async def test_tool_retries_are_temporal_attempts_never_stacked(client: Client, task_queue: str) -> None:
    calls_of_flaky.clear()
    agent = TemporalAgent(Agent("flaky", ScriptedModel([("flaky", {"n": 1}), "done"]), tools=[flaky]))
    with capture_events() as recorded:
        async with agent.worker(client, task_queue=task_queue):
            result = await agent.run(client, "go", id=_run_id(), task_queue=task_queue)
    assert result.output == "done"
    assert [m.content for m in result.messages if m.role == "tool"] == ["ok 1"]
    assert calls_of_flaky == [1, 1, 1]  # three attempts in all (retries=2), not three per activity attempt
    ends = [e.status for e in recorded.events if type(e) is ToolCallEnded]  # type: ignore[attr-defined]
    assert ends == ["error", "error", "ok"]
    assert _count(recorded.events, ToolCallStarted) == 3
    assert [e.attempt for e in recorded.events if type(e) is RetryScheduled] == [1, 2]  # type: ignore[attr-defined]


async def test_a_failing_model_fails_the_run_with_its_error(client: Client, task_queue: str) -> None:
    from tracedagent import RunError

    agent = TemporalAgent(Agent("broken", ScriptedModel([ValueError("the provider is down")] * 3)), model_attempts=2)
    with capture_events() as recorded:
        async with agent.worker(client, task_queue=task_queue):
            with pytest.raises(RunError, match="the provider is down") as caught:
                await agent.run(client, "hi", id=_run_id(), task_queue=task_queue)
    assert caught.value.result is not None
    assert caught.value.result.status == "failed"
    assert _count(recorded.events, ModelCallStarted) == _count(recorded.events, ModelCallEnded) == 2
    assert [e.status for e in recorded.events if type(e) is RunEnded] == ["failed"]  # type: ignore[attr-defined]


async def test_a_hundred_concurrent_workflows_on_one_worker_complete(
    client: Client, task_queue: str, side_effects: Path
) -> None:
    agent = TemporalAgent(
        Agent("adder", ScriptedModel([("add", {"a": 2, "b": 2}), "4"], per_run=True), tools=[temporal_agents.add])
    )
    with capture_events() as recorded:
        async with agent.worker(client, task_queue=task_queue):
            results = await asyncio.gather(
                *(agent.run(client, "2+2", id=_run_id(), task_queue=task_queue) for _ in range(100))
            )
    assert [r.status for r in results] == ["completed"] * 100
    assert {r.output for r in results} == {"4"}
    assert len(_lines(side_effects)) == 100
    by_run: dict[str, list[Any]] = {}
    for e in recorded.events:
        by_run.setdefault(e.run_id, []).append(e)
    assert set(by_run) == {r.run_id for r in results}
    for r in results:
        events = by_run[r.run_id]
        assert {e.trace_id for e in events} == {r.trace_id}
        assert _count(events, ModelCallStarted) == 2
        assert _count(events, ToolCallStarted) == 1
    assert len({r.trace_id for r in results}) == 100


@dataclass
class Verdict:
    ok: bool


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("output_type", Verdict),
        ("max_concurrent_runs", 2),
    ],
)
def test_an_agent_with_a_setting_the_workflow_does_not_carry_out_is_refused_by_name(setting: str, value: Any) -> None:
    agent = Agent("support", ScriptedModel(["hi"]), **{setting: value})
    with pytest.raises(UserError, match=rf"agent 'support' has {setting}=.*runs on Temporal do not support: "):
        TemporalAgent(agent)
    TemporalAgent(Agent("support", ScriptedModel(["hi"]), output_type=str))  # plain text is what runs give
    target = Agent("support", ScriptedModel(["hi"]), **{setting: value})
    with pytest.raises(UserError, match=rf"agent 'support' has {setting}="):  # an agent a handoff reaches
        TemporalAgent(Agent("triage", ScriptedModel(["hi"]), handoffs=[target]))


@tool
def shout(text: str) -> str:
    """Say it louder."""
    return text.upper()


async def test_a_tool_that_prepare_tools_offers_runs_in_its_activity(client: Client, task_queue: str) -> None:
    def offer_shout(ctx: Any) -> None:
        ctx.add_tool(shout)

    model = ScriptedModel([("shout", {"text": "hello"}), "done"], per_run=True)
    agent = TemporalAgent(Agent("loud", model, prepare_tools=offer_shout))
    async with agent.worker(client, task_queue=task_queue):
        result = await agent.run(client, "shout hello", id=_run_id(), task_queue=task_queue)
    assert [(m.content, m.is_error) for m in result.messages if m.role == "tool"] == [("HELLO", False)]


class PerMessage:
    """Counts one token per message: exact, so the compaction's figures are known."""

    estimated = False

    def count(self, messages: Any) -> int:
        return len(messages)


async def test_compaction_runs_in_the_model_call_s_activity_as_in_agent_run(client: Client, task_queue: str) -> None:
    history = [Message.user(f"question {i}") if i % 2 == 0 else Message.assistant(f"answer {i}") for i in range(9)]
    agent = TemporalAgent(
        Agent("brief", ScriptedModel(["short answer"], per_run=True), compaction=DropOldest(3, counter=PerMessage()))
    )
    with capture_events() as recorded:
        async with agent.worker(client, task_queue=task_queue):
            result = await agent.run(client, history, id=_run_id(), task_queue=task_queue)
    assert result.output == "short answer"
    (compacted,) = [e for e in recorded.events if type(e) is ContextCompacted]
    assert (compacted.messages_before, compacted.messages_after) == (9, 3)  # type: ignore[attr-defined]
    (call,) = [e for e in recorded.events if type(e) is ModelCallStarted]
    assert [m.content for m in call.messages] == ["question 6", "answer 7", "question 8"]
    assert [m.content for m in result.messages] == ["question 6", "answer 7", "question 8", "short answer"]


@tool
def refund_invoice(invoice: str) -> str:
    """Refund an invoice."""
    _note_refund.append(invoice)
    return f"refunded {invoice}"


_note_refund: list[str] = []


async def test_a_handoff_goes_on_with_the_target_agent_s_model_and_tools(client: Client, task_queue: str) -> None:
    billing = Agent(
        "billing",
        ScriptedModel([("refund_invoice", {"invoice": "INV-7"}), "billing: refunded INV-7"], per_run=True),
        tools=[refund_invoice],
    )
    triage = Agent("triage", ScriptedModel([("transfer_to_billing", {}), "never"], per_run=True), handoffs=[billing])
    agent = TemporalAgent(triage)
    with capture_events() as recorded:
        async with agent.worker(client, task_queue=task_queue):
            result = await agent.run(client, "refund my invoice", id=_run_id(), task_queue=task_queue)
    assert (result.status, result.output) == ("completed", "billing: refunded INV-7")
    assert _note_refund == ["INV-7"]
    events = recorded.events
    (handoff,) = [e for e in events if type(e) is HandoffOccurred]
    assert (handoff.from_agent, handoff.to_agent, handoff.agent) == ("triage", "billing", "triage")  # type: ignore[attr-defined]
    models = [(e.agent, e.model) for e in events if type(e) is ModelCallStarted]  # type: ignore[attr-defined]
    assert [agent for agent, _ in models] == ["triage", "billing", "billing"]
    tools = [(e.agent, e.tool) for e in events if type(e) is ToolCallStarted]  # type: ignore[attr-defined]
    assert tools == [("triage", "transfer_to_billing"), ("billing", "refund_invoice")]
    assert {e.agent for e in events if type(e) in (RunStarted, RunEnded)} == {"triage"}


async def test_a_session_continues_across_runs_on_temporal(client: Client, task_queue: str, tmp_path: Path) -> None:
    store = SQLiteCheckpointStore(tmp_path / "sessions.db")
    model = ScriptedModel(["hello", "again"])
    agent = TemporalAgent(Agent("chat", model, checkpoints=store))
    async with agent.worker(client, task_queue=task_queue):
        first = await agent.run(client, "hi", id=_run_id(), task_queue=task_queue, session_id="s1")
        second = await agent.run(client, "and now?", id=_run_id(), task_queue=task_queue, session_id="s1")
    assert (first.output, second.output) == ("hello", "again")
    assert [m.content for m in second.messages] == ["hi", "hello", "and now?", "again"]
    assert [m.content for m in await store.load_session("s1")] == ["hi", "hello", "and now?", "again"]
    assert [m.content for m in model.requests[1].messages] == ["hi", "hello", "and now?"]
