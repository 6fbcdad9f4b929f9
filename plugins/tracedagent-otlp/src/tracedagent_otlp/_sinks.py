"""The two ways a finished span leaves the export worker.

* :class:`ExporterSink`, when the plugin exports on its own: the spans of sampled traces, with the core's
  own ids and times, are kept as plain tuples and handed to the span exporter as one batch. For the
  plugin's own OTLP/HTTP exporter (:class:`~._http.OtlpHttpSender`, built from ``OTEL_*``) the batch's
  protobuf bytes are written by :mod:`._wire` straight from those tuples (the SDK's encoder builds a
  Python protobuf object for every span, attribute and value: three quarters of the worker's time); any
  other exporter gets :class:`~opentelemetry.sdk.trace.ReadableSpan` objects built directly. The resource
  and sampler are those of a ``TracerProvider`` made from the ``OTEL_*`` variables.
* :class:`ProviderSink`, when the application set a tracer provider (globally, or
  ``OtlpTracer(tracer_provider=...)``): each span is made through the SDK's public ``Tracer`` API, so the
  provider's sampler, id generator, span limits, resource and every span processor apply as to any span.
  The span is started when its start event reaches the worker (``start_span(start_time=...)``) and ended
  at its end event (``end(end_time=...)``). The provider picks the span ids, as it does for every span:
  nothing is set on the provider, its tracer or its id generator. A map from the core's span ids to the
  SDK's span contexts makes each child the child of its parent's SDK span, and a parent that is not one
  of ours (the application's span a run was started in) is given to the SDK as a remote parent, so the
  ``invoke_agent`` span is its child in its trace. What that costs is in the README ("The application's
  tracer provider").
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from opentelemetry import trace as trace_api
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, Tracer
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, Sampler
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)
from opentelemetry.util.types import Attributes

from tracedagent import current_span

from . import _names as N

if TYPE_CHECKING:
    from ._wire import FastPath

__all__ = ["ExporterSink", "ProviderSink", "SpanRecord", "SpanSink", "readable_span"]

_UNSET = Status(StatusCode.UNSET)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)

#: A span event: name, attributes, timestamp in nanoseconds.
SpanEvent = tuple[str, Attributes, int]

#: A sampled span as :class:`ExporterSink` keeps it: name, kind, trace id, span id, parent's span id
#: (None: a root), attributes, events, links, status (None: unset), start and end in nanoseconds, and
#: whether the parent is remote (another process's span, such as the application's). Its context is
#: local and sampled.
SpanRecord = tuple[
    str,
    SpanKind,
    int,
    int,
    int | None,
    dict[str, Any],
    Sequence[SpanEvent],
    Sequence[Link],
    Status | None,
    int,
    int,
    bool,
]


class SpanSink:
    """Where the builder puts a span: told when it starts (:meth:`opened`), given it whole when it ends."""

    sampler: Sampler

    def opened(
        self,
        name: str,
        kind: SpanKind,
        trace_id: int,
        span_id: int,
        parent_id: int | None,
        remote: bool,
        start_ns: int,
        follows: int | None = None,
    ) -> None:
        """A span started (``remote``: its parent is not one of ours; ``follows``: the segment a resumed
        segment continues)."""

    def forget(self, span_id: int) -> None:
        """A started span whose end will never be handled (its entry was dropped)."""

    def emit(
        self,
        name: str,
        kind: SpanKind,
        trace_id: int,
        span_id: int,
        parent_id: int | None,
        flags: TraceFlags,
        attributes: dict[str, Any],
        events: Sequence[SpanEvent],
        links: Sequence[Link],
        status: Status | None,
        start_ns: int,
        end_ns: int,
        remote: bool = False,
    ) -> None:
        """One span, in the core's ids (``parent_id`` None for a root; ``remote`` when the parent is not
        ours) with the trace's sampling ``flags``; times in nanoseconds; ``status`` None when unset."""
        raise NotImplementedError


class _HashedResource(Resource):
    """A resource whose hash is worked out once. The OTLP encoders group spans by resource and hash the
    resource of every span, and ``Resource.__hash__`` dumps its attributes to JSON each time (a resource
    is immutable, so its hash never changes)."""

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource.attributes, resource.schema_url)
        self._hash = hash(resource)

    def __hash__(self) -> int:
        return self._hash


