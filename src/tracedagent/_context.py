"""The mutable state of one run, kept apart from the agent's immutable configuration.

:class:`RunContext` is what tools (a parameter annotated ``RunContext``) and ``prepare_tools`` see: the
run's ids, the conversation so far, its usage, and the tools offered to the model, which may be changed
between turns with :meth:`RunContext.add_tool` and :meth:`RunContext.remove_tool`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._approval import Approval
from ._events import Interruption
from ._messages import Message, Usage
from ._tools import Tool
from .exceptions import UserError

if TYPE_CHECKING:
    from ._agent import Agent

__all__ = ["RunContext"]


class RunContext:
    """One run's state: ids, messages, usage, turn count and its current tools."""

    __slots__ = (
        "agent",
        "approved_tools",
        "decisions",
        "deps",
        "external_results",
        "messages",
        "metadata",
        "pending",
        "run_id",
        "session_id",
        "started_ns",
        "step",
        "tools",
        "trace_id",
        "turn",
        "turn_results",
        "usage",
    )

    def __init__(
        self,
        agent: Agent,
        run_id: str,
        trace_id: str,
        messages: list[Message],
        tools: dict[str, Tool],
        metadata: dict[str, Any] | None = None,
        deps: Any = None,
    ) -> None:
        self.agent = agent
        self.run_id = run_id
        self.trace_id = trace_id
        self.messages = messages
        self.usage = Usage()
        self.turn = 0
        self.tools = tools
        self.metadata = metadata if metadata is not None else {}
        self.deps = deps
        #: Results of the turn in flight, by call id, until every call of the turn has one.
        self.turn_results: dict[str, Message] = {}
        #: Calls waiting for a person or for the caller; non-empty when the run pauses.
        self.pending: list[Interruption] = []
        #: Tools approved for the rest of the run (``Approval.allow(remember=True)``).
        self.approved_tools: set[str] = set()
        #: Decisions and external results given to ``resume``, by call id.
        self.decisions: dict[str, Approval] = {}
        self.external_results: dict[str, str] = {}
        self.session_id: str | None = None
        #: Checkpoints written so far.
        self.step = 0
        #: When the run began (wall clock, ns); kept across resumes.
        self.started_ns: int | None = None

    @property
    def agent_name(self) -> str:
        return self.agent.name

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
