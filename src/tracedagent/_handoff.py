"""Handoffs: a run passes from one agent to another (``Agent(handoffs=[...])``) and goes on there.

The model of an agent with handoffs is offered one ``transfer_to_{name}`` tool per target. Taking one is a
tool call like any other (its own span, approvals apply); it switches the run's context to the target's
configuration and records the target in the run state (``RunState.active_agent``, so a checkpoint and a
resume know where the run is). After the tool step, the loop calls :func:`settle`: ``on_handoff`` fires on
the segment's span and the segment goes on with the target's instructions, tools and model. The run id,
trace and segment stay the same; the turn count is the run's, so a cycle of handoffs ends at
``max_turns`` like any other loop.

``agent`` on events: the segment's own events (``RunStarted``, ``RunResumed``, ``RunEnded``) carry the run's
agent (the one ``run`` was called on); every other event carries the agent the run is with when it happens,
and ``HandoffOccurred`` the agent handing off.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

from ._config import AgentConfig
from ._context import RunContext
from ._events import HandoffOccurred, Interruption
from ._segment import Segment
from ._span import Span
from ._state import RunState
from ._tools import Tool
from .exceptions import ConfigurationError, ToolError, UserError

__all__ = ["active_config", "settle", "target_config", "tools_of"]

_NO_ARGUMENTS: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}


def target_config(target: AgentConfig | Any, source: str) -> AgentConfig:
    """A handoff target's configuration: as given, or what a zero-argument callable returns (an agent)."""
    if isinstance(target, AgentConfig):
        return target
    try:
        agent = target()
    except Exception as exc:
        raise ConfigurationError(f"agent {source!r}: the handoff function {target!r} raised {exc!r}") from exc
    config = getattr(agent, "config", agent)
    if not isinstance(config, AgentConfig):
        raise ConfigurationError(
            f"agent {source!r}: the handoff function {target!r} returned {agent!r}; it must return an Agent"
        )
    return config


def tools_of(config: AgentConfig) -> dict[str, Tool]:
    """The tools a run of ``config`` offers: its own, and a ``transfer_to_{name}`` tool per handoff."""
    if not config.handoffs:
        return dict(config.tools)
    transfers = config.transfer_tools
    if len(transfers) != len(config.handoffs):  # first use: make them (a cache on the configuration)
        made: dict[str, Tool] = {}
        for target in config.handoffs:
            to = target_config(target, config.name)
            name = f"transfer_to_{to.name}"
            if name in config.tools or name in made:
                raise ConfigurationError(
                    f"agent {config.name!r}: the handoff to {to.name!r} makes a tool {name!r}, which is already "
                    "taken; rename the agent or the tool"
                )
            made[name] = _transfer_tool(config, target, name, to)
        transfers.update(made)
    return {**config.tools, **transfers}


def _transfer_tool(source: AgentConfig, target: Any, name: str, to: AgentConfig) -> Tool:
    first_line = (to.instructions or "").strip().splitlines()[0:1]
    about = f" ({first_line[0][:200]})" if first_line else ""
    description = (
        f"Transfer the conversation to the agent {to.name!r}{about}. It takes over with its own instructions "
        "and tools and answers the user from here on."
    )

    async def transfer(ctx: RunContext) -> str:
        if ctx.agent is not source:  # another transfer of the same turn went first
            raise ToolError(
                f"the conversation was already transferred to agent {ctx.agent.name!r} in this turn; "
                f"the transfer to {to.name!r} was not made",
                tool=name,
            )
        # Only the agent changes here: the other calls of this turn still look up their tools in this
        # agent's tools; settle() switches the tools and the segment once the turn's calls have returned.
        config = target_config(target, source.name)
        ctx.agent = config
        return f"Transferred to agent {config.name!r}; it answers from here on."

    return Tool(transfer, name=name, description=description, parameters=_NO_ARGUMENTS, breaker=False)


def settle(seg: Segment) -> None:
    """After a tool step: if a transfer tool switched the run's context, fire ``on_handoff`` (on the
    segment's span, as the agent handing off) and go on as the target."""
    to = seg.ctx.agent
    if to is seg.config:
        return
    span, state = seg.span, seg.state
    span.emit(HandoffOccurred, from_agent=seg.config.name, to_agent=to.name)
    state.active_agent = None if to.name == state.agent else to.name
    seg.ctx.tools = tools_of(to)
    seg.config = to
    seg.span = Span(
        span.d, span.run_id, span.trace_id, to.name, span.parent_span_id, span.span_id, span.context.tracestate
    )


def _reachable(entry: AgentConfig) -> dict[str, AgentConfig]:
    """Every agent a run of ``entry`` can be handed to, by name, ``entry`` first."""
    found = {entry.name: entry}
    queue = deque([entry])
    while queue:
        config = queue.popleft()
        for target in config.handoffs:
            to = target_config(target, config.name)
            if to.name not in found:
                found[to.name] = to
                queue.append(to)
    return found


def active_config(
    entry: AgentConfig, state: RunState, pending: Iterable[Interruption] = ()
) -> tuple[AgentConfig, dict[str, Tool]]:
    """The configuration and tools of the agent the run is with: ``entry`` (the agent the run belongs to),
    or the agent it was handed to (``state.active_agent``), found among the agents ``entry`` can reach.
    A call still pending from the turn that handed off keeps its tool (from the agent that made it)."""
    wanted = state.active_agent
    if wanted is None or wanted == entry.name:
        return entry, tools_of(entry)
    agents = _reachable(entry)
    config = agents.get(wanted)
    if config is not None:
        tools = tools_of(config)
        for call in pending:
            if call.tool not in tools:
                for other in agents.values():
                    if call.tool in other.tools:
                        tools[call.tool] = other.tools[call.tool]
                        break
        return config, tools
    raise UserError(
        f"run {state.run_id!r} was with agent {wanted!r} (a handoff of agent {entry.name!r}), and agent "
        f"{entry.name!r} can no longer reach it through its handoffs; resume it with the agents it ran with"
    )
