"""Interrupt and resume: ``needs_approval``, the ``approve_tool_call`` decider, ``ApprovalRequired``,
external tools; resume with approvals, denials, edits and results; the run's continuity across segments."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

import tracedagent
from tracedagent import (
    Agent,
    Approval,
    ApprovalRequired,
    CheckpointError,
    CheckpointSaved,
    FinalResult,
    InMemoryCheckpointStore,
    Interruption,
    Message,
    ModelCallStarted,
    RunEnded,
    RunInterrupted,
    RunResult,
    RunResumed,
    RunStarted,
    Tool,
    ToolCall,
    ToolCallEnded,
    ToolCallRequest,
    ToolCallStarted,
    Usage,
    UserError,
    approval_granted,
    external_tool,
    hookimpl,
    tool,
)
from tracedagent.testing import RecordingTracer, ScriptedModel, Step

# ------------------------------------------------------------------------------------------ helpers


def call(call_id: str, name: str, **arguments: Any) -> ToolCall:
    return ToolCall.of(call_id, name, arguments)


def turn(*calls: ToolCall, usage: Usage | None = None) -> Step:
    return Step(tool_calls=list(calls), usage=usage)


def deleter(needs_approval: Any = True, *, is_async: bool = False) -> tuple[Tool, list[tuple[str, bool]]]:
    """A ``delete`` tool recording each call's path and whether it ran approved."""
    ran: list[tuple[str, bool]] = []

    if is_async:

        async def delete(path: str) -> str:
            """Delete a file."""
            ran.append((path, approval_granted()))
            return f"deleted {path}"

    else:

        def delete(path: str) -> str:
            """Delete a file."""
            ran.append((path, approval_granted()))
            return f"deleted {path}"

    return tool(needs_approval=needs_approval)(delete), ran


def looker() -> tuple[Tool, list[str]]:
    """A plain ``lookup`` tool recording each call."""
    ran: list[str] = []

    @tool
    def lookup(key: str) -> str:
        """Look a key up."""
        ran.append(key)
        return f"value of {key}"

    return lookup, ran


def tool_results(model: ScriptedModel, index: int = -1) -> list[tuple[str | None, str | None, bool]]:
    """The tool messages at the end of the model's request ``index``: (call id, content, is_error)."""
    messages = model.requests[index].messages
    results: list[tuple[str | None, str | None, bool]] = []
    for message in reversed(messages):
        if message.role != "tool":
            break
        results.append((message.tool_call_id, message.content, message.is_error))
    return results[::-1]


def ended(tracer: RecordingTracer, call_id: str) -> ToolCallEnded:
    (event,) = [e for e in tracer.of_type(ToolCallEnded) if e.call_id == call_id]
    return event


def started(tracer: RecordingTracer, call_id: str) -> ToolCallStarted:
    (event,) = [e for e in tracer.of_type(ToolCallStarted) if e.call_id == call_id]
    return event


class Decider:
    """An ``approve_tool_call`` plugin giving one answer and recording what it was asked."""

    def __init__(self, answer: Any, name: str = "decider") -> None:
        self.answer = answer
        self.name = name
        self.asked: list[ToolCallRequest] = []

    @hookimpl
    def approve_tool_call(self, call: ToolCallRequest) -> Any:
        self.asked.append(call)
        return self.answer


# -------------------------------------------------------------------------------- needs_approval


async def test_needs_approval_pauses_the_run_and_checkpoints_it(tracer: RecordingTracer) -> None:
    delete, ran = deleter()
    model = ScriptedModel([turn(call("c1", "delete", path="/etc/passwd"))])
    agent = Agent("ops", model, tools=[delete])

    result = await agent.run("clean up")

    assert result.status == "interrupted"
    assert result.output is None
    assert result.interruptions == [
        Interruption("c1", "delete", '{"path": "/etc/passwd"}', "tool 'delete' needs approval", "approval")
    ]
    assert ran == []
    assert tracer.hooks() == [
        "on_run_start",
        "on_model_call_start",
        "on_model_call_end",
        "on_interrupt",
        "on_checkpoint",
        "on_run_end",
    ]
    (run_started,) = tracer.of_type(RunStarted)
    (interrupted,) = tracer.of_type(RunInterrupted)
    (saved,) = tracer.of_type(CheckpointSaved)
    (run_ended,) = tracer.of_type(RunEnded)
    assert interrupted.span_id == saved.span_id == run_ended.span_id == run_started.span_id
    assert interrupted.interruptions == tuple(result.interruptions)
    assert run_ended.status == "interrupted"
    assert saved.bytes > 0
    assert saved.store == "memory"
    checkpoint = await agent.store().load(result.run_id)
    assert checkpoint is not None
    assert checkpoint.status == "interrupted"
    assert checkpoint.pending == tuple(result.interruptions)
    assert checkpoint.segment_span_id == run_started.span_id


