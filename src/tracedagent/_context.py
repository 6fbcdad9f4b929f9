"""``RunContext``: what a tool (a parameter annotated ``RunContext``) and ``prepare_tools`` see of a run.

It is the per-call view of one run: the agent's configuration (``agent``), the run's state (``state``,
the same object a checkpoint saves), the caller's ``deps``, and the tools offered to the model, which
may be changed between turns with :meth:`add_tool` and :meth:`remove_tool`. It holds no state of its
own besides the tools: its ids, messages, usage and turn are the run state's.
"""

from __future__ import annotations

from typing import Any

from ._config import AgentConfig
from ._messages import Message, Usage
from ._state import RunState
from ._tools import Tool, ToolContext
from .exceptions import UserError

__all__ = ["RunContext"]


class RunContext(ToolContext):
    """One run as its tools see it: ids, messages, usage, turn count, ``deps`` and its current tools."""

    __slots__ = ("agent", "deps", "state", "tools")

    def __init__(self, agent: AgentConfig, state: RunState, tools: dict[str, Tool], deps: Any = None) -> None:
        #: The agent's configuration (its ``name``, ``model``, ``instructions``...).
        self.agent = agent
        self.state = state
        self.tools = tools
        self.deps = deps

    @property
    def run_id(self) -> str:
        return self.state.run_id

    @property
    def trace_id(self) -> str:
        return self.state.trace_id

    @property
    def agent_name(self) -> str:
        return self.agent.name

    @property
    def messages(self) -> list[Message]:
        """The conversation so far (the run's own list: append to it only from ``prepare_tools``)."""
        return self.state.messages  # type: ignore[return-value]  # a live state holds a list

    @property
    def usage(self) -> Usage:
        return self.state.usage

    @property
    def turn(self) -> int:
        """Model calls made so far in this run."""
        return self.state.turn

    @property
    def metadata(self) -> dict[str, Any]:
        return self.state.metadata

    @property
    def session_id(self) -> str | None:
        return self.state.session_id

    def add_tool(self, tool: Tool) -> None:
        """Offer ``tool`` to the model from the next model call on (for this run only)."""
        if not isinstance(tool, Tool):
            raise UserError(f"add_tool() takes a Tool (decorate the function with @tool), not {tool!r}")
        self.tools[tool.name] = tool

    def remove_tool(self, name: str) -> None:
        """Stop offering the tool called ``name`` from the next model call on (for this run only)."""
        if name not in self.tools:
            raise UserError(f"this run has no tool {name!r}; it has {', '.join(self.tools) or 'none'}")
        del self.tools[name]
