"""``QueueingTracer``: the base of sinks that export from a queue (the stdout, OTLP and LangSmith tracers).

Every observer hook puts its event on ``self._put`` (usually an :class:`ExportPipeline`'s ``put_event``,
which takes or sheds whole traces, decided when a run segment starts) and returns: O(1), no I/O. A
subclass sets ``self._put`` in its ``__init__`` (before it is registered: the dispatcher calls ``_put``
directly for the hooks the subclass does not override) and does the work on the pipeline's worker; it
overrides a hook (keeping ``@hookimpl``) only to do more on the loop's thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._events import (
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
from .hookspecs import hookimpl

__all__ = ["QueueingTracer"]


class QueueingTracer:
    """Implements every observer hook as ``self._put(event)``."""

    _put: Callable[[Event], Any]

    @hookimpl
    def on_run_start(self, event: RunStarted) -> None:
        self._put(event)

    @hookimpl
    def on_run_end(self, event: RunEnded) -> None:
        self._put(event)

    @hookimpl
    def on_model_call_start(self, event: ModelCallStarted) -> None:
        self._put(event)

    @hookimpl
    def on_model_call_end(self, event: ModelCallEnded) -> None:
        self._put(event)

    @hookimpl
    def on_tool_call_start(self, event: ToolCallStarted) -> None:
        self._put(event)

    @hookimpl
    def on_tool_call_end(self, event: ToolCallEnded) -> None:
        self._put(event)

    @hookimpl
    def on_interrupt(self, event: RunInterrupted) -> None:
        self._put(event)

    @hookimpl
    def on_resume(self, event: RunResumed) -> None:
        self._put(event)

    @hookimpl
    def on_compaction(self, event: ContextCompacted) -> None:
        self._put(event)

    @hookimpl
    def on_checkpoint(self, event: CheckpointSaved) -> None:
        self._put(event)

    @hookimpl
    def on_circuit_change(self, event: CircuitStateChanged) -> None:
        self._put(event)

    @hookimpl
    def on_retry(self, event: RetryScheduled) -> None:
        self._put(event)

    @hookimpl
    def on_handoff(self, event: HandoffOccurred) -> None:
        self._put(event)