async def test_a_needs_approval_predicate_pauses_only_the_calls_it_flags(tracer: RecordingTracer) -> None:
    asked: list[dict[str, Any]] = []

    def large(arguments: dict[str, Any]) -> bool:
        asked.append(arguments)
        return bool(arguments["amount"] > 100)

    paid: list[int] = []

    @tool(needs_approval=large)
    def pay(amount: int) -> str:
        """Pay an amount."""
        paid.append(amount)
        return f"paid {amount}"

    model = ScriptedModel([turn(call("small", "pay", amount=50), call("big", "pay", amount=500)), "Paid both."])
    agent = Agent("payer", model, tools=[pay])

    result = await agent.run("pay the bills")

    assert result.status == "interrupted"
    assert [(i.id, i.tool, i.kind) for i in result.interruptions] == [("big", "pay", "approval")]
    assert asked == [{"amount": 50}, {"amount": 500}]  # validated arguments, not JSON text
    assert paid == [50]

    resumed = await agent.resume(result.run_id, {"big": True})

    assert resumed.status == "completed"
    assert resumed.output == "Paid both."
    assert paid == [50, 500]
    assert tool_results(model) == [("small", "paid 50", False), ("big", "paid 500", False)]


async def test_a_raising_predicate_pauses_rather_than_lets_the_call_through(tracer: RecordingTracer) -> None:
    def broken(arguments: dict[str, Any]) -> bool:
        raise KeyError("policy")

    delete, ran = deleter(broken)
    model = ScriptedModel([turn(call("c1", "delete", path="a")), "Done."])
    agent = Agent("ops", model, tools=[delete])

    result = await agent.run("go")

    assert result.status == "interrupted"
    (pending,) = result.interruptions
    assert pending.id == "c1"
    assert "needs_approval of tool 'delete' raised KeyError" in pending.reason
    assert ran == []
    assert tracer.of_type(ToolCallStarted) == []

    resumed = await agent.resume(result.run_id, {"c1": True})
    assert resumed.status == "completed"
    assert ran == [("a", True)]


async def test_invalid_arguments_skip_the_predicate_and_fail_validation(tracer: RecordingTracer) -> None:
    asked: list[dict[str, Any]] = []

    def always(arguments: dict[str, Any]) -> bool:
        asked.append(arguments)
        return True

    delete, ran = deleter(always)
    model = ScriptedModel([turn(call("c1", "delete", path=["not", "a", "path"])), "Sorry."])

    result = await Agent("ops", model, tools=[delete]).run("go")

    assert result.status == "completed"
    assert asked == []
    assert ran == []
    failed = ended(tracer, "c1")
    assert failed.status == "error"
    assert failed.error is not None
    assert failed.error.type == "ToolArgumentsError"
    ((call_id, content, is_error),) = tool_results(model)
    assert call_id == "c1"
    assert is_error
    assert "invalid arguments" in (content or "")


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("decision", [True, "allow", Approval.allow()], ids=["True", "allow", "Approval.allow"])
async def test_an_approved_call_runs_with_approval_granted(
    tracer: RecordingTracer, is_async: bool, decision: Any
) -> None:
    delete, ran = deleter(is_async=is_async)
    model = ScriptedModel([turn(call("c1", "delete", path="a")), "Deleted."])
    agent = Agent("ops", model, tools=[delete])
    paused = await agent.run("go")

    result = await agent.resume(paused.run_id, {"c1": decision})

    assert result.status == "completed"
    assert result.output == "Deleted."
    assert ran == [("a", True)]
    assert ended(tracer, "c1").status == "ok"
    assert tool_results(model) == [("c1", "deleted a", False)]


async def test_approval_granted_is_false_outside_an_approved_call(tracer: RecordingTracer) -> None:
    delete, ran = deleter(needs_approval=False)
    model = ScriptedModel([turn(call("c1", "delete", path="a")), "Deleted."])

    await Agent("ops", model, tools=[delete]).run("go")

    assert ran == [("a", False)]
    assert approval_granted() is False


@pytest.mark.parametrize(
    ("decision", "reason"),
    [(False, None), ("deny", None), (Approval.deny(), None), (Approval.deny("too risky"), "too risky")],
    ids=["False", "deny", "Approval.deny()", "Approval.deny(reason)"],
)
async def test_a_denied_call_is_not_run_and_the_model_is_told(
    tracer: RecordingTracer, decision: Any, reason: str | None
) -> None:
    delete, ran = deleter()
    model = ScriptedModel([turn(call("c1", "delete", path="a")), "I will not delete it."])
    agent = Agent("ops", model, tools=[delete])
    paused = await agent.run("go")

    result = await agent.resume(paused.run_id, {"c1": decision})

    assert result.status == "completed"
    assert ran == []
    denied = ended(tracer, "c1")
    assert denied.status == "denied"
    assert denied.error is None
    ((call_id, content, is_error),) = tool_results(model)
    assert call_id == "c1"
    assert is_error
    assert "denied" in (content or "")
    assert "'delete'" in (content or "")
    if reason is not None:
        assert reason in (content or "")
    assert denied.result == content


@pytest.mark.parametrize("edited", [{"path": "/tmp/safe"}, '{"path": "/tmp/safe"}'], ids=["dict", "json"])
async def test_an_approval_with_edited_arguments_runs_them(tracer: RecordingTracer, edited: Any) -> None:
    delete, ran = deleter()
    model = ScriptedModel([turn(call("c1", "delete", path="/")), "Deleted the safe one."])
    agent = Agent("ops", model, tools=[delete])
    paused = await agent.run("go")

    result = await agent.resume(paused.run_id, {"c1": Approval.allow(arguments=edited)})

    assert result.status == "completed"
    assert ran == [("/tmp/safe", True)]
    assert json.loads(started(tracer, "c1").arguments) == {"path": "/tmp/safe"}
    assert tool_results(model) == [("c1", "deleted /tmp/safe", False)]


