"""OpenTelemetry, when the application uses it: the trace a run joins, and the context its stages make current.

The core never imports OpenTelemetry: it looks for the API modules the application (or a plugin) has
already imported, so a process without OpenTelemetry pays one dictionary lookup per stage.

* **In**: a run started while an OpenTelemetry span is current (a web request's span, a job's) and no
  tracedagent span is, joins that span's trace as its child (:func:`current_parent`). An invalid or
  unsampled current span is not joined: the run starts a trace of its own.
* **Out**: while a stage runs, OpenTelemetry's current span is a non-recording span with the stage's
  ids (:func:`enter`, :func:`leave`), so a span user code opens inside a tool, or an instrumented HTTP client or
  database driver, nests under that tool's span. The run segment also sets the baggage
  ``gen_ai.agent.name`` and, with a session, ``gen_ai.conversation.id``.
"""

from __future__ import annotations

import sys
from contextvars import Token
from typing import Any

from ._ids import SpanContext

__all__ = ["current_parent", "enter", "leave"]

AGENT_KEY = "gen_ai.agent.name"
CONVERSATION_KEY = "gen_ai.conversation.id"


def _loaded() -> tuple[Any, Any, Any] | None:
    """The API modules ``opentelemetry.trace``, ``.context`` and ``.baggage``, if already imported."""
    modules = sys.modules
    trace = modules.get("opentelemetry.trace")
    if trace is None:
        return None
    context = modules.get("opentelemetry.context")
    if context is None:
        return None
    return trace, context, modules.get("opentelemetry.baggage")


def current_parent() -> SpanContext | None:
    """The application's current OpenTelemetry span as a parent, if it is valid and sampled."""
    api = _loaded()
    if api is None:
        return None
    try:
        span_context = api[0].get_current_span().get_span_context()
        if not (span_context.is_valid and span_context.trace_flags.sampled):
            return None
        return SpanContext(f"{span_context.trace_id:032x}", f"{span_context.span_id:016x}")
    except Exception:  # a tracer provider of someone else's that misbehaves: start a trace of our own
        return None


def enter(trace_id: str, span_id: str, agent: str | None = None, conversation: str | None = None) -> Token[Any] | None:
    """Make a non-recording span with these ids OpenTelemetry's current span (and, for a run segment,
    set the baggage); returns the token for :func:`leave`, or None when OpenTelemetry is not in use."""
    api = _loaded()
    if api is None:
        return None
    trace, context, baggage = api
    try:
        span = trace.NonRecordingSpan(
            trace.SpanContext(int(trace_id, 16), int(span_id, 16), False, trace.TraceFlags(trace.TraceFlags.SAMPLED))
        )
        ctx = trace.set_span_in_context(span)
        if agent is not None and baggage is not None:
            ctx = baggage.set_baggage(AGENT_KEY, agent, context=ctx)
            if conversation is not None:
                ctx = baggage.set_baggage(CONVERSATION_KEY, conversation, context=ctx)
        token: Token[Any] = context.attach(ctx)
        return token
    except Exception:
        return None


def leave(token: Token[Any] | None) -> None:
    """Restore the OpenTelemetry context that was current before :func:`enter`."""
    if token is None:
        return
    context = sys.modules.get("opentelemetry.context")
    if context is not None:
        try:
            context.detach(token)
        except Exception:
            pass
