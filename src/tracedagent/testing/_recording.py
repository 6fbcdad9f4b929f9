"""``RecordingTracer`` and ``capture_events()``: record what runs did, for asserts."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from .. import _plugins
from .._events import (
    CheckpointSaved,
    CircuitStateChanged,
    ContextCompacted,
    Event,
    HandoffOccurred,
    ModelCallEnded,
    ModelCallStarted,
    RetryScheduled,
    RunEnded,
    RunInterrupted,
    RunResumed,
    RunStarted,
    ToolCallEnded,
    ToolCallStarted,
)
from ..hookspecs import hookimpl

__all__ = ["RecordingTracer", "capture_events"]

E = TypeVar("E", bound=Event)

_OPENERS = (RunStarted, RunResumed, ModelCallStarted, ToolCallStarted)
_CLOSERS = (RunEnded, ModelCallEnded, ToolCallEnded)
_SPAN_EVENTS = {
    RunInterrupted: "interrupt",
    ContextCompacted: "compaction",
    CheckpointSaved: "checkpoint",
    CircuitStateChanged: "circuit_change",
    RetryScheduled: "retry",
    HandoffOccurred: "handoff",
}


class RecordingTracer:
    """A plugin that records every event, in order, from any thread.

    Register it process-wide (``capture_events()``, the ``recorded_events`` fixture) or pass it to
    ``Agent(plugins=[...])``. :meth:`span_tree` gives the runs as nested spans without ids or timestamps,
    for snapshot asserts.
    """

    name = "recording"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[Event] = []

    def _record(self, event: Event) -> None:
        with self._lock:
            self._events.append(event)

    @hookimpl
    def on_run_start(self, event: RunStarted) -> None:
        self._record(event)

    @hookimpl
    def on_run_end(self, event: RunEnded) -> None:
        self._record(event)

    @hookimpl
    def on_model_call_start(self, event: ModelCallStarted) -> None:
        self._record(event)

    @hookimpl
    def on_model_call_end(self, event: ModelCallEnded) -> None:
        self._record(event)

    @hookimpl
    def on_tool_call_start(self, event: ToolCallStarted) -> None:
        self._record(event)

    @hookimpl
    def on_tool_call_end(self, event: ToolCallEnded) -> None:
        self._record(event)

    @hookimpl
    def on_interrupt(self, event: RunInterrupted) -> None:
        self._record(event)

    @hookimpl
    def on_resume(self, event: RunResumed) -> None:
        self._record(event)

    @hookimpl
    def on_compaction(self, event: ContextCompacted) -> None:
        self._record(event)

    @hookimpl
    def on_checkpoint(self, event: CheckpointSaved) -> None:
        self._record(event)

    @hookimpl
    def on_circuit_change(self, event: CircuitStateChanged) -> None:
        self._record(event)

    @hookimpl
    def on_retry(self, event: RetryScheduled) -> None:
        self._record(event)

    @hookimpl
    def on_handoff(self, event: HandoffOccurred) -> None:
        self._record(event)

    # ------------------------------------------------------------------------------------ reading

    @property
    def events(self) -> list[Event]:
        """Every event so far, in the order the hooks fired."""
        with self._lock:
            return list(self._events)

    def __len__(self) -> int:
        return len(self._events)

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def of_type(self, *types: type[E]) -> list[E]:
        """The events of the given classes, in order."""
        return [e for e in self.events if isinstance(e, types)]

    def hooks(self) -> list[str]:
        """The hook name of each event, in order."""
        return [e.hook for e in self.events]

    def for_run(self, run_id: str) -> list[Event]:
        """The events of one run (every segment)."""
        return [e for e in self.events if e.run_id == run_id]

    def clear(self) -> None:
        with self._lock:
            self._events.clear()

    def unmatched(self) -> list[Event]:
        """Start events that have no end event yet (should be empty once runs are over)."""
        open_spans: dict[str, Event] = {}
        for event in self.events:
            if isinstance(event, _OPENERS):
                open_spans[event.span_id] = event
            elif isinstance(event, _CLOSERS):
                open_spans.pop(event.span_id, None)
        return list(open_spans.values())

    def span_tree(self, *, run_id: str | None = None) -> list[dict[str, Any]]:
        """The recorded spans as nested dicts, without ids, timestamps or durations.

        A node is ``{"span": kind, "name": ..., "status": ..., "children": [...], "events": [...]}`` where
        kind is ``run`` (a run segment), ``model`` or ``tool``; ``events`` lists span events
        (``interrupt``, ``compaction``, ``checkpoint``, ``circuit_change``, ``retry``) in order.
        """
        nodes: dict[str, dict[str, Any]] = {}
        roots: list[dict[str, Any]] = []
        for event in self.events:
            if run_id is not None and event.run_id != run_id:
                continue
            if isinstance(event, _OPENERS):
                node = _node(event)
                nodes[event.span_id] = node
                parent = nodes.get(event.parent_span_id or "")
                (parent["children"] if parent is not None else roots).append(node)
            elif isinstance(event, _CLOSERS):
                closed = nodes.get(event.span_id)
                if closed is not None:
                    closed["status"] = event.status
            else:
                owner = nodes.get(event.span_id)
                if owner is not None:
                    owner["events"].append(_SPAN_EVENTS.get(type(event), event.hook))
        return roots

    def format_span_tree(self, *, run_id: str | None = None) -> str:
        """:meth:`span_tree` as indented text, one span per line: ``kind name [status] {events}``."""
        lines: list[str] = []

        def walk(node: dict[str, Any], depth: int) -> None:
            events = f" {{{', '.join(node['events'])}}}" if node["events"] else ""
            lines.append(f"{'  ' * depth}{node['span']} {node['name']} [{node['status']}]{events}")
            for child in node["children"]:
                walk(child, depth + 1)

        for root in self.span_tree(run_id=run_id):
            walk(root, 0)
        return "\n".join(lines)


def _node(event: Event) -> dict[str, Any]:
    if isinstance(event, (RunStarted, RunResumed)):
        kind, name = ("run" if isinstance(event, RunStarted) else "resume"), event.agent
    elif isinstance(event, ModelCallStarted):
        kind, name = (
            "model",
            f"{event.provider}:{event.model}" + (" (compaction)" if event.purpose == "compaction" else ""),
        )
    else:
        assert isinstance(event, ToolCallStarted)
        kind, name = "tool", event.tool
    return {"span": kind, "name": name, "status": None, "children": [], "events": []}


@contextmanager
def capture_events() -> Iterator[RecordingTracer]:
    """Record every event of every run in this process while the block runs; restore on exit.

    ::

        with capture_events() as events:
            agent.run_sync("hi")
        assert events.hooks()[0] == "on_run_start"
    """
    tracer = RecordingTracer()
    name = _plugins.register(tracer, "recording")
    try:
        yield tracer
    finally:
        _plugins.unregister(name)