async def test_edited_arguments_that_fail_validation_give_the_model_an_error(tracer: RecordingTracer) -> None:
    delete, ran = deleter()
    model = ScriptedModel([turn(call("c1", "delete", path="/")), "Could not."])
    agent = Agent("ops", model, tools=[delete])
    paused = await agent.run("go")

    result = await agent.resume(paused.run_id, {"c1": Approval.allow(arguments={"file": "x"})})

    assert result.status == "completed"
    assert ran == []
    assert ended(tracer, "c1").status == "error"
    ((_, content, is_error),) = tool_results(model)
    assert is_error
    assert "invalid arguments" in (content or "")


async def test_a_remembered_approval_covers_the_tool_for_the_rest_of_the_run_only(tracer: RecordingTracer) -> None:
    delete, ran = deleter()
    model = ScriptedModel(
        [
            turn(call("c1", "delete", path="a")),
            turn(call("c2", "delete", path="b"), call("c3", "delete", path="c")),
            "All gone.",
            turn(call("c4", "delete", path="d")),
        ]
    )
    agent = Agent("ops", model, tools=[delete])
    paused = await agent.run("go")

    result = await agent.resume(paused.run_id, {"c1": Approval.allow(remember=True)})

    assert result.status == "completed"
    assert sorted(ran) == [("a", True), ("b", True), ("c", True)]
    assert len(tracer.of_type(RunInterrupted)) == 1
    # Another run of the same agent asks again.
    other = await agent.run("and d")
    assert other.status == "interrupted"
    assert [i.id for i in other.interruptions] == ["c4"]
    assert len(ran) == 3


async def test_an_approval_without_remember_covers_only_its_call(tracer: RecordingTracer) -> None:
    delete, ran = deleter()
    model = ScriptedModel([turn(call("c1", "delete", path="a")), turn(call("c2", "delete", path="b"))])
    agent = Agent("ops", model, tools=[delete])
    paused = await agent.run("go")

    result = await agent.resume(paused.run_id, {"c1": True})

    assert result.status == "interrupted"
    assert [i.id for i in result.interruptions] == ["c2"]
    assert ran == [("a", True)]


# --------------------------------------------------------------------------- approve_tool_call hook


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("allow", "ran"),
        (True, "ran"),
        (Approval.allow(), "ran"),
        ("deny", "denied"),
        (False, "denied"),
        (Approval.deny("policy says no"), "denied"),
        ("interrupt", "paused"),
    ],
    ids=["allow", "True", "Approval.allow", "deny", "False", "Approval.deny", "interrupt"],
)
@pytest.mark.parametrize("where", ["agent", "process"])
async def test_approve_tool_call_decides_a_plain_tool(
    tracer: RecordingTracer, answer: Any, expected: str, where: str
) -> None:
    decider = Decider(answer)
    if where == "process":
        tracedagent.register(decider)
    delete, ran = deleter(needs_approval=False)
    model = ScriptedModel([turn(call("c1", "delete", path="a")), "Finished."])
    agent = Agent("ops", model, tools=[delete], plugins=[decider] if where == "agent" else [])

    result = await agent.run("go")

    assert decider.asked == [ToolCallRequest("delete", "c1", {"path": "a"}, result.run_id, "ops", '{"path": "a"}')]
    if expected == "ran":
        assert result.status == "completed"
        assert ran == [("a", True)]
        assert ended(tracer, "c1").status == "ok"
    elif expected == "denied":
        assert result.status == "completed"
        assert ran == []
        assert ended(tracer, "c1").status == "denied"
        ((_, content, is_error),) = tool_results(model)
        assert is_error
        if isinstance(answer, Approval):
            assert "policy says no" in (content or "")
    else:
        assert result.status == "interrupted"
        assert ran == []
        (pending,) = result.interruptions
        assert (pending.id, pending.tool, pending.kind) == ("c1", "delete", "approval")
        assert "approve_tool_call" in pending.reason


async def test_a_raising_decider_pauses_the_call_for_a_person(tracer: RecordingTracer) -> None:
    """The payments policy of a new user: deny payments over 100. Its hook raises (it treats the
    arguments as something they are not); the payment must not go through: it waits for a person, and
    the interruption says which plugin failed. The decider sees the validated arguments as a dict."""
    paid: list[int] = []

    @tool
    def pay(amount: int) -> str:
        """Pay an amount."""
        paid.append(amount)
        return "paid"

    seen: list[ToolCallRequest] = []

    class Policy:
        @hookimpl
        def approve_tool_call(self, call: ToolCallRequest) -> str:
            seen.append(call)
            return "deny" if call.arguments["amount"] > 100 else "allow"

    class BrokenPolicy:
        @hookimpl
        def approve_tool_call(self, call: ToolCallRequest) -> str:
            raise KeyError("amount")

    model = ScriptedModel([turn(call("c1", "pay", amount=500)), "Done."])
    broken = Agent("payments", model, tools=[pay], plugins=[BrokenPolicy()])
    paused = await broken.run("pay 500")
    assert paused.status == "interrupted"
    assert paid == []
    (pending,) = paused.interruptions
    assert pending.tool == "pay"
    assert "BrokenPolicy" in pending.reason
    assert "KeyError" in pending.reason
    assert tracer.of_type(ToolCallStarted) == []  # nothing ran: the call has no span yet
    denied = await broken.resume(paused.run_id, {pending.id: False})
    assert denied.status == "completed"
    assert paid == []

    model = ScriptedModel([turn(call("c1", "pay", amount=500)), turn(call("c2", "pay", amount=50)), "Done."])
    result = await Agent("payments", model, tools=[pay], plugins=[Policy()]).run("pay")
    assert result.status == "completed"
    assert paid == [50]
    assert [(r.arguments, r.raw_arguments) for r in seen] == [
        ({"amount": 500}, '{"amount": 500}'),
        ({"amount": 50}, '{"amount": 50}'),
    ]


