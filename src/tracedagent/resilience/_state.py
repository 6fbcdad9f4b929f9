"""What the resilience layers of every tool look like right now, for metrics and operators."""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["ToolState", "tool_states", "track"]


class _Tracked(Protocol):
    name: str
    breaker: Any
    bulkhead: Any
    late_results: int


#: Every tool alive in this process (each one adds itself when it is made).
_all_tools: weakref.WeakSet[Any] = weakref.WeakSet()


def track(tool: _Tracked) -> None:
    """Count ``tool`` among the tools whose layers :func:`tool_states` reports."""
    _all_tools.add(tool)


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
