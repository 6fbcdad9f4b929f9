"""Trace and span ids (W3C sizes) and the span context that flows through a run.

The current span lives in a :class:`contextvars.ContextVar`, so a sub-agent run started inside a tool
nests under that tool's span, and code run in a thread by ``asyncio.to_thread`` still sees it.
"""

from __future__ import annotations

import os
import random
from contextvars import ContextVar
from typing import NamedTuple

__all__ = ["SpanContext", "current_span", "new_span_id", "new_trace_id"]

_random = random.Random()
_rand = _random.getrandbits
# A forked child must not repeat its parent's ids.
os.register_at_fork(after_in_child=_random.seed)


def new_trace_id() -> str:
    """A random, non-zero 128-bit trace id as 32 lowercase hex digits."""
    while True:
        value = _rand(128)
        if value:
            return f"{value:032x}"


def new_span_id() -> str:
    """A random, non-zero 64-bit span id as 16 lowercase hex digits."""
    while True:
        value = _rand(64)
        if value:
            return f"{value:016x}"


class SpanContext(NamedTuple):
    """The ids of the span that is current: what a child span or an outgoing request links to, and the
    W3C ``tracestate`` of the trace the run joined (the application's or caller's; None when it had
    none), which outgoing requests carry beside ``traceparent``."""

    trace_id: str
    span_id: str
    tracestate: str | None = None

    @property
    def traceparent(self) -> str:
        """The W3C ``traceparent`` header value for this span (sampled)."""
        return f"00-{self.trace_id}-{self.span_id}-01"


_current: ContextVar[SpanContext | None] = ContextVar("tracedagent_span", default=None)


def current_span() -> SpanContext | None:
    """The tracedagent span that is current in this context (a run segment, model or tool call)."""
    return _current.get()