async def test_approve_tool_call_can_edit_the_arguments(tracer: RecordingTracer) -> None:
    decider = Decider(Approval.allow(arguments={"path": "/tmp/scratch"}))
    delete, ran = deleter()
    model = ScriptedModel([turn(call("c1", "delete", path="/")), "Done."])

    result = await Agent("ops", model, tools=[delete], plugins=[decider]).run("go")

    assert result.status == "completed"
    assert ran == [("/tmp/scratch", True)]
    assert json.loads(started(tracer, "c1").arguments) == {"path": "/tmp/scratch"}


async def test_approve_tool_call_answering_none_falls_through_to_needs_approval(tracer: RecordingTracer) -> None:
    decider = Decider(None)
    delete, deleted = deleter(needs_approval=True)
    lookup, looked = looker()
    model = ScriptedModel([turn(call("c1", "lookup", key="k"), call("c2", "delete", path="a"))])

    result = await Agent("ops", model, tools=[lookup, delete], plugins=[decider]).run("go")

    assert sorted(c.call_id for c in decider.asked) == ["c1", "c2"]
    assert result.status == "interrupted"
    assert [i.id for i in result.interruptions] == ["c2"]
    assert result.interruptions[0].reason == "tool 'delete' needs approval"
    assert looked == ["k"]
    assert deleted == []


async def test_approve_tool_call_may_be_async(tracer: RecordingTracer) -> None:
    class AsyncDecider:
        @hookimpl
        async def approve_tool_call(self, call: ToolCallRequest) -> str:
            return "deny" if call.tool == "delete" else "allow"

    delete, deleted = deleter(needs_approval=True)
    lookup, looked = looker()
    model = ScriptedModel([turn(call("c1", "lookup", key="k"), call("c2", "delete", path="a")), "Done."])

    result = await Agent("ops", model, tools=[lookup, delete], plugins=[AsyncDecider()]).run("go")

    assert result.status == "completed"
    assert looked == ["k"]
    assert deleted == []
    assert ended(tracer, "c1").status == "ok"
    assert ended(tracer, "c2").status == "denied"


async def test_approve_tool_call_first_answer_wins(tracer: RecordingTracer) -> None:
    abstains = Decider(None, "abstains")
    agent_says = Decider("deny", "agent-decider")
    process_says = Decider("allow", "process-decider")
    tracedagent.register(process_says)
    delete, ran = deleter(needs_approval=True)
    model = ScriptedModel([turn(call("c1", "delete", path="a")), "One.", turn(call("c2", "delete", path="b")), "Two."])

    # The agent's own plugins are asked before the process-wide ones (each group as pluggy orders it:
    # the last registered first); the first answer that is not None wins.
    first = await Agent("ops", model, tools=[delete], plugins=[agent_says, abstains]).run("go")
    assert first.status == "completed"
    assert ended(tracer, "c1").status == "denied"
    assert [len(abstains.asked), len(agent_says.asked), len(process_says.asked)] == [1, 1, 0]

    # With every agent plugin abstaining, the process-wide decider answers.
    second = await Agent("ops", model, tools=[delete], plugins=[abstains]).run("go")
    assert second.status == "completed"
    assert ran == [("b", True)]
    assert [len(abstains.asked), len(process_says.asked)] == [2, 1]


@pytest.mark.parametrize("answer", [42, "maybe", ["allow"]], ids=["int", "unknown-word", "list"])
async def test_an_unreadable_approve_tool_call_answer_asks_a_person(tracer: RecordingTracer, answer: Any) -> None:
    delete, ran = deleter(needs_approval=False)
    model = ScriptedModel([turn(call("c1", "delete", path="a")), "Done."])
    agent = Agent("ops", model, tools=[delete], plugins=[Decider(answer)])

    result = await agent.run("go")

    assert result.status == "interrupted"
    (pending,) = result.interruptions
    assert pending.id == "c1"
    assert "unreadable answer" in pending.reason
    assert ran == []
    resumed = await agent.resume(result.run_id, {"c1": True})
    assert resumed.status == "completed"
    assert ran == [("a", True)]


@pytest.mark.parametrize(
    ("decision", "expected_runs", "expected_status"),
    [
        (True, [("a", True)], "ok"),
        (Approval.deny("not today"), [], "denied"),
        (Approval.allow(arguments={"path": "b"}), [("b", True)], "ok"),
    ],
    ids=["approve", "deny", "edit"],
)
async def test_the_hook_asks_a_person_who_decides_on_resume(
    tracer: RecordingTracer, decision: Any, expected_runs: list[tuple[str, bool]], expected_status: str
) -> None:
    decider = Decider("interrupt")
    delete, ran = deleter(needs_approval=False)
    model = ScriptedModel([turn(call("c1", "delete", path="a")), "Done."])
    agent = Agent("ops", model, tools=[delete], plugins=[decider])
    paused = await agent.run("go")
    assert paused.status == "interrupted"

    result = await agent.resume(paused.run_id, {"c1": decision})

    assert result.status == "completed"
    assert ran == expected_runs
    assert ended(tracer, "c1").status == expected_status
    assert len(decider.asked) == 1  # the person's decision is final: the hook is not asked again
    if expected_status == "denied":
        assert "not today" in (tool_results(model)[0][1] or "")


