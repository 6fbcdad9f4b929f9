"""``Segment``: the per-call context of one run segment (a run, or one resume of it).

It ties together what the stages of a segment need: the agent's configuration, the run's state, the
tools' view of the run (:class:`RunContext`), the dispatcher, the store, the stream, and the segment's
span. It holds no run state of its own beyond the decisions a resume was given.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ._approval import Approval
from ._checkpoint import CheckpointStore
from ._config import AgentConfig
from ._context import RunContext
from ._dispatch import Dispatcher
from ._output import OutputRun
from ._span import Span
from ._state import RunState

__all__ = ["Segment"]


class Segment:
    """One segment of a run: its configuration, state, context, dispatcher, store, stream and span."""

    __slots__ = (
        "config",
        "ctx",
        "d",
        "decisions",
        "every_step",
        "external_results",
        "output",
        "resumed",
        "run_span",
        "span",
        "started",
        "state",
        "store",
        "stream",
    )

    def __init__(
        self,
        ctx: RunContext,
        dispatcher: Dispatcher,
        stream: Callable[[Any], None] | None,
        store: CheckpointStore,
        every_step: bool,
        parent_span_id: str | None,
        resumed: RunState | None = None,
        decisions: dict[str, Approval] | None = None,
        external_results: dict[str, str] | None = None,
    ) -> None:
        self.ctx = ctx
        self.config: AgentConfig = ctx.agent
        self.state: RunState = ctx.state
        self.d = dispatcher
        self.stream = stream
        self.store = store
        self.every_step = every_step
        #: The saved state this segment resumes from (None for a new run).
        self.resumed = resumed
        #: Decisions and external results given to ``resume``, by call id (used up as the calls run).
        self.decisions: dict[str, Approval] = decisions if decisions is not None else {}
        self.external_results: dict[str, str] = external_results if external_results is not None else {}
        state = self.state
        #: The span of the segment's stages and point events: the agent the run is with (see _handoff).
        self.span = span = Span(
            dispatcher, state.run_id, state.trace_id, self.config.name, parent_span_id, None, state.tracestate
        )
        #: The segment's own span (its start and end events): the same ids, the agent the run belongs to.
        self.run_span = (
            span
            if state.agent == span.agent
            else Span(
                dispatcher, state.run_id, state.trace_id, state.agent, parent_span_id, span.span_id, state.tracestate
            )
        )
        self.started = time.perf_counter()
        #: The structured output this segment asks for and its progress (None: the answer is text).
        self.output: OutputRun | None = None