class ExporterSink(SpanSink):
    """Keeps the spans of sampled traces until :meth:`take` hands them over as one batch; unsampled traces
    are dropped. For the plugin's own OTLP exporter (one that ``takes_encoded_batches``) the batch is
    encoded by :mod:`._wire`, which writes the request's protobuf bytes itself; for any other exporter it
    is a list of ``ReadableSpan``."""

    def __init__(
        self,
        resource: Resource,
        sampler: Sampler,
        scope: InstrumentationScope,
        exporter: SpanExporter | None = None,
        *,
        fast: bool = True,
    ) -> None:
        self.resource = _HashedResource(resource)
        self.sampler = sampler
        self.scope = scope
        self.spans: list[SpanRecord] = []
        self.fast: FastPath | None = None
        if fast and getattr(exporter, "takes_encoded_batches", False):
            from ._wire import FastPath, probe_records

            self.fast = FastPath.checked(self.resource, scope, probe_records())

    def emit(
        self,
        name: str,
        kind: SpanKind,
        trace_id: int,
        span_id: int,
        parent_id: int | None,
        flags: TraceFlags,
        attributes: dict[str, Any],
        events: Sequence[SpanEvent],
        links: Sequence[Link],
        status: Status | None,
        start_ns: int,
        end_ns: int,
        remote: bool = False,
    ) -> None:
        if flags.sampled:
            self.spans.append(
                (name, kind, trace_id, span_id, parent_id, attributes, events, links, status, start_ns, end_ns, remote)
            )

    def take(self) -> Sequence[ReadableSpan]:
        """The spans made since the last call, for ``exporter.export``."""
        records, self.spans = self.spans, []
        if self.fast is not None:
            return self.fast.batch(records)
        resource, scope = self.resource, self.scope
        return [readable_span(record, resource, scope) for record in records]


def readable_span(record: SpanRecord, resource: Resource, scope: InstrumentationScope) -> ReadableSpan:
    """The ``ReadableSpan`` of a record, as a span exporter takes it."""
    name, kind, trace_id, span_id, parent_id, attributes, events, links, status, start_ns, end_ns, remote = record
    return ReadableSpan(
        name,
        SpanContext(trace_id, span_id, False, _SAMPLED),
        None if parent_id is None else SpanContext(trace_id, parent_id, remote, _SAMPLED),
        resource,
        attributes,
        tuple(Event(event_name, event_attrs, timestamp) for event_name, event_attrs, timestamp in events),
        links,
        kind,
        None,
        status or _UNSET,
        start_ns,
        end_ns,
        scope,
    )


