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
* **A tracer's own spans** (:func:`use_otel_spans`): a tracer that exports through a tracer provider
  whose span ids it cannot choose (the application's) starts its spans as the stages start, and the
  stage makes *that* span current instead of the non-recording one, so what opens inside nests under the
  span that is exported. A run with no parent then takes its trace id from the root span the tracer
  starts for it, so ``RunResult.trace_id`` is the exported trace's id.
"""

from __future__ import annotations

import sys
from contextvars import Token
from typing import Any, NamedTuple, Protocol

from ._ids import SpanContext

__all__ = ["OtelSpanSource", "Parent", "current_parent", "enter", "leave", "use_otel_spans"]

AGENT_KEY = "gen_ai.agent.name"
CONVERSATION_KEY = "gen_ai.conversation.id"


class OtelSpanSource(Protocol):
    """What a tracer registers with :func:`use_otel_spans`. Both methods are called on the run's thread
    and must be quick; neither may raise (a failure is taken as "no span")."""

    def root_trace_id(self, agent: str) -> str | None:
        """Start the root span of a run of ``agent`` that has no parent (its first segment's span, kept
        until its start event) and return its trace id, 32 lowercase hex digits; None to let the core
        pick one."""

    def current_for(self, span_id: str) -> Any:
        """The OpenTelemetry span the tracer started for the core's span ``span_id`` (taken: asked once,
        as the stage begins), or None: the stage then makes a non-recording span with its ids current."""


class Parent(NamedTuple):
    """The trace a new run joins and the span it is a child of (None: it is the trace's root)."""

    trace_id: str
    span_id: str | None


_source: OtelSpanSource | None = None


def use_otel_spans(source: OtelSpanSource | None) -> OtelSpanSource | None:
    """Let ``source`` (a tracer) start the OpenTelemetry spans of the stages it exports, or stop (None);
    returns the source it replaces. One source at a time: the last registered wins."""
    global _source
    previous, _source = _source, source
    return previous


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


def current_parent(agent: str = "") -> SpanContext | Parent | None:
    """The application's current OpenTelemetry span as a parent, if it is valid and sampled; else, when a
    tracer starts its own spans (:func:`use_otel_spans`), the trace of the root span it starts for a run
    of ``agent``."""
    api = _loaded()
    if api is None:
        return None
    try:
        span_context = api[0].get_current_span().get_span_context()
        if span_context.is_valid and span_context.trace_flags.sampled:
            return SpanContext(f"{span_context.trace_id:032x}", f"{span_context.span_id:016x}")
    except Exception:  # a tracer provider of someone else's that misbehaves: start a trace of our own
        pass
    source = _source
    if source is None:
        return None
    try:
        trace_id = source.root_trace_id(agent)
    except Exception:
        return None
    return Parent(trace_id, None) if trace_id else None


def enter(trace_id: str, span_id: str, agent: str | None = None, conversation: str | None = None) -> Token[Any] | None:
    """Make the stage's span OpenTelemetry's current span (the one a tracer started for it, else a
    non-recording span with these ids) and, for a run segment, set the baggage; returns the token for
    :func:`leave`, or None when OpenTelemetry is not in use."""
    api = _loaded()
    if api is None:
        return None
    trace, context, baggage = api
    try:
        source = _source
        span = source.current_for(span_id) if source is not None else None
        if span is None:
            span = trace.NonRecordingSpan(
                trace.SpanContext(int(trace_id, 16), int(span_id, 16), False, _sampled(trace))
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


_SAMPLED: list[Any] = []


def _sampled(trace: Any) -> Any:
    """``TraceFlags(TraceFlags.SAMPLED)``, made once (an immutable int)."""
    if not _SAMPLED:
        _SAMPLED.append(trace.TraceFlags(trace.TraceFlags.SAMPLED))
    return _SAMPLED[0]


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
