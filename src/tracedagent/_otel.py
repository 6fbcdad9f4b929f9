"""OpenTelemetry, when the application uses it: the trace a run joins, and the context its stages make current.

The core never imports OpenTelemetry: it looks for the API modules the application (or a plugin) has
already imported, so a process without OpenTelemetry pays one dictionary lookup per stage.

* **In**: a run started while an OpenTelemetry span is current (a web request's span, a job's) and no
  tracedagent span is, joins that span's trace as its child (:func:`current_parent`), and keeps its
  ``tracestate`` (in the run's state: it survives a checkpoint). An invalid or unsampled current span is
  not joined: the run starts a trace of its own.
* **Out**: while a stage runs, OpenTelemetry's current span is a non-recording span with the stage's
  ids and the run's tracestate (:func:`enter`, :func:`leave`), so a span user code opens inside a tool, or
  an instrumented HTTP client or database driver, nests under that tool's span. The run segment also sets
  the baggage ``gen_ai.agent.name`` and, with a session, ``gen_ai.conversation.id``. Requests a stage
  makes (model HTTP calls, MCP calls) take their ``traceparent`` and ``tracestate`` from
  :func:`outgoing`.
* **A tracer's own spans** (:func:`use_otel_spans`): a tracer that exports through a tracer provider
  whose span ids it cannot choose (the application's) starts its spans as the stages start, and the
  stage makes *that* span current instead of the non-recording one, so what opens inside nests under the
  span that is exported, and outgoing requests name that span (:func:`outgoing`), not the core's span
  id, which no exported span has. A run with no parent then takes its trace id from the root span the
  tracer starts for it, so ``RunResult.trace_id`` is the exported trace's id.
"""

from __future__ import annotations

import sys
from contextvars import Token
from typing import Any, NamedTuple, Protocol

from ._ids import SpanContext

__all__ = ["OtelSpanSource", "Parent", "current_parent", "enter", "leave", "outgoing", "use_otel_spans"]

AGENT_KEY = "gen_ai.agent.name"
CONVERSATION_KEY = "gen_ai.conversation.id"


class OtelSpanSource(Protocol):
    """What a tracer registers with :func:`use_otel_spans`. Both methods are called on the run's thread
    and must be quick; neither may raise (a failure is taken as "no span")."""

    def root_trace_id(self, agent: str) -> str | None:
        """Start the root span of a run of ``agent`` that has no parent (its first segment's span, kept
        until its start event) and return its trace id, 32 lowercase hex digits; None to let the core
        pick one. The start event may never come (the trace is shed, the tracer is not one of the run's
        plugins, the run is refused before it starts): the span must not be held for ever then."""

    def current_for(self, span_id: str) -> Any:
        """The OpenTelemetry span the tracer started for the core's span ``span_id`` (taken: asked once,
        as the stage begins), or None: the stage then makes a non-recording span with its ids current."""


class Parent(NamedTuple):
    """The trace a new run joins and the span it is a child of (None: it is the trace's root)."""

    trace_id: str
    span_id: str | None
    tracestate: str | None = None


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
            state = span_context.trace_state
            return SpanContext(
                f"{span_context.trace_id:032x}", f"{span_context.span_id:016x}", state.to_header() if state else None
            )
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


def enter(stage: SpanContext, agent: str | None = None, conversation: str | None = None) -> Token[Any] | None:
    """Make the stage's span OpenTelemetry's current span (the one a tracer started for it, else a
    non-recording span with its ids and the run's tracestate) and, for a run segment, set the baggage;
    returns the token for :func:`leave`, or None when OpenTelemetry is not in use."""
    api = _loaded()
    if api is None:
        return None
    trace, context, baggage = api
    try:
        source = _source
        span = source.current_for(stage.span_id) if source is not None else None
        if span is None:
            tracestate = stage.tracestate
            span = trace.NonRecordingSpan(
                trace.SpanContext(
                    int(stage.trace_id, 16),
                    int(stage.span_id, 16),
                    False,
                    _sampled(trace),
                    None if tracestate is None else _trace_state(trace, tracestate),
                )
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


def outgoing(stage: SpanContext) -> tuple[str, str | None]:
    """The ``traceparent`` and ``tracestate`` (None: send none) a request made in ``stage`` carries.

    They name the span that is exported for the stage. With the core's ids (no tracer starting spans of
    its own, the usual case) that is ``stage`` itself: one global lookup. When a tracer starts the
    stage's spans through a provider that picks their ids (:func:`use_otel_spans`), it is OpenTelemetry's
    current span, the one the stage made current, if it is valid and in the stage's trace (else the
    core's ids: the tracer did not start one, its trace was shed)."""
    if _source is None:
        return stage.traceparent, stage.tracestate
    trace = sys.modules.get("opentelemetry.trace")
    if trace is not None:
        try:
            current = trace.get_current_span().get_span_context()
            if current.is_valid and current.trace_id == int(stage.trace_id, 16):
                state = current.trace_state
                flags = "01" if current.trace_flags.sampled else "00"
                return (
                    f"00-{current.trace_id:032x}-{current.span_id:016x}-{flags}",
                    state.to_header() if state else stage.tracestate,
                )
        except Exception:  # someone else's span that misbehaves: the core's ids
            pass
    return stage.traceparent, stage.tracestate


#: tracestate header values -> the TraceState made of them (a run's stages share one value).
_STATES: dict[str, Any] = {}


def _trace_state(trace: Any, header: str) -> Any:
    state = _STATES.get(header)
    if state is None:
        if len(_STATES) >= 256:
            _STATES.clear()
        state = _STATES[header] = trace.TraceState.from_header([header])
    return state


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
