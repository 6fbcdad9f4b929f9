"""The bridge from tracedagent's current span to OpenTelemetry's current span, done in the hooks.

When a run segment, a model call or a tool call starts, the hook attaches an OpenTelemetry context whose
current span is a :class:`~opentelemetry.trace.NonRecordingSpan` carrying the core's ids (no SDK span is
made, so it costs a few microseconds); the matching end hook detaches it. A hook runs in the task of
the stage it reports, and a sync tool runs in a thread with a copy of that task's context, so whatever
user code opens with the OpenTelemetry API inside a tool (or a model client instrumented by
OpenTelemetry) nests under that tool's (or model call's) span, concurrent calls included.
"""

from __future__ import annotations

from contextvars import Token

from opentelemetry import context as otel_context
from opentelemetry import trace as trace_api
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from tracedagent import Event

__all__ = ["ContextBridge"]

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


class ContextBridge:
    """Attaches a span context per open span id; at most ``max_open`` are kept (the oldest go first)."""

    def __init__(self, max_open: int = 65536) -> None:
        self._tokens: dict[str, Token[Context]] = {}
        self.max_open = max_open

    def enter(self, event: Event) -> None:
        """Make ``event``'s span OpenTelemetry's current span in this context."""
        span = NonRecordingSpan(SpanContext(int(event.trace_id, 16), int(event.span_id, 16), False, _SAMPLED))
        tokens = self._tokens
        if len(tokens) >= self.max_open:  # an end that never came (a start is always followed by one)
            tokens.pop(next(iter(tokens)), None)
        tokens[event.span_id] = otel_context.attach(trace_api.set_span_in_context(span))

    def exit(self, event: Event) -> None:
        """Restore the context that was current before ``enter`` for the same span."""
        token = self._tokens.pop(event.span_id, None)
        if token is not None:
            otel_context.detach(token)

    @property
    def open(self) -> int:
        return len(self._tokens)