# ----------------------------------------------------------------------------- ApprovalRequired


def guarded(ran: list[bool], *, always: bool = False, is_async: bool = False) -> Tool:
    """A ``transfer`` tool that asks for approval itself unless the call is approved."""

    def check() -> str:
        ran.append(approval_granted())
        if always or not approval_granted():
            raise ApprovalRequired("transfers over 1000 need a second pair of eyes")
        return "transferred"

    if is_async:

        async def transfer(amount: int) -> str:
            """Transfer money."""
            return check()

    else:

        def transfer(amount: int) -> str:
            """Transfer money."""
            return check()

    return tool(transfer)


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
async def test_a_tool_raising_approval_required_pauses_and_runs_again_when_approved(
    tracer: RecordingTracer, is_async: bool
) -> None:
    ran: list[bool] = []
    model = ScriptedModel([turn(call("c1", "transfer", amount=5000)), "Transferred."])
    agent = Agent("bank", model, tools=[guarded(ran, is_async=is_async)])

    paused = await agent.run("pay")

    assert paused.status == "interrupted"
    assert paused.interruptions == [
        Interruption("c1", "transfer", '{"amount": 5000}', "transfers over 1000 need a second pair of eyes", "approval")
    ]
    first_end = ended(tracer, "c1")
    assert first_end.status == "interrupted"
    assert first_end.error is None
    (run_started,) = tracer.of_type(RunStarted)
    assert first_end.parent_span_id == run_started.span_id
    assert tracer.hooks()[-3:] == ["on_interrupt", "on_checkpoint", "on_run_end"]

    tracer.clear()
    result = await agent.resume(paused.run_id, {"c1": True})

    assert result.status == "completed"
    assert ran == [False, True]
    assert ended(tracer, "c1").status == "ok"
    assert tool_results(model) == [("c1", "transferred", False)]
    assert tracer.unmatched() == []


async def test_a_tool_asking_again_after_approval_gets_an_error_not_another_pause(tracer: RecordingTracer) -> None:
    ran: list[bool] = []
    model = ScriptedModel([turn(call("c1", "transfer", amount=5000)), "It failed."])
    agent = Agent("bank", model, tools=[guarded(ran, always=True)])
    paused = await agent.run("pay")

    tracer.clear()
    result = await agent.resume(paused.run_id, {"c1": True})

    assert result.status == "completed"
    assert ran == [False, True]
    assert tracer.of_type(RunInterrupted) == []
    failed = ended(tracer, "c1")
    assert failed.status == "error"
    assert failed.error is not None
    assert failed.error.type == "ApprovalRequired"
    ((_, content, is_error),) = tool_results(model)
    assert is_error
    assert "asked for approval again" in (content or "")


async def test_a_denied_approval_required_call_is_not_run_again(tracer: RecordingTracer) -> None:
    ran: list[bool] = []
    model = ScriptedModel([turn(call("c1", "transfer", amount=5000)), "Not transferred."])
    agent = Agent("bank", model, tools=[guarded(ran)])
    paused = await agent.run("pay")

    result = await agent.resume(paused.run_id, {"c1": Approval.deny("no")})

    assert result.status == "completed"
    assert ran == [False]
    assert [e.status for e in tracer.of_type(ToolCallEnded)] == ["interrupted", "denied"]


async def test_a_remembered_approval_covers_later_approval_required_calls(tracer: RecordingTracer) -> None:
    ran: list[bool] = []
    model = ScriptedModel(
        [turn(call("c1", "transfer", amount=5000)), turn(call("c2", "transfer", amount=7000)), "Both done."]
    )
    agent = Agent("bank", model, tools=[guarded(ran)])
    paused = await agent.run("pay")

    result = await agent.resume(paused.run_id, {"c1": Approval.allow(remember=True)})

    assert result.status == "completed"
    assert ran == [False, True, True]
    assert [e.status for e in tracer.of_type(ToolCallEnded)] == ["interrupted", "ok", "ok"]


async def test_an_approval_does_not_leak_into_a_run_started_by_the_approved_tool(tracer: RecordingTracer) -> None:
    inner_ran: list[bool] = []
    inner = Agent(
        "inner", ScriptedModel([turn(call("i1", "transfer", amount=1)), "inner done"]), tools=[guarded(inner_ran)]
    )

    @tool(needs_approval=True)
    async def delegate() -> str:
        """Hand the work to the inner agent."""
        result = await inner.run("do it")
        return result.status

    model = ScriptedModel([turn(call("c1", "delegate")), "Delegated."])
    agent = Agent("outer", model, tools=[delegate])
    paused = await agent.run("go")

    result = await agent.resume(paused.run_id, {"c1": True})

    assert result.status == "completed"
    assert inner_ran == [False]  # the inner run's tool asked for its own approval
    assert tool_results(model) == [("c1", "interrupted", False)]


