"""Handoffs (``Agent(handoffs=[...])``): the run goes on with another agent, same run, trace and segment."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tracedagent import (
    Agent,
    ConfigurationError,
    HandoffOccurred,
    InMemoryCheckpointStore,
    MaxTurnsExceeded,
    ModelCallStarted,
    RunEnded,
    RunResumed,
    RunStarted,
    SQLiteCheckpointStore,
    ToolCallEnded,
    Usage,
    UserError,
    tool,
)
from tracedagent._state import RunState
from tracedagent.testing import RecordingTracer, ScriptedModel, Step


@tool
def refund(order: str) -> str:
    """Refund an order."""
    return f"refunded {order}"


@tool(needs_approval=True)
def issue_credit(amount: int) -> str:
    """Give the customer store credit."""
    return f"credited {amount}"


def billing_agent(*steps: Any, **kwargs: Any) -> Agent:
    model = ScriptedModel(steps, name="billing-model", provider="billing-provider")
    return Agent("billing", model, instructions="You handle billing.", tools=[refund, issue_credit], **kwargs)


def triage_agent(handoffs: list[Any], *steps: Any, **kwargs: Any) -> Agent:
    model = ScriptedModel(steps, name="triage-model")
    return Agent("triage", model, instructions="Route the customer.", handoffs=handoffs, **kwargs)


async def test_a_handoff_continues_the_run_as_the_other_agent(tracer: RecordingTracer) -> None:
    billing = billing_agent(
        Step(tool_calls=[("refund", {"order": "42"})], usage=Usage(20, 2, requests=1)),
        Step("Refunded order 42.", usage=Usage(30, 5, requests=1)),
    )
    triage = triage_agent([billing], Step(tool_calls=[("transfer_to_billing", {})], usage=Usage(10, 1, requests=1)))

    result = await triage.run("please refund order 42")

    assert result.status == "completed"
    assert result.output == "Refunded order 42."
    assert result.usage == Usage(60, 8, requests=3)
    # the triage model is offered the transfer tool; the billing model gets billing's instructions and tools
    first = triage.model.requests[0]  # type: ignore[attr-defined]
    assert [t.name for t in first.tools] == ["transfer_to_billing"]
    assert "billing" in first.tools[0].description
    after = billing.model.requests[0]  # type: ignore[attr-defined]
    assert after.instructions == "You handle billing."
    assert sorted(t.name for t in after.tools) == ["issue_credit", "refund"]
    assert after.agent == "billing"

    events = tracer.events
    assert {e.run_id for e in events} == {result.run_id}
    assert {e.trace_id for e in events} == {result.trace_id}
    start = tracer.of_type(RunStarted)[0]
    (handoff,) = tracer.of_type(HandoffOccurred)
    assert (handoff.from_agent, handoff.to_agent, handoff.agent) == ("triage", "billing", "triage")
    assert (handoff.span_id, handoff.parent_span_id) == (start.span_id, start.parent_span_id)
    hooks = tracer.hooks()
    assert hooks.index("on_handoff") == hooks.index("on_tool_call_end") + 1
    # the segment belongs to the run's agent; the stages after the handoff to the agent that ran them
    (end,) = tracer.of_type(RunEnded)
    assert start.agent == end.agent == "triage"
    assert end.span_id == start.span_id
    assert end.usage == result.usage
    assert [(e.agent, e.model) for e in tracer.of_type(ModelCallStarted)] == [
        ("triage", "triage-model"),
        ("billing", "billing-model"),
        ("billing", "billing-model"),
    ]
    assert [(e.agent, e.tool, e.status) for e in tracer.of_type(ToolCallEnded)] == [
        ("triage", "transfer_to_billing", "ok"),
        ("billing", "refund", "ok"),
    ]
    assert tracer.format_span_tree().splitlines()[0] == "run triage [completed] {handoff}"


async def test_an_unknown_handoff_name_is_a_tool_error_the_model_sees(tracer: RecordingTracer) -> None:
    billing = billing_agent(Step("Billing here."))
    triage = triage_agent(
        [billing],
        Step(tool_calls=[("transfer_to_shipping", {})]),
        Step(tool_calls=[("transfer_to_billing", {})]),
    )

    result = await triage.run("where is my parcel")

    assert result.status == "completed"
    assert result.output == "Billing here."
    failed = tracer.of_type(ToolCallEnded)[0]
    assert (failed.tool, failed.status) == ("transfer_to_shipping", "error")
    assert failed.result is not None
    assert "transfer_to_billing" in failed.result
    seen = triage.model.requests[1].messages[-1]  # type: ignore[attr-defined]
    assert seen.role == "tool"
    assert seen.is_error
    assert "no tool 'transfer_to_shipping'" in (seen.content or "")
    assert [(e.from_agent, e.to_agent) for e in tracer.of_type(HandoffOccurred)] == [("triage", "billing")]


async def test_a_handoff_cycle_ends_at_max_turns(tracer: RecordingTracer) -> None:
    ping: Agent
    pong = Agent("pong", ScriptedModel([Step(tool_calls=[("transfer_to_ping", {})])] * 10), handoffs=[lambda: ping])
    ping = Agent(
        "ping", ScriptedModel([Step(tool_calls=[("transfer_to_pong", {})])] * 10), handoffs=[pong], max_turns=4
    )

    with pytest.raises(MaxTurnsExceeded) as caught:
        await ping.run("go")

    assert caught.value.result is not None
    assert caught.value.result.turns == 4
    assert [(e.from_agent, e.to_agent) for e in tracer.of_type(HandoffOccurred)] == [
        ("ping", "pong"),
        ("pong", "ping"),
        ("ping", "pong"),
        ("pong", "ping"),
    ]
    (end,) = tracer.of_type(RunEnded)
    assert (end.status, end.agent) == ("failed", "ping")
    assert end.error is not None


async def test_two_transfers_in_one_turn_take_the_first(tracer: RecordingTracer) -> None:
    other = Agent("other", ScriptedModel(["never"]))
    billing = billing_agent(Step("Billing here."))
    triage = triage_agent([billing, other], Step(tool_calls=[("transfer_to_billing", {}), ("transfer_to_other", {})]))

    result = await triage.run("hi")

    assert result.output == "Billing here."
    statuses = {e.tool: (e.status, e.result) for e in tracer.of_type(ToolCallEnded)}
    assert statuses["transfer_to_billing"][0] == "ok"
    assert statuses["transfer_to_other"][0] == "error"
    assert "already transferred to agent 'billing'" in (statuses["transfer_to_other"][1] or "")
    assert [e.to_agent for e in tracer.of_type(HandoffOccurred)] == ["billing"]


async def test_interrupt_and_resume_after_a_handoff_resume_in_the_active_agent(
    tracer: RecordingTracer, tmp_path: Any
) -> None:
    store = SQLiteCheckpointStore(tmp_path / "runs.db")
    billing = billing_agent(Step(tool_calls=[("issue_credit", {"amount": 5})]))
    triage = triage_agent([billing], Step(tool_calls=[("transfer_to_billing", {})]), checkpoints=store)

    paused = await triage.run("credit me")

    assert paused.status == "interrupted"
    saved = await store.load(paused.run_id)
    assert saved is not None
    assert saved.agent == "triage"
    assert saved.active_agent == "billing"
    assert RunState.decode(paused.run_id, saved.encode()).active_agent == "billing"

    # a new process: agents built again, the run resumed with the run's own agent (a script of the rest:
    # a ScriptedModel cannot tell its own turns from another agent's in the conversation)
    billing2 = billing_agent(Step("Credited 5."))
    triage2 = triage_agent([billing2], Step("triage must not answer"), checkpoints=store)
    done = await triage2.resume(paused.run_id, {paused.interruptions[0].id: True})

    assert done.status == "completed"
    assert done.output == "Credited 5."
    assert triage2.model.calls == 0  # type: ignore[attr-defined]
    (resumed,) = tracer.of_type(RunResumed)
    assert resumed.agent == "triage"
    credit = [e for e in tracer.of_type(ToolCallEnded) if e.tool == "issue_credit"]
    assert [(e.agent, e.status) for e in credit] == [("billing", "ok")]
    assert [e.agent for e in tracer.of_type(ModelCallStarted)][-1] == "billing"
    store.close()


async def test_a_pending_call_of_the_turn_that_handed_off_keeps_its_tool(tracer: RecordingTracer) -> None:
    billing = billing_agent(Step("Billing here."))
    # a store of its own: a paused run never stays in the process's default store for later tests
    store = InMemoryCheckpointStore()
    triage = Agent(
        "triage",
        ScriptedModel([Step(tool_calls=[("transfer_to_billing", {}), ("ask_person", {})])]),
        tools=[tool(needs_approval=True)(ask_person)],
        handoffs=[billing],
        checkpoints=store,
    )
    paused = await triage.run("hi")
    assert paused.status == "interrupted"
    assert [p.tool for p in paused.interruptions] == ["ask_person"]

    done = await triage.resume(paused.run_id, {paused.interruptions[0].id: True})

    assert done.output == "Billing here."
    asked = [e for e in tracer.of_type(ToolCallEnded) if e.tool == "ask_person"]
    assert [(e.status, e.result) for e in asked] == [("ok", "asked")]


def ask_person() -> str:
    """Ask a person."""
    return "asked"


def test_older_checkpoints_without_an_active_agent_still_decode() -> None:
    state = RunState("r1", "0" * 32, "triage", messages=[])
    from tracedagent import Message

    state.messages = [Message.user("hi")]
    record = json.loads(state.encode())
    del record["active_agent"]
    decoded = RunState.decode("r1", json.dumps(record).encode())
    assert decoded.active_agent is None
    assert decoded.agent == "triage"


async def test_resuming_after_the_target_disappeared_says_why() -> None:
    billing = billing_agent(Step(tool_calls=[("issue_credit", {"amount": 5})]))
    # a store of its own: the run stays paused, and must not stay in the process's default store
    store = InMemoryCheckpointStore()
    triage = triage_agent([billing], Step(tool_calls=[("transfer_to_billing", {})]), checkpoints=store)
    paused = await triage.run("credit me")
    assert paused.status == "interrupted"
    without = Agent("triage", ScriptedModel(["x"]), checkpoints=store)
    with pytest.raises(UserError, match="was with agent 'billing'"):
        await without.resume(paused.run_id, {paused.interruptions[0].id: True})


def test_bad_handoffs_are_configuration_errors() -> None:
    billing = billing_agent("x")
    with pytest.raises(ConfigurationError, match="a handoff is an Agent"):
        Agent("triage", ScriptedModel(["x"]), handoffs=["billing"])  # type: ignore[list-item]
    with pytest.raises(ConfigurationError, match="handoffs must be a list"):
        Agent("triage", ScriptedModel(["x"]), handoffs="billing")  # type: ignore[arg-type]

    @tool
    def transfer_to_billing() -> str:
        """Clash."""
        return ""

    with pytest.raises(ConfigurationError, match="already taken"):
        Agent("triage", ScriptedModel(["x"]), tools=[transfer_to_billing], handoffs=[billing])


async def test_a_handoff_function_that_returns_no_agent_fails_the_run_start() -> None:
    triage = Agent("triage", ScriptedModel(["x"]), handoffs=[lambda: "billing"])
    with pytest.raises(ConfigurationError, match="must return an Agent"):
        await triage.run("hi")
