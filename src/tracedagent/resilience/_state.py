"""What the resilience layers of every tool look like right now, for metrics and operators."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ToolState", "tool_states"]


@dataclass(frozen=True, slots=True)
class ToolState:
    """One tool's layers: breaker state, calls in flight and queued (in this process), late results."""

    tool: str
    circuit_state: str | None
    inflight: int
    queue_depth: int
    late_results: int


def tool_states() -> list[ToolState]:
    """The state of every tool alive in this process (a remote breaker shows its last-known state)."""
    from .._tools import _all_tools

    states = []
    for tool in list(_all_tools):
        breaker = tool.breaker
        bulkhead = tool.bulkhead
        states.append(
            ToolState(
                tool.name,
                breaker.state if breaker is not None else None,
                max(0, bulkhead.inflight),
                bulkhead.queue_depth,
                tool.late_results,
            )
        )
    return states
