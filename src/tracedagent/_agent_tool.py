"""``Agent.as_tool()``: an agent as another agent's tool.

The tool's function runs the sub-agent with the model's ``input``. It runs inside the calling tool's span,
so the sub-agent's run is a child of that span, in the same trace (events, OTLP, LangSmith). Its usage is
added to the calling run's usage once, when the sub-run returns or fails: ``RunEnded.usage`` and
``RunResult.usage`` of the caller are totals over its own model calls and its sub-agents' runs, while each
model call's usage (``ModelCallEnded``, ``chat`` spans, LangSmith ``llm`` runs) is counted in exactly one place.

A sub-agent that pauses (a tool of its own needs approval, or is external) cannot be resumed through its
caller: the calling tool call fails with a message naming the calls it waited for, which the model sees.
The sub-run's checkpoint is removed from its store, since nothing will resume it. A sub-agent that fails
(a :class:`RunError`) is a tool error the model sees too.
"""

from __future__ import annotations

from typing import Any, Protocol

from ._context import RunContext
from ._result import RunResult
from ._tools import Tool
from .exceptions import RunError, ToolError

__all__ = ["agent_tool"]


class _Runnable(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def instructions(self) -> str | None: ...

    async def run(self, input: str, *, deps: Any = None) -> RunResult: ...

    def store(self) -> Any: ...


def agent_tool(agent: _Runnable, name: str | None, description: str | None) -> Tool:
    """The tool that runs ``agent`` on the model's ``input`` and answers with its output."""
    tool_name = name if name is not None else agent.name
    if description is None:
        first = (agent.instructions or "").strip().splitlines()[0:1]
        about = f": {first[0][:300]}" if first else ""
        description = (
            f"Ask the agent {agent.name!r} to do a task{about}. Give it everything it needs in `input`; "
            "it answers with text."
        )

    async def run_agent(ctx: RunContext, input: str) -> str:
        """Args:
        input: The task for the agent, with everything it needs to know.
        """
        state = ctx.state
        try:
            result = await agent.run(input, deps=ctx.deps)
        except RunError as exc:
            if exc.result is not None:
                state.usage = state.usage + exc.result.usage
            raise ToolError(f"agent {agent.name!r} failed: {type(exc).__name__}: {exc}", tool=tool_name) from exc
        state.usage = state.usage + result.usage
        if result.status == "interrupted":
            waiting = ", ".join(f"{p.tool} ({p.kind})" for p in result.interruptions)
            await agent.store().delete(result.run_id)
            raise ToolError(
                f"agent {agent.name!r} stopped to wait for {waiting}, which an agent called as a tool cannot "
                "do; do the task another way or without that step",
                tool=tool_name,
            )
        return result.output or ""

    return Tool(run_agent, name=tool_name, description=description)