# --------------------------------------------------------------------- several calls, external tools


async def test_a_mixed_turn_runs_plain_calls_once_and_returns_every_result_in_order(
    tracer: RecordingTracer,
) -> None:
    lookup, looked = looker()
    delete, deleted = deleter()
    ask_user = external_tool(
        "ask_user", "Ask the user a question.", {"type": "object", "properties": {"question": {"type": "string"}}}
    )
    model = ScriptedModel(
        [
            turn(
                call("c1", "lookup", key="one"),
                call("c2", "delete", path="old"),
                call("c3", "ask_user", question="sure?"),
                call("c4", "lookup", key="two"),
            ),
            "All done.",
        ]
    )
    agent = Agent("ops", model, tools=[lookup, delete, ask_user])

    paused = await agent.run("go")

    assert paused.status == "interrupted"
    assert [(i.id, i.tool, i.kind) for i in paused.interruptions] == [
        ("c2", "delete", "approval"),
        ("c3", "ask_user", "external"),
    ]
    assert paused.interruptions[1].arguments == '{"question": "sure?"}'
    assert sorted(looked) == ["one", "two"]
    assert {e.call_id for e in tracer.of_type(ToolCallStarted)} == {"c1", "c4"}

    tracer.clear()
    result = await agent.resume(paused.run_id, {"c2": True}, results={"c3": {"answer": "yes", "n": 1}})

    assert result.status == "completed"
    assert result.output == "All done."
    assert sorted(looked) == ["one", "two"]  # not run again
    assert deleted == [("old", True)]
    assert tool_results(model) == [
        ("c1", "value of one", False),
        ("c2", "deleted old", False),
        ("c3", '{"answer":"yes","n":1}', False),
        ("c4", "value of two", False),
    ]
    (resumed,) = tracer.of_type(RunResumed)
    assert {e.call_id for e in tracer.of_type(ToolCallStarted)} == {"c2", "c3"}
    external_start, external_end = started(tracer, "c3"), ended(tracer, "c3")
    assert external_start.parent_span_id == external_end.parent_span_id == resumed.span_id
    assert external_start.arguments == '{"question": "sure?"}'
    assert external_end.status == "ok"
    assert external_end.result == '{"answer":"yes","n":1}'
    assert tracer.unmatched() == []


async def test_an_external_tool_result_given_as_text_reaches_the_model(tracer: RecordingTracer) -> None:
    ask_user = external_tool("ask_user", "Ask the user.")
    model = ScriptedModel([turn(call("c1", "ask_user")), "Thanks."])
    agent = Agent("ops", model, tools=[ask_user])
    paused = await agent.run("go")
    (pending,) = paused.interruptions
    assert pending.kind == "external"
    assert "ask_user" in pending.reason
    assert tracer.of_type(ToolCallStarted) == []

    result = await agent.resume(paused.run_id, results={"c1": "blue, thanks"})

    assert result.status == "completed"
    assert tool_results(model) == [("c1", "blue, thanks", False)]
    assert ended(tracer, "c1").status == "ok"


async def test_an_external_tool_takes_its_schema_from_a_pydantic_model(tracer: RecordingTracer) -> None:
    import pydantic

    class Question(pydantic.BaseModel):
        text: str

    ask_user = external_tool("ask_user", "Ask the user.", Question)
    assert ask_user.external
    assert ask_user.parameters["properties"] == {"text": {"type": "string"}}
    model = ScriptedModel([turn(call("c1", "ask_user", text="hi?")), "ok"])
    paused = await Agent("ops", model, tools=[ask_user]).run("go")
    assert model.requests[0].tools[0].parameters == ask_user.parameters
    assert paused.interruptions[0].kind == "external"


async def test_the_approve_tool_call_hook_is_not_asked_about_external_tools(tracer: RecordingTracer) -> None:
    decider = Decider("allow")
    model = ScriptedModel([turn(call("c1", "ask_user")), "ok"])
    agent = Agent("ops", model, tools=[external_tool("ask_user")], plugins=[decider])

    paused = await agent.run("go")

    assert paused.status == "interrupted"
    assert paused.interruptions[0].kind == "external"
    assert decider.asked == []


# -------------------------------------------------------------------------------- resume errors


async def paused_mixed_run(tracer: RecordingTracer) -> tuple[Agent, ScriptedModel, RunResult, list[Any]]:
    delete, deleted = deleter()
    model = ScriptedModel(
        [turn(call("c1", "delete", path="a"), call("c2", "ask_user")), "Done."],
    )
    agent = Agent("ops", model, tools=[delete, external_tool("ask_user")])
    paused = await agent.run("go")
    assert paused.status == "interrupted"
    return agent, model, paused, deleted


