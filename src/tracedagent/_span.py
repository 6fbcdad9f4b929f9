"""Spans: each stage of a run (a run segment, a model call, a tool call) is one span object.

A :class:`Span` carries the header every event of its stage has (``run_id``, ``trace_id``, ``span_id``,
``parent_span_id``, ``agent``) and writes it once, in :meth:`Span.event`. A :class:`Stage` is a span with a
start event and an end event, used as a ``with`` block::

    with Stage(span, ModelCallStarted, ModelCallEnded) as stage:
        if stage.listened:
            stage.start(shared, start_fields)   # fields of both events, and of the start (tuples)
        ...                                      # the stage's logic
        stage.end(usage, finish_reason)          # fields of the end event after duration_s

The fields are positional, in the events' field order (``dataclasses.fields``): an event is built once per
stage of every run, and a keyword call with merged dicts cost twice as much as this. The layout is the same
for every stage: the header, then the fields the start and end share, then the start's own fields, or
``status``, ``error`` and ``duration_s`` and the end's own fields (``tests/test_spans.py`` checks it for
every pair of events a stage is made with).

``start`` fires the start event; ``__enter__`` makes the span current (so a sub-agent run, an OpenTelemetry span
opened by user code, an outgoing request all nest under it); ``__exit__`` fires exactly one end event, on
success, error and cancellation alike, with the duration, the status (``stage.status``, or the failure
status when an exception leaves the block) and the error. "Every start has exactly one end" is a property
of the ``with``, not of care at each call site.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

from . import _otel
from ._dispatch import Dispatcher
from ._events import ErrorInfo, Event
from ._fastinit import positional
from ._ids import SpanContext, _current, new_span_id

__all__ = ["Span", "Stage"]

E = TypeVar("E", bound=Event)

_perf = time.perf_counter
_modules = sys.modules
_now_ns = time.time_ns


class Span:
    """The ids of one stage and the dispatcher its events go to."""

    __slots__ = ("agent", "context", "d", "parent_span_id", "run_id", "span_id", "trace_id")

    def __init__(
        self,
        d: Dispatcher,
        run_id: str,
        trace_id: str,
        agent: str,
        parent_span_id: str | None,
        span_id: str | None = None,
        tracestate: str | None = None,
    ) -> None:
        self.d = d
        self.run_id = run_id
        self.trace_id = trace_id
        self.agent = agent
        self.parent_span_id = parent_span_id
        self.span_id = span_id = span_id if span_id is not None else new_span_id()
        #: What a child span or an outgoing request links to (with the run's ``tracestate``, if any).
        self.context = SpanContext(trace_id, span_id, tracestate)

    def child(self) -> Span:
        """A new span under this one (a model or tool call under its segment)."""
        return Span(self.d, self.run_id, self.trace_id, self.agent, self.span_id, None, self.context.tracestate)

    def event(self, cls: type[E], /, at_ns: int | None = None, **fields: Any) -> E:
        """An event of this span: the header from the span, the time (``at_ns``, else now), and ``fields``."""
        return cls(
            run_id=self.run_id,
            trace_id=self.trace_id,
            span_id=self.span_id,
            parent_span_id=self.parent_span_id,
            agent=self.agent,
            timestamp_ns=_now_ns() if at_ns is None else at_ns,
            **fields,
        )

    def emit(self, cls: type[Event], **fields: Any) -> None:
        """Fire a point event of this span (a checkpoint, a retry, a breaker change) if anyone listens."""
        impls = getattr(self.d, cls.hook)
        if impls:
            self.d.emit(impls, self.event(cls, **fields))


class Stage:
    """A span with a start event and exactly one end event (see the module docstring).

    ``listened`` says whether anyone gets its events (a plugin implementing the start or end hook, or
    the observer); when nobody does, the stage builds no event at all, and the call site can skip
    building their fields. :meth:`start` fires the start event with the fields the start and end share
    (``shared``) and the start's own.
    """

    __slots__ = (
        "_otel",
        "_token",
        "baggage",
        "end_cls",
        "end_fields",
        "error",
        "failed",
        "listened",
        "observer",
        "shared",
        "span",
        "start_cls",
        "started",
        "status",
    )

    def __init__(
        self,
        span: Span,
        start_cls: type[Event],
        end_cls: type[Event],  # an end event type: it has status, error and duration_s
        *,
        observer: Callable[[Any], None] | None = None,
        ok: str = "ok",
        failed: str = "error",
    ) -> None:
        self.span = span
        self.start_cls = start_cls
        self.end_cls: Any = end_cls
        #: Also given the start and end events (the run's stream), when set.
        self.observer = observer
        d = span.d
        self.listened = bool(observer is not None or getattr(d, start_cls.hook) or getattr(d, end_cls.hook))
        self.status = ok
        self.failed = failed
        self.error: BaseException | None = None
        #: The fields both events carry; None until the start event was built.
        self.shared: tuple[Any, ...] | None = None
        self.end_fields: tuple[Any, ...] = ()
        #: For a run segment: (agent, conversation id), set as OpenTelemetry baggage while it runs.
        self.baggage: tuple[str, str | None] | None = None
        self.started = _perf()

    def start(self, shared: tuple[Any, ...], fields: tuple[Any, ...], at_ns: int | None = None) -> None:
        """Fire the start event: ``shared`` (also in the end event) and ``fields``, at ``at_ns`` or now."""
        self.shared = shared
        span = self.span
        impls = getattr(span.d, self.start_cls.hook)
        if impls or self.observer is not None:
            event = positional(self.start_cls)(
                span.run_id,
                span.trace_id,
                span.span_id,
                span.parent_span_id,
                span.agent,
                _now_ns() if at_ns is None else at_ns,
                *shared,
                *fields,
            )
            if impls:
                span.d.emit(impls, event)
            if self.observer is not None:
                self.observer(event)

    def end(self, *fields: Any) -> None:
        """The end event's own fields (those after ``duration_s``, in order; the rest keep their defaults)."""
        self.end_fields = fields

    def __enter__(self) -> Stage:
        span = self.span
        self._token = _current.set(span.context)
        if "opentelemetry.trace" in _modules:  # the application uses OpenTelemetry: nest its spans here
            baggage = self.baggage
            if baggage is None:
                self._otel = _otel.enter(span.context)
            else:
                self._otel = _otel.enter(span.context, *baggage)
        else:
            self._otel = None
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        _current.reset(self._token)
        if self._otel is not None:
            _otel.leave(self._otel)
        if exc is not None:
            if isinstance(exc, asyncio.CancelledError):
                self.status = "cancelled"
            else:
                self.status = self.failed
                if self.error is None:
                    self.error = exc
        shared = self.shared
        if shared is None:  # not listened (start() was never called): no end either
            return
        span = self.span
        impls = getattr(span.d, self.end_cls.hook)
        if not impls and self.observer is None:
            return
        error = self.error
        event = positional(self.end_cls)(
            span.run_id,
            span.trace_id,
            span.span_id,
            span.parent_span_id,
            span.agent,
            _now_ns(),
            *shared,
            self.status,
            ErrorInfo.of(error) if error is not None else None,
            _perf() - self.started,
            *self.end_fields,
        )
        if impls:
            span.d.emit(impls, event)
        if self.observer is not None:
            self.observer(event)