class ProviderSink(SpanSink):
    """Spans through an SDK tracer of the application's provider, which picks their ids.

    Each span is started on the run's thread as its stage starts (:meth:`start`, from the tracer's start
    hooks), under its parent's SDK span, and the core makes it OpenTelemetry's current span for the stage
    (:meth:`current_for`, see ``tracedagent.use_otel_spans``): what user code or an instrumented library
    opens inside a tool nests under the very span that is exported. A run with no parent gets its trace id
    from the root span started for it (:meth:`root_trace_id`), so its events and ``RunResult.trace_id``
    name the exported trace. The worker ends each span at its end event (:meth:`emit`).

    That root span waits for the run's start event in a context variable of the run's context, not in a
    map: the start event comes on the same task, and if it never reaches the sink (the trace is shed at
    admission, the tracer is not one of the agent's plugins, the run is refused before it starts) the
    span is let go without being ended, so it is never exported and nothing holds it (:meth:`shed`, or
    the next run of that context, or the context's end).

    The maps from the core's span ids to the SDK's spans are shared by the run's threads and the worker
    (under a lock), and bounded by ``max_spans`` (the oldest go first)."""

    def __init__(self, tracer: Tracer, max_spans: int = 20_000) -> None:
        self.tracer = tracer
        self.sampler = ALWAYS_ON  # the provider's sampler decides in start_span, parents first
        self.max_spans = max_spans
        self._lock = threading.Lock()
        #: core span id -> the SDK span started for it and not yet ended.
        self._open: OrderedDict[int, Span] = OrderedDict()
        #: core span id -> the SDK span context made for it (open or ended): parents, links, resumes.
        self._contexts: OrderedDict[int, SpanContext] = OrderedDict()
        #: core span id (hex) -> the span to make current when its stage is entered (taken once).
        self._to_enter: OrderedDict[str, Span] = OrderedDict()
        #: (trace id, root span) started for the run with no parent this context is starting, until its
        #: start event: one a context, dropped with it (see the class docstring).
        self._root: ContextVar[tuple[int, Span] | None] = ContextVar(
            f"tracedagent_otlp_root_{id(self):x}", default=None
        )

    def sdk_context(self, span_id: int) -> SpanContext | None:
        """The SDK span context made for the core's span ``span_id``, if it is still known."""
        return self._contexts.get(span_id)

    # ------------------------------------------------------------------ on the run's thread

    def root_trace_id(self, agent: str) -> str | None:
        """Start the ``invoke_agent`` span of a run of ``agent`` with no parent; its trace id becomes the
        run's."""
        span = self.tracer.start_span(N.agent_span_name(agent), Context(), SpanKind.INTERNAL)
        context = span.get_span_context()
        if not context.is_valid:
            return None
        # Replaces the root of an earlier run of this context whose start never came: let go, not ended.
        self._root.set((context.trace_id, span))
        return f"{context.trace_id:032x}"

    def shed(self, trace_id: str) -> None:
        """The start of a run in ``trace_id`` did not reach the sink (its trace was shed): let the root
        span started for it go, without ending it (an ended span would be exported, alone)."""
        root = self._root.get()
        if root is not None and root[0] == int(trace_id, 16):
            self._root.set(None)

    def _take_root(self, trace_id: int) -> Span | None:
        root = self._root.get()
        if root is None or root[0] != trace_id:
            return None
        self._root.set(None)
        return root[1]

    def current_for(self, span_id: str) -> Span | None:
        """The span started for the core's span ``span_id``, to make current as its stage is entered."""
        if not self._to_enter:
            return None
        with self._lock:
            return self._to_enter.pop(span_id, None)

    def start(
        self,
        name: str,
        kind: SpanKind,
        trace_id: str,
        span_id: str,
        parent_id: str | None,
        start_ns: int,
        *,
        follows: str | None = None,
        enter: bool = True,
    ) -> Span:
        """Start the SDK span of one of the core's spans as its stage starts (``enter``: the core makes it
        current when it enters the stage; a stage already entered makes it current itself)."""
        trace, own = int(trace_id, 16), int(span_id, 16)
        span: Span | None = None
        if parent_id is None and follows is None:
            span = self._take_root(trace)
            if span is not None:
                span.update_name(name)
        if span is None:
            parent = None if parent_id is None else int(parent_id, 16)
            previous = None if follows is None else int(follows, 16)
            span = self.tracer.start_span(name, self._parent(trace, parent, previous), kind, None, None, start_ns)
        with self._lock:
            _bounded(self._open, own, span, self.max_spans)
            _bounded(self._contexts, own, span.get_span_context(), self.max_spans)
            if enter:
                _bounded(self._to_enter, span_id, span, self.max_spans)
        return span

    def _parent(self, trace_id: int, parent_id: int | None, follows: int | None) -> Context:
        parent_context = Context()  # not the current context: only the span's parent
        if parent_id is None and follows is not None:
            # A resumed run with no parent goes under the segment it continues, in its trace: the SDK span
            # made for it in this process, else (resumed in another process) the core's ids of that segment.
            parent_id = follows
        if parent_id is None:
            return parent_context
        parent = self._contexts.get(parent_id)
        if parent is None:
            # Not ours: the application's span the run started in (current on the run's thread as the run
            # starts), or a span of another process, whose ids the core kept: a remote parent.
            current = trace_api.get_current_span().get_span_context()
            if current.span_id == parent_id and current.trace_id == trace_id:
                parent = current
            else:
                parent = SpanContext(trace_id, parent_id, True, _SAMPLED, _caller_trace_state(parent_id))
        return trace_api.set_span_in_context(NonRecordingSpan(parent), parent_context)

    # ---------------------------------------------------------------------- on the worker

    def opened(
        self,
        name: str,
        kind: SpanKind,
        trace_id: int,
        span_id: int,
        parent_id: int | None,
        remote: bool,
        start_ns: int,
        follows: int | None = None,
    ) -> None:
        """Nothing: the span was started on the run's thread (:meth:`start`)."""

    def forget(self, span_id: int) -> None:
        with self._lock:
            self._open.pop(span_id, None)

    def emit(
        self,
        name: str,
        kind: SpanKind,
        trace_id: int,
        span_id: int,
        parent_id: int | None,
        flags: TraceFlags,
        attributes: dict[str, Any],
        events: Sequence[SpanEvent],
        links: Sequence[Link],
        status: Status | None,
        start_ns: int,
        end_ns: int,
        remote: bool = False,
    ) -> None:
        with self._lock:
            span = self._open.pop(span_id, None)
        if span is None:  # its start was not seen (dropped, or evicted): made now, from its start time
            span = self.start(
                name,
                kind,
                f"{trace_id:032x}",
                f"{span_id:016x}",
                None if parent_id is None else f"{parent_id:016x}",
                start_ns,
                enter=False,
            )
            with self._lock:
                self._open.pop(span_id, None)
        if not span.is_recording():  # sampled out by the provider's sampler
            return
        span.update_name(name)
        span.set_attributes(attributes)
        # The core's ids, which the run's events, stdout and LangSmith carry, when the provider chose others.
        context = span.get_span_context()
        if context.span_id != span_id:
            span.set_attribute(N.TD_SPAN_ID, f"{span_id:016x}")
        if context.trace_id != trace_id:
            span.set_attribute(N.TD_TRACE_ID, f"{trace_id:032x}")
        for link in links:
            # A link to a segment of ours points at its SDK span; one that is unknown is left out (its
            # core span id stays in the link's attribute, tracedagent.previous_span_id, on the span).
            linked = self._contexts.get(link.context.span_id)
            if linked is not None:
                span.add_link(linked, link.attributes)
        for event_name, event_attrs, timestamp in events:
            span.add_event(event_name, event_attrs, timestamp)
        if status is not None:
            span.set_status(status)
        span.end(end_ns)


def _caller_trace_state(parent_id: int) -> TraceState | None:
    """The tracestate the core keeps for a run whose parent is ``parent_id`` (a served request's caller),
    while that parent is the core's current span (as the run's start hook runs); None without one."""
    current = current_span()
    if current is None or current.tracestate is None or current.span_id != f"{parent_id:016x}":
        return None
    return TraceState.from_header([current.tracestate])


def _bounded(mapping: OrderedDict[Any, Any], key: Any, value: Any, limit: int) -> None:
    mapping[key] = value
    if len(mapping) > limit:
        mapping.popitem(last=False)