RESUME_MISTAKES: list[tuple[str, Callable[[Agent, str], Any], str]] = [
    ("unknown run", lambda agent, run_id: agent.resume("0" * 32, {"c1": True}), "no checkpoint of run"),
    (
        "not pending",
        lambda agent, run_id: agent.resume(run_id, {"c1": True, "c9": True}, results={"c2": "x"}),
        "has no pending call 'c9'",
    ),
    ("missing decision", lambda agent, run_id: agent.resume(run_id, results={"c2": "x"}), "is waiting on c1"),
    ("missing result", lambda agent, run_id: agent.resume(run_id, {"c1": True}), "is waiting on c2"),
    ("nothing given", lambda agent, run_id: agent.resume(run_id), "is waiting on c1, c2"),
    (
        "approval for external",
        lambda agent, run_id: agent.resume(run_id, {"c1": True, "c2": True}),
        "is an external tool call",
    ),
    (
        "result for approval",
        lambda agent, run_id: agent.resume(run_id, results={"c1": "x", "c2": "y"}),
        "waits for approval",
    ),
    (
        "unreadable decision",
        lambda agent, run_id: agent.resume(run_id, {"c1": "maybe"}, results={"c2": "x"}),
        "the decision for call 'c1' must be",
    ),
    (
        "another agent",
        lambda agent, run_id: Agent("other", agent.model, tools=agent.tools.values()).resume(
            run_id, {"c1": True}, results={"c2": "x"}
        ),
        "belongs to agent 'ops', not 'other'",
    ),
]


@pytest.mark.parametrize(("mistake", "resume", "message"), RESUME_MISTAKES, ids=[m[0] for m in RESUME_MISTAKES])
async def test_a_wrong_resume_is_a_user_error_that_changes_nothing(
    tracer: RecordingTracer, mistake: str, resume: Callable[[Agent, str], Any], message: str
) -> None:
    agent, model, paused, deleted = await paused_mixed_run(tracer)
    events_before = len(tracer)

    with pytest.raises(UserError, match=message):
        await resume(agent, paused.run_id)

    assert len(tracer) == events_before
    assert model.calls == 1
    assert deleted == []
    result = await agent.resume(paused.run_id, {"c1": True}, results={"c2": "yes"})
    assert result.status == "completed"
    assert result.output == "Done."
    assert deleted == [("a", True)]
    assert tool_results(model) == [("c1", "deleted a", False), ("c2", "yes", False)]


async def test_a_completed_run_cannot_be_resumed(tracer: RecordingTracer) -> None:
    delete, ran = deleter()
    model = ScriptedModel([turn(call("c1", "delete", path="a")), "Done."])
    agent = Agent("ops", model, tools=[delete])
    paused = await agent.run("go")
    await agent.resume(paused.run_id, {"c1": True})
    events_before = len(tracer)

    # The process's default store forgets a completed run; a resume finds nothing to go on with.
    with pytest.raises(UserError, match="no checkpoint of run"):
        await agent.resume(paused.run_id, {"c1": True})
    assert len(tracer) == events_before
    assert ran == [("a", True)]


async def test_a_completed_run_in_a_store_says_it_has_completed(tracer: RecordingTracer) -> None:
    delete, ran = deleter()
    model = ScriptedModel([turn(call("c1", "delete", path="a")), "Done."])
    agent = Agent("ops", model, tools=[delete], checkpoints=InMemoryCheckpointStore(), checkpoint_every="interrupt")
    paused = await agent.run("go")
    await agent.resume(paused.run_id, {"c1": True})
    checkpoint = await agent.store().load(paused.run_id)
    assert checkpoint is not None
    assert checkpoint.status == "completed"
    assert checkpoint.pending == ()

    with pytest.raises(CheckpointError, match="has already completed"):
        await agent.resume(paused.run_id)
    assert ran == [("a", True)]
    assert model.calls == 2


# ----------------------------------------------------------------------------------- continuity


async def test_a_resumed_run_is_a_new_segment_of_the_same_run_and_trace(tracer: RecordingTracer) -> None:
    delete, _ = deleter()
    lookup, _ = looker()
    model = ScriptedModel(
        [
            turn(call("c1", "lookup", key="k"), call("c2", "delete", path="a"), usage=Usage(10, 5, requests=1)),
            Step(text="Done.", usage=Usage(20, 4, requests=1)),
        ]
    )
    agent = Agent("ops", model, tools=[lookup, delete])

    paused = await agent.run("go")
    result = await agent.resume(paused.run_id, {"c2": True})

    assert result.run_id == paused.run_id
    assert result.trace_id == paused.trace_id
    assert result.usage == Usage(30, 9, requests=2)
    assert result.turns == 2
    assert result.messages[0] == Message.user("go")
    assert tracer.unmatched() == []
    assert {e.run_id for e in tracer} == {paused.run_id}
    assert {e.trace_id for e in tracer} == {paused.trace_id}
    assert len(tracer.of_type(RunStarted)) == 1
    (run_started,) = tracer.of_type(RunStarted)
    (resumed,) = tracer.of_type(RunResumed)
    first_end, second_end = tracer.of_type(RunEnded)
    assert resumed.span_id != run_started.span_id
    assert resumed.previous_span_id == run_started.span_id
    assert resumed.parent_span_id == run_started.parent_span_id is None
    assert resumed.waited_s >= 0
    assert resumed.run_started_ns == run_started.timestamp_ns
    assert resumed.agent == "ops"
    assert (first_end.span_id, first_end.status) == (run_started.span_id, "interrupted")
    assert (second_end.span_id, second_end.status) == (resumed.span_id, "completed")
    assert first_end.usage == Usage(10, 5, requests=1)
    assert second_end.usage == Usage(30, 9, requests=2)
    assert (first_end.turns, second_end.turns) == (1, 2)
    hooks = tracer.hooks()
    resume_at = hooks.index("on_resume")
    assert "on_run_start" not in hooks[resume_at:]
    assert hooks[resume_at - 1] == "on_run_end"
    for event in tracer.events[resume_at + 1 : -1]:
        if isinstance(event, (ToolCallStarted, ToolCallEnded, ModelCallStarted)):
            assert event.parent_span_id == resumed.span_id
    for event in tracer.events[:resume_at]:
        if isinstance(event, (ToolCallStarted, ModelCallStarted)):
            assert event.parent_span_id == run_started.span_id
    assert tracer.format_span_tree() == (
        "run ops [interrupted] {interrupt, checkpoint}\n"
        "  model scripted:scripted [ok]\n"
        "  tool lookup [ok]\n"
        "resume ops [completed]\n"
        "  tool delete [ok]\n"
        "  model scripted:scripted [ok]"
    )


