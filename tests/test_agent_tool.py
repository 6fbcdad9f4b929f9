"""``Agent.as_tool()``: a sub-agent's run nests under the calling tool's span; its usage counts once."""

from __future__ import annotations

import pytest

from tracedagent import (
    Agent,
    ModelCallEnded,
    ModelError,
    RunContext,
    RunEnded,
    RunStarted,
    ToolCallEnded,
    ToolCallStarted,
    ToolDefinitionError,
    Usage,
    tool,
)
from tracedagent.testing import RecordingTracer, ScriptedModel, Step


def researcher(*steps: object, **kwargs: object) -> Agent:
    return Agent("researcher", ScriptedModel(steps, name="r-model"), instructions="Find facts.", **kwargs)  # type: ignore[arg-type]


def lead(sub: Agent, *steps: object) -> Agent:
    return Agent("lead", ScriptedModel(steps, name="l-model"), tools=[sub.as_tool()])  # type: ignore[arg-type]


async def test_a_sub_agent_run_is_a_child_of_the_tool_call_and_its_usage_counts_once(
    tracer: RecordingTracer,
) -> None:
    sub = researcher(Step("Paris.", usage=Usage(7, 3, requests=1)))
    top = lead(
        sub,
        Step(tool_calls=[("researcher", {"input": "capital of France?"})], usage=Usage(11, 2, requests=1)),
        Step("It is Paris.", usage=Usage(13, 4, requests=1)),
    )

    result = await top.run("what is the capital of France?")

    assert result.output == "It is Paris."
    assert result.usage == Usage(31, 9, requests=3)
    spec = top.tools["researcher"].spec
    assert spec.parameters["required"] == ["input"]
    assert "Find facts." in spec.description
    assert sub.model.requests[0].messages[-1].content == "capital of France?"  # type: ignore[attr-defined]

    starts = {e.agent: e for e in tracer.of_type(RunStarted)}
    ends = {e.agent: e for e in tracer.of_type(RunEnded)}
    (call,) = tracer.of_type(ToolCallStarted)
    assert starts["researcher"].trace_id == starts["lead"].trace_id == result.trace_id
    assert starts["researcher"].parent_span_id == call.span_id
    assert starts["researcher"].run_id != result.run_id
    # the caller's RunEnded.usage is the total; each model call's usage is counted in one event only
    assert ends["researcher"].usage == Usage(7, 3, requests=1)
    assert ends["lead"].usage == result.usage
    calls = tracer.of_type(ModelCallEnded)
    total = Usage()
    for c in calls:
        total = total + c.usage
    assert total == ends["lead"].usage
    assert tracer.format_span_tree() == "\n".join(
        [
            "run lead [completed]",
            "  model scripted:l-model [ok]",
            "  tool researcher [ok]",
            "    run researcher [completed]",
            "      model scripted:r-model [ok]",
            "  model scripted:l-model [ok]",
        ]
    )


async def test_a_sub_agent_that_fails_is_a_tool_error_and_its_usage_still_counts(tracer: RecordingTracer) -> None:
    sub = researcher(Step(tool_calls=[("nothing", {})], usage=Usage(5, 1, requests=1)), ModelError("provider down"))
    top = lead(sub, Step(tool_calls=[("researcher", {"input": "x"})], usage=Usage(1, 1, requests=1)), Step("Sorry."))

    result = await top.run("go")

    assert result.status == "completed"
    assert result.output == "Sorry."
    ended = tracer.of_type(ToolCallEnded)[-1]
    assert (ended.tool, ended.status) == ("researcher", "error")
    assert ended.result is not None
    assert "agent 'researcher' failed: ModelError" in ended.result
    assert [e.status for e in tracer.of_type(RunEnded)] == ["failed", "completed"]
    assert result.usage.input_tokens >= 6
    assert result.usage.requests == 3


async def test_a_sub_agent_that_pauses_is_a_tool_error_and_leaves_no_paused_run(tracer: RecordingTracer) -> None:
    @tool(needs_approval=True)
    def delete_everything() -> str:
        """Delete everything."""
        return "deleted"

    sub = researcher(Step(tool_calls=[("delete_everything", {})]), tools=[delete_everything])
    top = lead(sub, Step(tool_calls=[("researcher", {"input": "clean up"})]), Step("Could not."))

    result = await top.run("go")

    assert result.status == "completed"
    ended = tracer.of_type(ToolCallEnded)[-1]
    assert ended.status == "error"
    assert "delete_everything (approval)" in (ended.result or "")
    paused = [e for e in tracer.of_type(RunEnded) if e.agent == "researcher"]
    assert [e.status for e in paused] == ["interrupted"]
    assert await sub.store().load(paused[0].run_id) is None


def test_as_tool_names_and_describes() -> None:
    sub = researcher("x")
    named = sub.as_tool(name="ask_researcher", description="Ask the researcher.")
    assert (named.name, named.description) == ("ask_researcher", "Ask the researcher.")
    assert "RunContext" not in str(named.parameters)
    assert list(named.parameters["properties"]) == ["input"]


async def test_as_tool_passes_the_callers_deps() -> None:
    seen: list[object] = []

    @tool
    def peek(ctx: RunContext) -> str:
        """Peek at deps."""
        seen.append(ctx.deps)
        return "ok"

    sub = researcher(Step(tool_calls=[("peek", {})]), "done", tools=[peek])
    top = lead(sub, Step(tool_calls=[("researcher", {"input": "x"})]), "fine")
    await top.run("go", deps={"user": 1})
    assert seen == [{"user": 1}]


def test_an_agent_name_that_is_no_tool_name_asks_for_name() -> None:
    with pytest.raises(ToolDefinitionError, match="pass name="):
        Agent("has space", ScriptedModel(["x"])).as_tool()