async def test_the_model_sees_the_whole_conversation_after_a_resume(tracer: RecordingTracer) -> None:
    delete, _ = deleter()
    model = ScriptedModel([turn(call("c1", "delete", path="a")), "Done."])
    agent = Agent("ops", model, tools=[delete], instructions="Be careful.")
    paused = await agent.run("clean up")

    await agent.resume(paused.run_id, {"c1": True})

    request = model.requests[-1]
    assert request.instructions == "Be careful."
    assert [tool.name for tool in request.tools] == ["delete"]
    assert list(request.messages) == [
        Message.user("clean up"),
        Message.assistant(None, [call("c1", "delete", path="a")]),
        Message.tool("c1", "delete", "deleted a"),
    ]


async def test_a_run_paused_twice_is_resumed_twice(tracer: RecordingTracer) -> None:
    delete, ran = deleter()
    model = ScriptedModel(
        [turn(call("c1", "delete", path="a")), turn(call("c2", "delete", path="b")), "Kept b, deleted a."]
    )
    agent = Agent("ops", model, tools=[delete])

    first = await agent.run("go")
    second = await agent.resume(first.run_id, {"c1": True})
    assert second.status == "interrupted"
    assert [i.id for i in second.interruptions] == ["c2"]
    third = await agent.resume(first.run_id, {"c2": Approval.deny("keep b")})

    assert third.status == "completed"
    assert third.output == "Kept b, deleted a."
    assert ran == [("a", True)]
    assert {r.run_id for r in (first, second, third)} == {first.run_id}
    assert {r.trace_id for r in (first, second, third)} == {first.trace_id}
    (run_started,) = tracer.of_type(RunStarted)
    resumed_1, resumed_2 = tracer.of_type(RunResumed)
    assert resumed_1.previous_span_id == run_started.span_id
    assert resumed_2.previous_span_id == resumed_1.span_id
    assert [e.status for e in tracer.of_type(RunEnded)] == ["interrupted", "interrupted", "completed"]
    assert [e.span_id for e in tracer.of_type(RunInterrupted)] == [run_started.span_id, resumed_1.span_id]
    assert ended(tracer, "c2").parent_span_id == resumed_2.span_id
    assert tracer.unmatched() == []
    assert tracer.format_span_tree() == (
        "run ops [interrupted] {interrupt, checkpoint}\n"
        "  model scripted:scripted [ok]\n"
        "resume ops [interrupted] {interrupt, checkpoint}\n"
        "  tool delete [ok]\n"
        "  model scripted:scripted [ok]\n"
        "resume ops [completed]\n"
        "  tool delete [denied]\n"
        "  model scripted:scripted [ok]"
    )


async def test_stream_yields_the_interruption_then_the_interrupted_result(tracer: RecordingTracer) -> None:
    delete, _ = deleter()
    lookup, _ = looker()
    model = ScriptedModel([turn(call("c1", "lookup", key="k"), call("c2", "delete", path="a")), "Done."])
    agent = Agent("ops", model, tools=[lookup, delete])

    items = [item async for item in agent.stream("go")]

    interrupted = [i for i in items if isinstance(i, RunInterrupted)]
    assert len(interrupted) == 1
    assert isinstance(items[-1], FinalResult)
    assert items.index(interrupted[0]) == len(items) - 2
    final = items[-1].result
    assert final.status == "interrupted"
    assert interrupted[0].interruptions == tuple(final.interruptions)
    assert [i.id for i in final.interruptions] == ["c2"]
    assert [i.call_id for i in items if isinstance(i, ToolCallEnded)] == ["c1"]

    result = await agent.resume(final.run_id, {"c2": True})
    assert result.status == "completed"


def test_resume_sync_continues_a_paused_run(tracer: RecordingTracer) -> None:
    delete, ran = deleter()
    model = ScriptedModel([turn(call("c1", "delete", path="a")), "Done."])
    agent = Agent("ops", model, tools=[delete])
    paused = agent.run_sync("go")

    result = agent.resume_sync(paused.run_id, {"c1": True})

    assert result.status == "completed"
    assert result.run_id == paused.run_id
    assert ran == [("a", True)]


async def test_resume_sync_refuses_inside_a_running_loop(tracer: RecordingTracer) -> None:
    delete, ran = deleter()
    model = ScriptedModel([turn(call("c1", "delete", path="a")), "Done."])
    agent = Agent("ops", model, tools=[delete])
    paused = await agent.run("go")

    with pytest.raises(UserError, match=r"resume_sync\(\) was called inside a running event loop"):
        agent.resume_sync(paused.run_id, {"c1": True})

    assert ran == []
    assert (await agent.resume(paused.run_id, {"c1": True})).status == "completed"
